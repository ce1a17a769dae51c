"""A plugin's code digest covers its own code, not its module neighbours' (issue 23)."""

from __future__ import annotations

import textwrap

from assay.codescope import own_source

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
