"""The numeric environment of a job: what it records, and portable numerics on request.

Floating-point results depend on more than code and inputs: OpenBLAS picks its kernels by
the CPU it detects (Haswell, SkylakeX, ...), numpy dispatches AVX-512 or AVX2 versions of
``exp``/``power``, and thread counts change the order of reductions. Chaotic dynamics
amplify a last-bit difference into another trajectory. So every computed action records
its numeric environment (``numeric_environment``) beside when/where/how long, in the action
record and never in a manifest: the same numbers from two machines keep one digest, and
when two results differ ``assay diff``/``reproduce`` name what differed
(``environment_differences``).

A study that needs the same bits on every node sets ``numerics: {portable: true}``: each
job then pins, before numpy loads, the BLAS kernels to OpenBLAS's Haswell set (MKL:
conditional numerical reproducibility at AVX2), BLAS threads to 1 and numpy's
dispatch to at most AVX2 (x86-64-v3), and checks after loading that all of it holds.
A node that cannot honour that (no AVX2/FMA, another BLAS, numpy loaded too early) stops
the job with the reason instead of computing other bytes (``PortableNumericsError``).
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any, Callable, Mapping, MutableMapping

from ..errors import AssayError

# Environment variables that change floating-point results or their order.
NUMERIC_ENV_VARS = (
    "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS",
    "MKL_NUM_THREADS", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE",
    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
    "NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES",
    "OPENMM_CPU_THREADS", "OPENMM_DEFAULT_PLATFORM",
)
# Libraries whose version changes numbers: recorded when this process loaded them (a
# library it never loaded computed nothing; never imported here).
NUMERIC_LIBRARIES = ("numpy", "scipy", "openmm", "MDAnalysis", "pandas", "matplotlib")

# The portable profile: x86-64-v3 (AVX2 + FMA), which every x86-64 node sold since 2015
# has. numpy ignores names its build does not dispatch (old and new spellings both here).
PORTABLE_PROFILE = "x86-64-v3"
_NUMPY_AVX512 = ("X86_V4 AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX "
                 "AVX512_CNL AVX512_ICL AVX512_SPR")
PORTABLE_ENV = {
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": "1",
    "GOTO_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MKL_CBWR": "AVX2,STRICT",
    "NPY_DISABLE_CPU_FEATURES": _NUMPY_AVX512,
}
_REQUIRED_CPU_FLAGS = ("avx2", "fma")


class PortableNumericsError(AssayError):
    """This process cannot compute the portable numbers the study asks for."""


# --- what a job records ----------------------------------------------------------------
def _cpuinfo() -> tuple[str | None, set[str]]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            text = handle.read(1 << 16)
    except OSError:
        return None, set()
    model, flags = None, set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "model name" and model is None:
            model = value.strip()
        elif name in ("flags", "Features") and not flags:
            flags = set(value.split())
        if model is not None and flags:
            break
    return model, flags


def x86_level(flags: set[str]) -> str | None:
    """The x86-64 micro-architecture level these CPU flags reach (v1 .. v4)."""
    if not flags:
        return None
    v2 = {"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"}
    v3 = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave"}
    v4 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
    level = "x86-64-v1"
    for name, needed in (("x86-64-v2", v2), ("x86-64-v3", v3), ("x86-64-v4", v4)):
        if not needed <= flags:
            break
        level = name
    return level


def _loaded_version(name: str) -> str | None:
    module = sys.modules.get(name)
    version = getattr(module, "__version__", None) if module is not None else None
    return str(version) if version is not None else None


def _numpy_dispatch() -> list[str] | None:
    """numpy's SIMD targets in effect (after NPY_DISABLE_CPU_FEATURES), if numpy is loaded."""
    if "numpy" not in sys.modules:
        return None
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy < 2
        try:
            from numpy.core import _multiarray_umath as umath  # type: ignore[no-redef]
        except ImportError:
            return None
    features = getattr(umath, "__cpu_features__", {})
    return [f for f in getattr(umath, "__cpu_dispatch__", []) if features.get(f)]


def _blas() -> list[dict[str, Any]] | None:
    """The BLAS/OpenMP libraries loaded in this process, as threadpoolctl sees them."""
    if "numpy" not in sys.modules:
        return None
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads",
            "threading_layer")
    return [{k: info[k] for k in keep if info.get(k) is not None}
            for info in threadpool_info()]


def numeric_environment(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What made this process's numbers: CPU, SIMD level, BLAS kernels and threads,
    the versions of the numeric libraries it loaded, the variables that change numerics.

    BLAS and numpy dispatch are read only when numpy is already loaded (a job that never
    loaded numpy computed nothing with it); nothing here imports numpy.
    """
    env = os.environ if env is None else env
    model, flags = _cpuinfo()
    libc, libc_version = platform.libc_ver()
    out: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu": model,
        "cpu_level": x86_level(flags) if platform.machine() in ("x86_64", "AMD64") else None,
        "python": platform.python_version(),
        "libc": f"{libc} {libc_version}".strip() or None,
        "libraries": {name: v for name in NUMERIC_LIBRARIES
                      if (v := _loaded_version(name)) is not None},
        "env": {name: env[name] for name in NUMERIC_ENV_VARS if name in env},
        "portable": env.get("ASSAY_PORTABLE_NUMERICS") == PORTABLE_PROFILE,
    }
    dispatch = _numpy_dispatch()
    if dispatch is not None:
        out["numpy_dispatch"] = dispatch
    blas = _blas()
    if blas is not None:
        out["blas"] = blas
    return out


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key in sorted(value):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for item in value:   # BLAS entries, named by their library
            name = item.get("internal_api") or item.get("user_api") or "lib"
            _flatten({k: v for k, v in item.items() if k != "internal_api"},
                     f"{prefix}.{name}", out)
    else:
        out[prefix] = " ".join(value) if isinstance(value, list) else value


def environment_differences(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None,
                            names: tuple[str, str] = ("A", "B")) -> list[str]:
    """One line per numeric-environment fact that differs, e.g.
    ``blas.openblas.architecture: Haswell (A) vs SkylakeX (B)``."""
    if a is None or b is None:
        missing = [n for n, e in zip(names, (a, b)) if e is None]
        return [f"numeric environment of {' and '.join(missing)} not on record (computed "
                "before assay recorded it, or its action record is gone)"]
    flat_a: dict[str, Any] = {}
    flat_b: dict[str, Any] = {}
    _flatten(dict(a), "", flat_a)
    _flatten(dict(b), "", flat_b)
    lines = []
    for key in sorted(set(flat_a) | set(flat_b)):
        va, vb = flat_a.get(key, "(unset)"), flat_b.get(key, "(unset)")
        if va != vb:
            lines.append(f"{key}: {va} ({names[0]}) vs {vb} ({names[1]})")
    return lines


# --- portable numerics -----------------------------------------------------------------
def apply_portable(env: MutableMapping[str, str] | None = None,
                   log: Callable[[str], None] = lambda _m: None) -> None:
    """Pin this process's numerics to the portable profile; call before numpy loads.

    Raises PortableNumericsError when this node cannot honour the profile at all.
    """
    env = os.environ if env is None else env
    machine = platform.machine()
    if machine not in ("x86_64", "AMD64"):
        raise PortableNumericsError(
            f"numerics.portable asks for {PORTABLE_PROFILE} numbers, but this node is "
            f"{machine}: its kernels give other bits. Run the study on x86-64 nodes, or set "
            "`numerics: {portable: false}` and accept node-dependent last bits.")
    model, flags = _cpuinfo()
    missing = [f for f in _REQUIRED_CPU_FLAGS if f not in flags]
    if flags and missing:
        raise PortableNumericsError(
            f"numerics.portable needs AVX2 and FMA ({PORTABLE_PROFILE}); this node's CPU "
            f"({model or 'unknown model'}) lacks {', '.join(missing)}. Exclude such nodes "
            "(SLURM: a --constraint in resources.run.slurm_extra) or set "
            "`numerics: {portable: false}`.")
    changed = [f"{k}={env[k]!r}" for k, v in PORTABLE_ENV.items()
               if k in env and env[k] != v]
    if changed:
        log(f"numerics.portable overrides {', '.join(changed)}")
    env.update(PORTABLE_ENV)
    env["ASSAY_PORTABLE_NUMERICS"] = PORTABLE_PROFILE


def check_portable() -> None:
    """Load numpy and confirm the portable profile holds in this process, or stop.

    A process that loaded numpy before ``apply_portable`` (or a library that ignores the
    variables) would otherwise compute node-dependent bits under a portable label.
    """
    fix = ("Start the job through `python -m assay.jobs` (the workflow does) or set the "
           "variables in assay.pipeline.numerics.PORTABLE_ENV before Python starts.")
    if os.environ.get("ASSAY_PORTABLE_NUMERICS") != PORTABLE_PROFILE:
        raise PortableNumericsError(f"numerics.portable is set but this process was not "
                                    f"prepared for it (assay.pipeline.numerics.apply_portable). {fix}")
    import numpy  # noqa: F401  (loads the BLAS the check reads)

    problems = []
    dispatch = _numpy_dispatch() or []
    wide = [f for f in dispatch if f.startswith("AVX512") or f == "X86_V4"]
    if wide:
        problems.append(f"numpy dispatches {', '.join(wide)} (numpy was loaded before "
                        "NPY_DISABLE_CPU_FEATURES was set)")
    for lib in _blas() or []:
        api = lib.get("internal_api")
        if lib.get("user_api") != "blas":
            continue
        if api == "openblas":
            if lib.get("architecture") != PORTABLE_ENV["OPENBLAS_CORETYPE"]:
                problems.append(f"OpenBLAS {lib.get('version')} runs its "
                                f"{lib.get('architecture')} kernels, not Haswell")
        elif api != "mkl":
            problems.append(f"the BLAS is {api} {lib.get('version')}, whose kernels assay "
                            "cannot pin (OpenBLAS and MKL can be)")
        if lib.get("num_threads") != 1:
            problems.append(f"{api} uses {lib.get('num_threads')} threads, not 1")
    if problems:
        raise PortableNumericsError("numerics.portable cannot be honoured in this process: "
                                    + "; ".join(problems) + f". {fix}")
