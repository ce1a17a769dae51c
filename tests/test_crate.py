"""`assay crate`: a finished study as a Workflow Run RO-Crate that other tools open.

Checked with the tools a reviewer or a data repository would use: roc-validator (the
Provenance Run Crate 0.5 profile, required level) and ro-crate-py reading it back; the
digests against the store's own bytes; the figures' lineage down to the runs.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from assay import read_ref
from assay.store.actions import ActionCache
from assay.pipeline.layout import job_key_path
from workflow_helpers import SMALL_CONFIG, digests, snakemake, write_config

pytestmark = pytest.mark.slow

PROVENANCE = "https://w3id.org/ro/wfrun/provenance/0.5"
CONFIG = copy.deepcopy(SMALL_CONFIG)
CONFIG["analyses"] = {"gyration": SMALL_CONFIG["analyses"]["gyration"]}   # one: CI time
FIGURES = ["results/plots/gyration/detail.png", "results/plots/gyration/summary.png"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("crate-study")
    write_config(workdir, CONFIG)
    snakemake(workdir)
    return workdir


def _crate(study: Path, output: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assay.cli", "crate", "-o", str(output),
                           *args], cwd=study, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def crate(finished, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("crate") / "study.crate.zip"
    proc = _crate(finished, output, "--license", "https://spdx.org/licenses/CC-BY-4.0")
    assert proc.returncode == 0, proc.stderr
    return output


@pytest.fixture(scope="module")
def graph(crate) -> dict[str, dict]:
    with zipfile.ZipFile(crate) as archive:
        document = json.loads(archive.read("ro-crate-metadata.json"))
    return {entity["@id"]: entity for entity in document["@graph"]}


def _refs(value) -> list[str]:
    items = value if isinstance(value, list) else [value] if value else []
    return [item["@id"] for item in items]


def _types(entity: dict) -> list[str]:
    kind = entity["@type"]
    return kind if isinstance(kind, list) else [kind]


def _offline_validator_cache(directory: Path) -> Path:
    """roc-validator fetches the RO-Crate 1.1 JSON-LD context; CI has no network, so its
    HTTP cache is seeded with the copy ro-crate-py ships (rocrate/data/ro-crate.jsonld)."""
    import requests
    import requests_cache
    import rocrate
    import urllib3

    context = (Path(rocrate.__file__).parent / "data" / "ro-crate.jsonld").read_bytes()
    assert json.loads(context)["@id"] == "https://w3id.org/ro/crate/1.1/context", \
        "this rocrate ships another context; pin rocrate to the 1.1 one (pyproject)"

    class Local(requests.adapters.BaseAdapter):
        def send(self, request, **_):
            raw = urllib3.HTTPResponse(body=io.BytesIO(context), status=200,
                                       headers={"Content-Type": "application/ld+json"},
                                       preload_content=False, request_url=request.url)
            return requests.adapters.HTTPAdapter().build_response(request, raw)

        def close(self):
            pass

    cache = directory / "http_cache"
    session = requests_cache.CachedSession(str(cache), backend="sqlite", expire_after=-1,
                                           allowable_codes=(200,))
    session.mount("https://w3id.org/", Local())
    for accept in ("application/ld+json, application/json", "application/ld+json"):
        assert session.get("https://w3id.org/ro/crate/1.1/context",
                           headers={"Accept": accept}).status_code == 200
    session.close()
    return cache


def test_the_crate_passes_roc_validator_and_rocrate_reads_it(crate, tmp_path):
    from rocrate.rocrate import ROCrate
    from rocrate_validator import services
    from rocrate_validator.models import Severity

    settings = services.ValidationSettings(
        rocrate_uri=str(crate), profile_identifier="provenance-run-crate-0.5",
        requirement_severity=Severity.REQUIRED, offline=True,
        cache_path=_offline_validator_cache(tmp_path))
    result = services.validate(settings)
    assert [(i.check.identifier, i.message) for i in result.get_issues()] == []
    assert result.passed()

    read = ROCrate(crate)
    root = read.root_dataset
    assert PROVENANCE in [p.id for p in root["conformsTo"]]
    workflow = read.mainEntity
    assert workflow.id == "workflow/Snakefile"
    assert {"ComputationalWorkflow", "SoftwareSourceCode", "File"} <= set(workflow.type)
    assert read.license.id == "https://spdx.org/licenses/CC-BY-4.0"


def test_every_job_is_an_action_with_its_tool_inputs_outputs_and_recorded_times(
        finished, graph):
    refs = digests(finished)
    jobs = {i: e for i, e in graph.items() if i.startswith("#job/")}
    assert set(jobs) == {f"#job/{Path(r).relative_to('results').as_posix()}" for r in refs} | {
        f"#job/{f}" for f in FIGURES}
    cache = ActionCache.at(finished / "store")
    for ref in refs:
        job = jobs[f"#job/{Path(ref).relative_to('results').as_posix()}"]
        assert job["@type"] == "CreateAction"
        tool = graph[_refs(job["instrument"])[0]]
        manifest_id = f"objects/{read_ref(finished / ref).digest.split(':')[1]}"
        manifest = json.loads(_member(finished, manifest_id))
        assert tool["identifier"] == manifest["provenance"]["code_digest"]
        assert manifest["provenance"]["plugin"] in tool["name"]
        assert manifest_id in _refs(job["result"])
        assert {f"objects/{s['sha256']}" for s in manifest["sidecars"]} <= set(
            _refs(job["result"]))
        expected = {f"objects/{i['digest'].split(':')[1]}" for i in manifest["inputs"]}
        assert set(_refs(job["object"])) == (expected or {"config/config.yaml"})
        key = job_key_path(finished / "results",
                           Path(ref).relative_to("results").as_posix()).read_text()
        record = cache.read(key.strip())
        assert job["endTime"] == record["when"] and job["startTime"] <= job["endTime"]
        control = graph[f"#control/{job['@id'][len('#job/'):]}"]
        assert _refs(control["object"]) == [job["@id"]]
        assert graph[_refs(control["instrument"])[0]]["name"] == manifest["provenance"]["stage"]
    versions = {(e["name"], e["softwareVersion"]) for e in graph.values()
                if e["@id"].startswith("#software/")}
    assert ("numpy", manifest["provenance"]["versions"]["numpy"]) in versions
    numerics = [e for e in graph.values() if e["@id"].startswith("#numerics/")]
    assert numerics and json.loads(numerics[0]["value"])["cpu_level"]


def _member(study: Path, name: str) -> bytes:
    return (study / "store" / "objects" / name[len("objects/"):][:2]
            / name[len("objects/"):]).read_bytes()


def test_each_figure_leads_back_through_the_jobs_to_the_runs(finished, graph):
    made_by = {out: i for i, e in graph.items() if i.startswith("#job/")
               for out in _refs(e["result"])}
    for figure in FIGURES:
        assert graph[figure]["sha256"] == hashlib.sha256(
            (finished / figure).read_bytes()).hexdigest()
        frontier, stages = [figure], set()
        while frontier:
            job = graph[made_by[frontier.pop()]]
            stages.add(graph[_refs(graph[f"#control/{job['@id'][5:]}"]["instrument"])[0]][
                "name"])
            frontier += [o for o in _refs(job["object"]) if o in made_by]
        assert stages == {"plot", "compare", "aggregate", "collect", "run"}
    run = graph["#workflow-run"]
    assert set(FIGURES) <= set(_refs(run["result"]))
    assert "config/config.yaml" in _refs(run["object"])
    assert graph["#value/seed"]["value"] == CONFIG["seed"]


def test_every_digest_in_the_crate_is_the_stores_and_its_bytes_hash_to_it(finished, crate,
                                                                         graph):
    with zipfile.ZipFile(crate) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    objects = [e for i, e in graph.items() if i.startswith("objects/")]
    refs = {read_ref(finished / r).digest for r in digests(finished)}
    assert refs <= {e["identifier"] for e in objects}
    for entity in objects:
        sha = entity["@id"][len("objects/"):]
        assert entity["sha256"] == sha and entity["identifier"] == f"sha256:{sha}"
        assert hashlib.sha256(members[entity["@id"]]).hexdigest() == sha
        assert members[entity["@id"]] == _member(finished, entity["@id"])
        assert int(entity["contentSize"]) == len(members[entity["@id"]])
        assert entity["encodingFormat"]
    assert sorted(n for n in members if n.startswith("objects/")) == sorted(
        e["@id"] for e in objects)
    text = members["ro-crate-metadata.json"].decode()
    assert str(finished) not in text and '"/' not in text   # no absolute path


def test_a_clone_of_the_study_gives_the_same_bytes_and_only_the_lineage_asked_for(
        finished, crate, tmp_path):
    clone = tmp_path / "clone"
    shutil.copytree(finished, clone, symlinks=True)
    again = tmp_path / "again.zip"
    assert _crate(clone, again, "--license",
                  "https://spdx.org/licenses/CC-BY-4.0").returncode == 0
    assert again.read_bytes() == crate.read_bytes()

    one = tmp_path / "one.zip"
    proc = _crate(clone, one, "--for", FIGURES[1])
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(one) as archive:
        names = set(archive.namelist())
    assert FIGURES[1] in names and FIGURES[0] not in names


def test_a_damaged_store_or_a_stale_figure_is_refused(finished, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(finished, study, symlinks=True)
    ref = read_ref(study / "results" / "runs" / "free" / "1.json")
    manifest = json.loads(_member(study, f"objects/{ref.digest.split(':')[1]}"))
    sidecar = _objects_path(study, manifest["sidecars"][0]["sha256"])
    data = bytearray(sidecar.read_bytes())
    data[-1] ^= 1                                   # same size, other bytes
    sidecar.chmod(0o644)
    sidecar.write_bytes(bytes(data))
    output = tmp_path / "out.zip"
    proc = _crate(study, output)
    assert proc.returncode == 1 and "damaged" in proc.stderr and "verify" in proc.stderr
    assert not output.exists()

    shutil.rmtree(study)
    shutil.copytree(finished, study, symlinks=True)
    figure = study / FIGURES[1]
    figure.write_bytes(figure.read_bytes() + b"\0")
    proc = _crate(study, output)
    assert proc.returncode == 1 and FIGURES[1] in proc.stderr and "snakemake" in proc.stderr
    assert not output.exists()


def _objects_path(study: Path, sha: str) -> Path:
    return study / "store" / "objects" / sha[:2] / sha
