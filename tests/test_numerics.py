"""The same numbers on any machine: the demo does not depend on the CPU's BLAS kernels or
numpy's SIMD dispatch, every computed action records its numeric environment, `assay diff`
names it when two runs differ, and portable numerics give one set of bits or stop."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from assay.pipeline.numerics import (
    PORTABLE_ENV,
    PortableNumericsError,
    apply_portable,
    environment_differences,
    x86_level,
)
from workflow_helpers import SMALL_CONFIG, snakemake, write_config


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


FLAGS = _cpu_flags()
x86_only = pytest.mark.skipif("sse2" not in FLAGS, reason="x86-64 kernels")
NUMPY_BASELINE_ONLY = "X86_V3 X86_V4 AVX512_ICL AVX512_SPR AVX2 FMA3 AVX512F AVX512_SKX"
# What a machine of another CPU would run: OpenBLAS core types this CPU can execute, and
# numpy's dispatch cut down to its baseline (an older CPU) or to AVX2.
ENVIRONMENTS = [
    {},
    {"OPENBLAS_CORETYPE": "Prescott"},
    {"OPENBLAS_CORETYPE": "Prescott", "NPY_DISABLE_CPU_FEATURES": NUMPY_BASELINE_ONLY},
    *([{"OPENBLAS_CORETYPE": "Haswell"}] if {"avx2", "fma"} <= FLAGS else []),
    *([{"OPENBLAS_CORETYPE": "SkylakeX"}] if "avx512f" in FLAGS else []),
]

DEMO_BYTES = textwrap.dedent("""
    import hashlib, json, sys
    import numpy as np
    from assay.demo import physics
    from assay.pipeline.numerics import numeric_environment

    h = hashlib.sha256()
    for seed in (3, 11):
        for eps in (0.0, 1.5, 3.0):
            pos = physics.simulate_polymer(seed=seed, surface_epsilon=eps, n_beads=16,
                                           n_frames=60, equilibration_steps=300)["positions"]
            h.update(pos.tobytes())
            h.update(physics.radius_of_gyration(pos).tobytes())
            h.update(physics.pair_distance_matrix(pos)[0].tobytes())
            h.update(physics.fraction_adsorbed(pos).tobytes())
            h.update(json.dumps(physics.contact_events(pos)).encode())
    env = numeric_environment()
    print(json.dumps({"digest": h.hexdigest(), "blas": env.get("blas"),
                      "dispatch": env.get("numpy_dispatch")}))
""")


def _python(code: str, env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES")}
    proc = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow   # several seconds: not in the quick loop
@x86_only
def test_demo_bytes_do_not_depend_on_blas_kernels_or_numpy_dispatch():
    results = {json.dumps(env, sort_keys=True): _python(DEMO_BYTES, env)
               for env in ENVIRONMENTS}
    # the environments really differ: other OpenBLAS kernels, other numpy dispatch
    kernels = {r["blas"][0]["architecture"] for r in results.values() if r["blas"]}
    assert len(kernels) >= 2, results
    assert len({tuple(r["dispatch"]) for r in results.values()}) >= 2, results
    digests = {env: r["digest"] for env, r in results.items()}
    assert len(set(digests.values())) == 1, digests


def test_numeric_environment_names_what_changes_numbers():
    env = _python("import json, numpy; from assay.pipeline.numerics import numeric_environment; "
                  "print(json.dumps(numeric_environment()))",
                  {"OPENBLAS_CORETYPE": "Prescott", "OPENBLAS_NUM_THREADS": "1"})
    assert env["env"]["OPENBLAS_CORETYPE"] == "Prescott"
    assert env["libraries"]["numpy"]
    assert env["machine"] and env["python"]
    [blas] = [b for b in env["blas"] if b["user_api"] == "blas"]
    assert blas["num_threads"] == 1 and blas["architecture"]
    assert env["portable"] is False
    # a process that never loaded numpy records no BLAS (it computed nothing with it)
    bare = _python("import json; from assay.pipeline.numerics import numeric_environment; "
                   "print(json.dumps(numeric_environment()))", {})
    assert "blas" not in bare and "numpy" not in bare["libraries"]


def test_environment_differences_are_one_line_per_fact():
    a = {"cpu": "X", "env": {"OPENBLAS_CORETYPE": "Haswell"},
         "blas": [{"internal_api": "openblas", "user_api": "blas", "architecture": "Haswell"}]}
    b = {"cpu": "X", "env": {},
         "blas": [{"internal_api": "openblas", "user_api": "blas", "architecture": "SkylakeX"}]}
    assert environment_differences(a, b) == [
        "blas.openblas.architecture: Haswell (A) vs SkylakeX (B)",
        "env.OPENBLAS_CORETYPE: Haswell (A) vs (unset) (B)"]
    assert environment_differences(a, a) == []
    assert "not on record" in environment_differences(a, None)[0]


def test_x86_levels():
    v3 = {"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3", "avx", "avx2", "bmi1",
          "bmi2", "f16c", "fma", "movbe", "xsave"}
    assert x86_level(v3) == "x86-64-v3"
    assert x86_level(v3 - {"fma"}) == "x86-64-v2"
    assert x86_level(v3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}) == \
        "x86-64-v4"
    assert x86_level(set()) is None


def test_portable_numerics_refuse_a_node_without_avx2(monkeypatch):
    from assay.pipeline import numerics

    monkeypatch.setattr(numerics.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(numerics, "_cpuinfo", lambda: ("Old Xeon E5-2670", {"sse2", "avx"}))
    env: dict[str, str] = {}
    with pytest.raises(PortableNumericsError) as err:
        apply_portable(env)
    message = str(err.value)
    assert "Old Xeon E5-2670" in message and "avx2, fma" in message
    assert "numerics: {portable: false}" in message and "--constraint" in message
    assert env == {}   # nothing half-applied

    monkeypatch.setattr(numerics.platform, "machine", lambda: "aarch64")
    with pytest.raises(PortableNumericsError, match="this node is aarch64"):
        apply_portable({})


@x86_only
@pytest.mark.skipif(not {"avx2", "fma"} <= FLAGS, reason="portable numerics need AVX2/FMA")
def test_portable_numerics_stop_a_process_that_loaded_numpy_too_early():
    code = textwrap.dedent("""
        import json, os
        import numpy   # too early: OpenBLAS already picked its kernels
        from assay.pipeline.numerics import apply_portable, check_portable, PortableNumericsError
        apply_portable()
        try:
            check_portable()
            print(json.dumps({"error": None}))
        except PortableNumericsError as exc:
            print(json.dumps({"error": str(exc)}))
    """)
    result = _python(code, {"OPENBLAS_CORETYPE": "Prescott"})
    assert result["error"] is not None
    assert "not Haswell" in result["error"] and "python -m assay.jobs" in result["error"]
    ok = _python(textwrap.dedent("""
        import json
        from assay.pipeline.numerics import apply_portable, check_portable, numeric_environment
        apply_portable()
        check_portable()
        print(json.dumps(numeric_environment()))
    """), {"OPENBLAS_CORETYPE": "Prescott"})
    assert ok["portable"] is True
    assert ok["env"]["OPENBLAS_CORETYPE"] == PORTABLE_ENV["OPENBLAS_CORETYPE"]
    assert not any(f.startswith("AVX512") or f == "X86_V4" for f in ok["numpy_dispatch"])


# --- through the workflow: a runner whose bytes depend on the BLAS kernels --------------
BLAS_SENSITIVE = textwrap.dedent('''
    import numpy as np


    def run(ctx):
        """Power iteration: matrix-vector products and dot products go through BLAS."""
        rng = np.random.default_rng(ctx.seed)
        a = rng.standard_normal((48, 48)) / 7.0
        x = rng.standard_normal(48)
        for _ in range(200):
            x = a @ x
            x /= np.sqrt(x @ x)
        return {"state": x}
''')
RUN_REF = "results/runs/free/1.json"


def _blas_study(where: Path, portable: bool) -> Path:
    where.mkdir()
    (where / "power.py").write_text(BLAS_SENSITIVE)
    config = copy.deepcopy(SMALL_CONFIG)
    config["runner"] = {"plugin": "python", "settings": {"callable": "power:run"}}
    config["numerics"] = {"portable": portable}
    write_config(where, config)
    return where


def _assay(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@x86_only
@pytest.mark.skipif(not {"avx2", "fma"} <= FLAGS, reason="portable numerics need AVX2/FMA")
def test_diff_names_the_core_type_and_portable_numerics_agree(tmp_path):
    studies = {}
    for portable in (False, True):
        for core in ("Prescott", "Haswell"):
            study = _blas_study(tmp_path / f"{core}-{portable}", portable)
            snakemake(study, RUN_REF, env={"OPENBLAS_CORETYPE": core})
            studies[core, portable] = study
    ref = lambda s: json.loads((s / RUN_REF).read_text())["digest"]  # noqa: E731

    # without the setting: other kernels, other bytes, and diff says why
    a, b = studies["Prescott", False], studies["Haswell", False]
    assert ref(a) != ref(b)
    proc = _assay(a, "diff", RUN_REF, "--store2", str(b / "store"),
                  "--results2", str(b / "results"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "computed in other numeric environments" in proc.stdout
    assert "env.OPENBLAS_CORETYPE: Prescott (A) vs Haswell (B)" in proc.stdout
    assert "architecture: " in proc.stdout and "Haswell (B)" in proc.stdout

    # with it: the same bytes whatever the node's kernels, and the record says portable
    a, b = studies["Prescott", True], studies["Haswell", True]
    assert ref(a) == ref(b)
    assert ref(a) != ref(studies["Prescott", False])   # the setting is part of the key
    records = [json.loads(p.read_text()) for p in (a / "store" / "actions").rglob("*.json")]
    [run_record] = [r for r in records if r["stage"] == "run"]
    assert run_record["numerics"]["portable"] is True
    [blas] = [x for x in run_record["numerics"]["blas"] if x["user_api"] == "blas"]
    assert blas["architecture"] == "Haswell" and blas["num_threads"] == 1
    manifest = _assay(a, "show", RUN_REF, "--json")
    assert '"portable": "x86-64-v3"' in manifest.stdout.replace("\n", "").replace("  ", "") \
        or "x86-64-v3" in manifest.stdout

    # reproduce in a process of its own honours the setting and gets the same digest
    proc = _assay(a, "reproduce", RUN_REF, "--run-recorded-code")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "identical" in proc.stdout
