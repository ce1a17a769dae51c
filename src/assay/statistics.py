"""Replicate statistics: t-based intervals per condition and Welch comparisons.

Computed from payload metrics only, so aggregation never opens a sidecar. The t
distribution comes from scipy.special (stdtr/stdtrit): the same numbers as scipy.stats.t,
for a third of the import time, which every aggregate and compare job pays.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence


def summarize(values: Sequence[float], confidence: float) -> dict[str, Any]:
    """n, mean, std (n-1), SEM and a t interval; spread is None when n < 2."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = math.fsum(values) / n
    summary: dict[str, Any] = {"n": n, "mean": mean, "std": None, "sem": None,
                               "ci_low": None, "ci_high": None, "confidence": confidence}
    if n >= 2:
        from scipy.special import stdtrit

        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
        sem = std / math.sqrt(n)
        half = float(stdtrit(n - 1, 0.5 + confidence / 2)) * sem
        summary.update(std=std, sem=sem, ci_low=mean - half, ci_high=mean + half)
    return summary


def welch(treatment: Mapping[str, Any], control: Mapping[str, Any],
          confidence: float) -> dict[str, Any]:
    """Difference of means (treatment - control), its Welch interval, t, df and p."""
    diff = treatment["mean"] - control["mean"]
    result: dict[str, Any] = {"difference": diff, "ci_low": None, "ci_high": None,
                              "t": None, "df": None, "p": None, "confidence": confidence,
                              "n_treatment": treatment["n"], "n_control": control["n"]}
    if treatment.get("std") is None or control.get("std") is None:
        return result
    from scipy.special import stdtr, stdtrit

    v1 = treatment["std"] ** 2 / treatment["n"]
    v2 = control["std"] ** 2 / control["n"]
    se = math.sqrt(v1 + v2)
    if se == 0.0:
        return result
    df = (v1 + v2) ** 2 / (v1 ** 2 / (treatment["n"] - 1) + v2 ** 2 / (control["n"] - 1))
    t = diff / se
    p = float(2 * stdtr(df, -abs(t)))
    half = float(stdtrit(df, 0.5 + confidence / 2)) * se
    result.update(ci_low=diff - half, ci_high=diff + half, t=t, df=df, p=p)
    return result
