"""A record, a ref or a bundle that names another condition's artifact is refused, never
used: every digest verifies in these attacks, only the identity is wrong."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from assay import ArtifactStore, read_ref
from assay.store.refs import ref_bytes
from workflow_helpers import SMALL_CONFIG, digests, jobs_run, snakemake, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("proofs")
    write_config(workdir, SMALL_CONFIG)
    snakemake(workdir)
    return workdir


@pytest.fixture
def study(finished, tmp_path) -> Path:
    workdir = tmp_path / "study"
    shutil.copytree(finished, workdir, symlinks=True)
    return workdir


def _assay(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def _run_record(study: Path, condition: str, replicate: int) -> Path:
    store = ArtifactStore(study / "store")
    digest = read_ref(study / "results" / "runs" / condition / f"{replicate}.json").digest
    for path in store.actions.paths():
        record = json.loads(Path(path).read_text())
        if record["digest"] == digest and record["stage"] == "run":
            return Path(path)
    raise AssertionError("no record")


@pytest.mark.parametrize("how", ["symlink", "copy", "forged key"])
def test_an_action_record_for_another_run_is_never_a_cache_hit(study, finished, how):
    victim, other = _run_record(study, "free", 1), _run_record(study, "strong", 1)
    victim.unlink()
    if how == "symlink":
        victim.symlink_to(other)
    elif how == "copy":
        shutil.copyfile(other, victim)
    else:   # the record even claims the right key: its artifact's provenance gives it away
        record = json.loads(other.read_text())
        record["key"] = victim.stem
        victim.write_text(json.dumps(record))
    verify = _assay(study, "verify")
    if how != "forged key":
        assert verify.returncode == 1 and f"BAD ACTION RECORD {victim.stem}" in verify.stdout
    proc = snakemake(study, "--forcerun", "run")
    assert ("run", "results/runs/free/1.json") in jobs_run(proc)
    run = ArtifactStore(study / "store").read_run_result(study / "results/runs/free/1.json")
    assert (run.condition_label, run.replicate) == ("free", 1)
    assert digests(study) == digests(finished)
    log = (study / "results/logs/run/free/1.log").read_text()
    assert "computed run" in log, log
    if how == "forged key":
        assert "which this key did not make" in log, log


def test_a_ref_that_names_another_run_stops_the_jobs_that_read_it(study, finished):
    strong = (study / "results/runs/strong/2.json").read_text()
    digest = json.loads(strong)["digest"]
    forged = ref_bytes(digest, {"artifact_type": "run", "condition": "free", "replicate": 1})
    (study / "results/runs/free/1.json").write_bytes(forged)   # `--overwrite-refs`, an edit
    verify = _assay(study, "verify")
    assert verify.returncode == 1
    assert ("BAD REF runs/free/1.json: names " + digest + ", which is run strong/2, but its "
            "place under results/ says run free/1") in verify.stdout, verify.stdout
    # (only collects may run: a run job would rewrite the ref the job is to check)
    proc = snakemake(study, "--forcerun", "collect", "--allowed-rules", "collect", "aggregate",
                     "compare", "plot_summary", "plot_detail", "catalog", "all", check=False)
    assert proc.returncode != 0
    # Snakemake stops scheduling after the first failure: whichever collect of free/1 ran
    # first refused (the other's log may still be the finished study's).
    logs = [(study / f"results/logs/collect/{a}/free/1.log").read_text()
            for a in ("contacts", "gyration")]
    assert any(f"was given {digest}, which is run strong/2: condition 'strong' (expected "
               "'free'), replicate 2 (expected 1)" in log for log in logs), logs
    repaired = _assay(study, "verify", "--repair")
    assert "runs/free/1.json" in repaired.stdout, repaired.stdout
    snakemake(study)
    assert digests(study) == digests(finished)


def _forge_bundle(source: Path, target: Path, name: str, digest: str, identity: dict) -> None:
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as forged:
        index = json.loads(original.read("index.json"))
        data = ref_bytes(digest, identity)
        for item in index["refs"]:
            if item["path"] == name:
                item["digest"], item["sha256"] = digest, hashlib.sha256(data).hexdigest()
        for info in original.infolist():
            if info.filename == "index.json":
                forged.writestr(info, json.dumps(index))
            elif info.filename == f"refs/{name}":
                forged.writestr(info, data)
            else:
                forged.writestr(info, original.read(info.filename))


@pytest.mark.parametrize("claims", ["its place", "its content too"])
def test_a_bundle_whose_ref_names_another_run_is_refused(study, tmp_path, claims):
    bundle = tmp_path / "study.zip"
    exported = _assay(study, "export", "results/runs", "-o", str(bundle))
    assert exported.returncode == 0, exported.stderr
    digest = read_ref(study / "results/runs/strong/2.json").digest
    identity = ({"artifact_type": "run", "condition": "free", "replicate": 1}
                if claims == "its place" else
                {"artifact_type": "run", "condition": "strong", "replicate": 2})
    forged = tmp_path / "forged.zip"
    _forge_bundle(bundle, forged, "runs/free/1.json", digest, identity)
    other = tmp_path / "other"
    other.mkdir()
    proc = _assay(other, "--store", "store", "--results", "results", "import", str(forged))
    assert proc.returncode != 0
    assert (f"bundle ref 'runs/free/1.json' names run strong/2 ({digest}) but its path says run "
            "free/1") in proc.stderr, proc.stderr
    assert not (other / "results").exists() or not any((other / "results").rglob("*.json"))
    objects = other / "store" / "objects"
    assert not objects.exists() or not any(p.is_file() for p in objects.rglob("*"))


# --- a store is a store ----------------------------------------------------------------
def _home(tmp_path: Path) -> Path:
    """Somebody's files, with names that gc would sweep in a store's tmp/."""
    home = tmp_path / "home"
    (home / "tmp" / "staging-thesis").mkdir(parents=True)
    (home / "tmp" / "big-download.part").write_text("half a download")
    (home / "tmp" / "staging-thesis" / "chapter1.tex").write_text("\\chapter{One}")
    (home / "notes.txt").write_text("mine")
    return home


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("command", [["gc", "--delete", "--grace", "0"], ["verify"], ["stats"]])
def test_a_directory_of_other_files_is_not_taken_for_a_store(tmp_path, command):
    from assay import ArtifactStoreError

    home = _home(tmp_path)
    before = _files(home)
    old = 0
    for path in home.rglob("*"):
        os.utime(path, (old, old))
    with pytest.raises(ArtifactStoreError) as err:
        ArtifactStore(home)
    assert str(err.value).startswith(f"{home} is not an assay store: it has no .assay-store "
                                     "marker and holds 1 other entry ('notes.txt')")
    assert "set `store:` to a new or empty directory" in str(err.value)
    assert not (home / "objects").exists()
    (home / "objects").mkdir()   # what an earlier assay made there
    (tmp_path / "results").mkdir()
    proc = _assay(tmp_path, "--store", str(home), "--results", "results", *command)
    assert proc.returncode != 0 and "is not an assay store" in proc.stderr, proc.stderr
    assert _files(home) == before


def test_a_store_folder_replaced_by_a_link_is_refused_and_nothing_outside_is_deleted(tmp_path):
    from assay import ArtifactStoreError

    home = _home(tmp_path)
    before = _files(home)
    store_root = tmp_path / "store"
    ArtifactStore(store_root).close()
    assert (store_root / ".assay-store").is_file()
    shutil.rmtree(store_root / "tmp")
    (store_root / "tmp").symlink_to(home / "tmp")   # a member's trick
    old = 0
    for path in home.rglob("*"):
        os.utime(path, (old, old), follow_symlinks=False)
    (tmp_path / "results").mkdir()
    proc = _assay(tmp_path, "--store", str(store_root), "--results", "results", "gc",
                  "--delete", "--grace", "0")
    assert proc.returncode != 0
    assert (f"store folder {store_root / 'tmp'} is a symbolic link to {home / 'tmp'}: assay "
            "never follows links in a store") in proc.stderr, proc.stderr
    with pytest.raises(ArtifactStoreError, match="is a symbolic link"):
        ArtifactStore(store_root)
    assert _files(home) == before


def test_an_unmarked_store_of_assay_folders_is_adopted(tmp_path):
    store_root = tmp_path / "store"
    ArtifactStore(store_root).close()
    (store_root / ".assay-store").unlink()   # a store made before the marker existed
    ArtifactStore(store_root).close()
    assert (store_root / ".assay-store").is_file()


# --- nothing in the store is followed, nothing hangs -----------------------------------
def test_objects_replaced_by_a_fifo_or_a_link_to_dev_zero_are_damage_not_a_hang(study):
    store = ArtifactStore(study / "store")
    run = store.read_run_result(study / "results/runs/free/1.json")
    sidecar = store.objects.path_for(run.sidecars[0].sha256)
    sidecar.unlink()
    os.mkfifo(sidecar)
    manifest = store.objects.path_for(
        read_ref(study / "results/runs/strong/1.json").digest.split(":")[1])
    manifest.unlink()
    manifest.symlink_to("/dev/zero")
    for command in (["verify"], ["verify", "--full"], ["gc"], ["show", "results/runs/strong/1.json"],
                    ["catalog", "build"]):
        proc = subprocess.run([sys.executable, "-m", "assay.cli", *command], cwd=study,
                              capture_output=True, text=True, timeout=120)   # a hang fails
        text = proc.stdout + proc.stderr
        assert "Traceback" not in text, text
        if command[0] in ("verify", "show", "catalog"):
            assert proc.returncode != 0, text
        if command[0] == "catalog":   # a catalog lacking rows is not a finished catalog
            assert text.splitlines()[-1] == (
                "assay catalog build: error: 1 artifact(s) reachable from the refs could not "
                "be read, so the catalog lacks their rows; run `assay verify --repair`, rerun "
                "snakemake, then build the catalog again"), text
    verify = _assay(study, "verify")
    assert "a FIFO, not a regular file" in verify.stdout, verify.stdout
    assert "a symbolic link, not a file (never followed)" in verify.stdout, verify.stdout


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
conditions: [{label: x, params: {surface_epsilon: 1.0, lol: *i}}]
control: x
replicates: 2
runner: {plugin: polymer_langevin}
analyses: {g: {plugin: radius_of_gyration}}
"""


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    import resource

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(BILLION_LAUGHS)

    def cap_memory() -> None:   # an expansion would die here instead of eating the machine
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    expected = ("config expands to more than 100,000 values through YAML aliases (anchors "
                "`&name` reused as `*name`): refused before it is expanded")
    validate = subprocess.run([sys.executable, "-m", "assay.cli", "config", "validate"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              preexec_fn=cap_memory)
    assert validate.returncode != 0 and expected in validate.stderr, validate.stderr
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and expected in proc.stderr, proc.stderr[-2000:]
    assert len((proc.stdout + proc.stderr).splitlines()) <= 3


def test_reproduce_runs_a_recorded_command_only_when_asked(tmp_path):
    """A bundle's provenance may name any command: reproduce shows it and stops."""
    import copy

    config = copy.deepcopy(SMALL_CONFIG)
    config["conditions"] = [{"label": "free", "params": {}}, {"label": "strong", "params": {}}]
    config["runner"] = {"plugin": "shell", "settings": {
        "command": "echo 42 > out.txt", "outputs": ["out.txt"]}}
    config["analyses"] = {"n": {"plugin": "bytes_analysis:Size"}}
    (tmp_path / "bytes_analysis.py").write_text(
        "from assay import METRICS\n\nclass Size:\n    def collect(self, ctx):\n"
        "        p = ctx.artifact_store.validate_sidecar(ctx.run_sidecar('out'))\n"
        "        return ctx.result(payload={METRICS: {'n': float(len(p.read_bytes()))}})\n")
    write_config(tmp_path, config)
    snakemake(tmp_path, "results/runs/free/1.json",
              env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    refused = _assay(tmp_path, "reproduce", "results/runs/free/1.json")
    assert refused.returncode != 0
    assert ("reproducing results/runs/free/1.json runs the shell command 'echo 42 > out.txt', "
            "as its provenance records it") in refused.stderr, refused.stderr
    assert "--run-recorded-code" in refused.stderr
    allowed = _assay(tmp_path, "reproduce", "results/runs/free/1.json", "--run-recorded-code")
    assert allowed.returncode == 0 and "identical" in allowed.stdout, allowed.stdout + allowed.stderr


def test_many_processes_opening_a_new_store_at_once_all_succeed(tmp_path):
    """The first jobs of a study create the store together: none may take another's
    half-written marker for a foreign file."""
    code = ("import sys; from assay import ArtifactStore; "
            "ArtifactStore(sys.argv[1]).close()")
    for round_ in range(5):
        root = tmp_path / f"store{round_}"
        procs = [subprocess.Popen([sys.executable, "-c", code, str(root)],
                                  stderr=subprocess.PIPE, text=True) for _ in range(6)]
        errors = [p.communicate()[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), errors
        assert (root / ".assay-store").is_file()


def test_a_label_ending_in_a_newline_is_refused():
    """'$' in a Python pattern also matches before a final newline: labels use '\\Z'."""
    import copy

    from assay import ArtifactSchemaError, ConfigError
    from assay.store.artifacts import RunArtifact
    from assay.pipeline.config import Study

    config = copy.deepcopy(SMALL_CONFIG)
    config["conditions"][0]["label"] = config["control"] = "free\n"
    with pytest.raises(ConfigError, match="is not a valid label"):
        Study.from_config(config)
    with pytest.raises(ArtifactSchemaError):
        RunArtifact(analysis_name="r", condition_label="free\n", replicate=1).to_manifest()


def test_damage_that_keeps_the_size_is_healed_by_the_next_write_of_those_bytes(tmp_path):
    """Deduplication used to compare sizes only: a flipped byte survived every rerun, since
    the rerun's good copy was dropped in favour of the damaged object."""
    from assay.store.objects import ObjectStore

    store = ArtifactStore(tmp_path / "store")
    data = os.urandom(4096)
    stored = store.objects.put_bytes(data)
    path = store.objects.path_for(stored.sha256)
    os.chmod(path, 0o644)
    damaged = bytearray(data)
    damaged[100] ^= 1
    path.write_bytes(bytes(damaged))
    os.chmod(path, 0o444)
    fresh = ObjectStore(tmp_path / "store")   # nothing verified in this process
    again = fresh.put_bytes(data)
    assert again.fresh and path.read_bytes() == data


def test_a_rerun_heals_a_same_size_flip_in_a_trajectory(study, finished):
    from reliability_helpers import flip_byte

    store = ArtifactStore(study / "store")
    run = store.read_artifact(read_ref(study / "results" / "runs" / "free" / "1.json").digest)
    sha = max(run.sidecars, key=lambda s: s.size_bytes).sha256
    flip_byte(store.objects.path_for(sha), 1000)
    snakemake(study, "--forceall")
    assert hashlib.sha256(store.objects.path_for(sha).read_bytes()).hexdigest() == sha
    assert digests(study) == digests(finished)
    assert _assay(study, "verify", "--full").returncode == 0


def test_settings_longer_than_an_argument_reach_the_job_through_a_digest_named_file(tmp_path):
    """Linux caps one argument at 128 KiB; a spec on the command line used to fail every job
    with 'Argument list too long' and no assay message."""
    import copy

    from assay import AssayError
    from assay.store.spec_files import spec_text

    table = [f"{i:04d}" + "ACGT" * 250 for i in range(200)]   # 200 sequences, ~200 KB
    config = copy.deepcopy(SMALL_CONFIG)
    config["analyses"] = {"lookup": {"plugin": "table_analysis:Lookup",
                                     "settings": {"table": table}}}
    (tmp_path / "table_analysis.py").write_text(
        "from assay import METRICS\n\nclass Lookup:\n    def collect(self, ctx):\n"
        "        total = sum(len(s) for s in ctx.settings['table'])\n"
        "        return ctx.result(payload={METRICS: {'total': float(total)}})\n")
    write_config(tmp_path, config)
    snakemake(tmp_path, "results/replicates/lookup/free/1.json",
              env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    store = ArtifactStore(tmp_path / "store")
    collected = store.read_artifact(read_ref(tmp_path / "results" / "replicates" / "lookup" /
                                             "free" / "1.json").digest)
    assert collected.payload["metrics"]["total"] == float(sum(len(s) for s in table))
    [spec_file] = (tmp_path / "results" / ".specs").iterdir()
    assert json.loads(spec_file.read_bytes())["settings"]["table"] == table
    spec_file.chmod(0o644)
    spec_file.write_bytes(spec_file.read_bytes().replace(b"0000ACGT", b"0000ACGA"))
    with pytest.raises(AssayError) as refused:
        spec_text(f"@{spec_file}")
    assert str(refused.value) == (
        f"the job spec file {spec_file} does not hash to its name: it was changed after "
        "snakemake wrote it. Delete it and rerun snakemake")


def test_gc_keeps_the_cached_bytes_of_the_figures_the_study_shows(study):
    """No ref names a figure; gc used to count every cached figure as garbage."""
    gc = _assay(study, "gc", "--delete", "--grace", "0")
    assert gc.returncode == 0, gc.stderr
    shown = sorted((study / "results" / "plots").rglob("*.png"))
    assert f"figures: {len(shown)} under plots/, their cached bytes kept" in gc.stdout
    before = {p: p.read_bytes() for p in shown}
    snakemake(study, "--forcerun", "plot_summary", "plot_detail")
    hits = [line for log in (study / "results" / "logs" / "plot").rglob("*.log")
            for line in log.read_text().splitlines() if "figure cache hit" in line]
    assert len(hits) == len(shown), hits
    assert {p: p.read_bytes() for p in shown} == before


def test_the_workflow_catalog_holds_every_job_of_the_study_and_nothing_else(finished):
    """The catalog rule builds the study's view (issue 25): each job leaves its action key
    under results/.keys, so the catalog finds its record without scanning the store."""
    from assay import open_catalog

    refs = digests(finished)
    with open_catalog(finished / "results" / "catalog.duckdb") as catalog:
        actions = catalog.query("SELECT digest FROM actions")
        assert sorted(actions.digest) == sorted(refs.values())
        assert len(catalog.query("SELECT * FROM refs")) == len(refs)
    assert len(list((finished / "results" / ".keys").rglob("*.key"))) == len(refs)
