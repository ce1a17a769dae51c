"""A plugin's code digest covers its own code, not its module neighbours' (issue 23)."""

from __future__ import annotations

import textwrap

from assay.pipeline.codescope import own_source

MODULE = textwrap.dedent('''
    """Two plugins in one module."""
    from x import shared, only_b

    SCALE = 2


    def _helper_a(v):
        return shared(v) * SCALE


    class A:
        def run(self, ctx):
            return _helper_a(ctx)


    class B:
        def run(self, ctx):
            return only_b(ctx)


    if __name__ == "__main__":
        B().run(None)
''')


def test_a_plugin_takes_what_it_reaches_and_nothing_else():
    a = own_source(MODULE, "A")
    assert "_helper_a" in a and "SCALE = 2" in a and "from x import shared" in a
    assert "class B" not in a and "only_b" not in a and "__main__" not in a


def test_editing_a_neighbour_or_a_line_between_definitions_changes_nothing():
    a = own_source(MODULE, "A")
    assert own_source(MODULE.replace("return only_b(ctx)", "return only_b(ctx) + 1"), "A") == a
    assert own_source(MODULE.replace("\nclass A:", "\n# note\nclass A:"), "A") == a
    assert own_source(MODULE.replace("SCALE = 2", "SCALE = 3"), "A") != a
    assert own_source(MODULE.replace("return _helper_a(ctx)",
                                     "return _helper_a(ctx)  # why"), "A") != a


def test_where_a_module_sits_is_not_code():
    """Moving modules into the layer packages (issue 24) changed their relative imports and
    the dotted names in their text; their keys must not change (a store written before the
    move is a cache hit after it)."""
    from assay.pipeline.codescope import placeless

    before = ("from .artifacts import RunArtifact\nfrom .store import ArtifactStore\n"
              "from . import joblog\nfrom .demo.physics import simulate_polymer\n"
              'code_dependencies = ("assay.openmm_files",)  # see assay.store.ArtifactStore\n')
    after = ("from ..store.artifacts import RunArtifact\nfrom ..store import ArtifactStore\n"
             "from . import joblog\nfrom ..demo.physics import simulate_polymer\n"
             'code_dependencies = ("assay.pipeline.openmm_files",)  # see '
             "assay.store.artifact_store.ArtifactStore\n")
    assert placeless(before) == before            # the old text is its own reading
    assert placeless(after) == before
    # what a module imports is still code: another name or another module differs
    assert placeless("from ..store.refs import read_ref\n") != placeless(after)
    assert placeless("from .refs import write_ref\n") != placeless("from .refs import read_ref\n")

