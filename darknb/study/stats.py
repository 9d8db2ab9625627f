"""Uncertainty for accuracy numbers, on the libraries researchers already trust.

The paper reports single top-1 numbers (e.g. student 97.36 vs teacher 95.87 on ARID's ~750 test
videos). Whether such a gap is larger than noise is a question these answer:

- :func:`bootstrap_ci` / :func:`accuracy_ci` — percentile bootstrap over test videos (Efron &
  Tibshirani 1993, ch. 13): **test-set sampling only**, for one trained model.
- :func:`mcnemar` — two models on the *same* videos (McNemar 1947; ``statsmodels``'
  ``contingency_tables.mcnemar``: exact binomial below 25 discordant pairs, else chi-square with
  continuity correction).
- :func:`mean_std`, :func:`seed_interval` — spread over training seeds and the Student-t interval
  of the mean over seeds (``scipy.stats.t``).
- :func:`paired_seed_test` — two models trained with the same seeds: paired t-test
  (``scipy.stats.ttest_rel``) with its interval; :func:`holm` — Holm's step-down correction
  (``statsmodels.stats.multitest.multipletests``); :func:`minimum_detectable_effect` — the
  smallest true difference the design detects with 80 % power, from the exact noncentral t
  (``statsmodels.stats.power.TTestPower``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as _sm_mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from darknb.errors import ConfigError

__all__ = ["EXACT_BELOW", "accuracy_ci", "bootstrap_ci", "correct_by_video", "holm", "mcnemar",
           "mean_std", "minimum_detectable_effect", "paired_seed_test", "seed_interval"]

# Below this many discordant pairs the chi-square approximation is poor; use the exact binomial
# test (the usual rule of thumb, e.g. the statsmodels documentation of mcnemar).
EXACT_BELOW = 25


def _as_correct(correct, name: str = "correct") -> np.ndarray:
    """A 1-D 0/1 array; anything else (empty, 2-D, values such as 0.5 or 2) is rejected."""
    arr = np.asarray(correct)
    if arr.ndim != 1 or arr.size == 0:
        raise ConfigError(f"{name}: expected a non-empty 1-D array of 0/1 per test video, "
                          f"got shape {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        bad = arr[~np.isin(arr, (0, 1))][:3]
        raise ConfigError(f"{name}: values must be 0/1 (or bool), found {bad.tolist()}")
    return arr.astype(np.float64)


def correct_by_video(predictions: dict) -> tuple[np.ndarray, np.ndarray]:
    """(video indices, 0/1 correct) sorted by video index, from an ``evaluate`` result, so two
    models' predictions on the same test set can be paired."""
    order = np.argsort(predictions["indices"])
    idx = np.asarray(predictions["indices"])[order]
    return idx, (np.asarray(predictions["pred"]) == np.asarray(predictions["labels"]))[order].astype(int)


def bootstrap_ci(values, *, n_boot: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(values)`` (e.g. accuracy from 0/1 per video),
    resampling the videos with replacement ``n_boot`` times; deterministic for a given ``seed``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or not np.isfinite(arr).all():
        raise ConfigError(f"bootstrap_ci: expected a non-empty 1-D array of finite values, got "
                          f"shape {arr.shape}")
    if not isinstance(n_boot, int) or n_boot < 1:
        raise ConfigError(f"bootstrap_ci: n_boot must be an int >= 1, got {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"bootstrap_ci: confidence must be in (0, 1), got {confidence!r}")
    rng = np.random.default_rng(seed)
    # All resamples at once: n_boot x n indices is 2000 x ~1800 for Dark-48's test set (~30 MB).
    accs = arr[rng.integers(0, arr.size, size=(n_boot, arr.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(accs, [alpha, 1.0 - alpha])
    return float(low), float(high)


def accuracy_ci(correct, *, n_boot: int = 2000, confidence: float = 0.95,
                seed: int = 0) -> dict[str, Any]:
    """Accuracy and its bootstrap interval over test videos in **percent**, with what produced
    them. It covers test-set sampling only, not the variation between training runs."""
    arr = _as_correct(correct)
    low, high = bootstrap_ci(arr, n_boot=n_boot, confidence=confidence, seed=seed)
    return {"accuracy": 100.0 * float(arr.mean()), "low": 100.0 * low, "high": 100.0 * high,
            "n": int(arr.size), "confidence": confidence, "n_boot": n_boot, "seed": seed,
            "method": "percentile bootstrap over test videos (test-set sampling only)"}


def mcnemar(correct_a, correct_b) -> dict[str, Any]:
    """McNemar's test that models A and B have the same accuracy on the same test videos.

    b = videos A gets right and B wrong, c = the reverse. Under H0 each discordant video is a fair
    coin. If b + c < 25 the **exact** binomial test is used (statistic = min(b, c)); otherwise the
    chi-square statistic with Edwards' continuity correction, (|b - c| - 1)^2 / (b + c), with 1
    degree of freedom (``statsmodels.stats.contingency_tables.mcnemar``). Returns ``b, c,
    statistic, p_value, method``.
    """
    a = _as_correct(correct_a, "correct_a")
    bb = _as_correct(correct_b, "correct_b")
    if a.shape != bb.shape:
        raise ConfigError(f"mcnemar: correct_a and correct_b must cover the same test videos, "
                          f"got lengths {a.size} and {bb.size}")
    b = int(((a == 1) & (bb == 0)).sum())
    c = int(((a == 0) & (bb == 1)).sum())
    if b + c == 0:
        return {"b": 0, "c": 0, "statistic": 0.0, "p_value": 1.0,
                "method": "exact binomial (b + c < 25)"}
    exact = b + c < EXACT_BELOW
    table = [[int(((a == 1) & (bb == 1)).sum()), b], [c, int(((a == 0) & (bb == 0)).sum())]]
    res = _sm_mcnemar(table, exact=exact, correction=True)
    method = ("exact binomial (b + c < 25)" if exact
              else "chi-square with continuity correction (b + c >= 25)")
    return {"b": b, "c": c, "statistic": float(res.statistic), "p_value": min(1.0, float(res.pvalue)),
            "method": method}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1) of e.g. accuracies over seeds.

    One value has no spread estimate: its std is NaN, not 0, so a single run never looks certain.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ConfigError(f"mean_std: expected a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"mean_std: values must be finite, got {arr.tolist()}")
    std = float(arr.std(ddof=1)) if arr.size > 1 else float("nan")
    return float(arr.mean()), std


def seed_interval(values: Sequence[float], *, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean over training seeds (``scipy.stats.t``): how far the
    mean of this design moves between repetitions of the training runs, on this test set. NaN for
    a single seed (no spread estimate)."""
    mean, std = mean_std(values)
    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    half = float(sps.t.ppf(0.5 + confidence / 2.0, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def paired_seed_test(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> dict:
    """Model A vs model B trained with the same seeds: mean of the per-seed differences a - b, its
    Student-t interval, and the two-sided paired t-test p-value (``scipy.stats.ttest_rel``;
    H0: mean difference 0).

    The interval is over training seeds on one fixed test set: it measures how much the
    difference moves with the training run, not test-set sampling (per-seed McNemar covers that).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ConfigError(f"paired_seed_test: need two equal-length 1-D sequences of >= 2 seeds, "
                          f"got shapes {a.shape} and {b.shape}")
    d = a - b
    n, mean, sd = d.size, float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:  # every seed gave the same difference: t is undefined (scipy returns NaN)
        p, low, high = (1.0 if mean == 0.0 else 0.0), mean, mean
    else:
        res = sps.ttest_rel(a, b)
        ci = res.confidence_interval(confidence)
        p, low, high = float(res.pvalue), float(ci.low), float(ci.high)
    return {"mean_diff": mean, "ci95_low": low, "ci95_high": high, "sd_diff": sd,
            "p_value": p, "n_seeds": n, "test": "paired t-test over seeds (two-sided)"}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone), in the input order
    (``statsmodels.stats.multitest.multipletests(method="holm")``)."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return []
    return multipletests(p, method="holm")[1].tolist()


def minimum_detectable_effect(sd_diff: float, n_seeds: int, *, alpha: float = 0.05,
                              power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided paired t-test over ``n_seeds`` seeds detects with
    probability ``power`` at level ``alpha``, for per-seed differences of standard deviation
    ``sd_diff``, in the units of ``sd_diff``. Exact: the noncentral-t power of
    ``statsmodels.stats.power.TTestPower`` solved for the effect size (the usual normal or
    central-t shortcut is 5 % optimistic at 3 seeds, 14 % at 2)."""
    if n_seeds < 2:
        raise ConfigError(f"minimum_detectable_effect: need >= 2 seeds, got {n_seeds}")
    effect = TTestPower().solve_power(effect_size=None, nobs=n_seeds, alpha=alpha, power=power,
                                      alternative="two-sided")
    return float(np.squeeze(effect)) * sd_diff
