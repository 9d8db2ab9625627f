"""Uncertainty for accuracy numbers: bootstrap intervals, McNemar's paired test, mean +- std.

The paper reports single top-1 numbers (e.g. student 97.36 vs teacher 95.87 on ARID's ~750 test
videos). Whether such a gap is larger than test-set noise is a question these answer:
- :func:`bootstrap_ci` — percentile bootstrap over test videos (Efron & Tibshirani 1993, ch. 13).
- :func:`mcnemar` — teacher vs student on the *same* videos (McNemar 1947); only the videos where
  they disagree carry information.
- :func:`mean_std` — spread over training seeds.
- :func:`paired_seed_test`, :func:`holm`, :func:`minimum_detectable_effect` — two models trained
  with the same seeds: paired t-test over seeds, Holm's multiple-comparison correction, and the
  smallest effect the design detects at 80 % power (Student's t from the regularised incomplete
  beta, :func:`t_cdf` / :func:`t_ppf`).
Pure numpy + ``math`` (scipy is not a dependency).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from darknb.errors import ConfigError

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


def bootstrap_ci(correct, *, n_boot: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of accuracy = mean(correct), as fractions in [0, 1].

    Resamples the test videos with replacement ``n_boot`` times; the interval is the
    ((1 - confidence) / 2, (1 + confidence) / 2) quantiles of the resampled accuracies.
    Deterministic for a given ``seed``.
    """
    arr = _as_correct(correct)
    if not isinstance(n_boot, int) or n_boot < 1:
        raise ConfigError(f"bootstrap_ci: n_boot must be an int >= 1, got {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"bootstrap_ci: confidence must be in (0, 1), got {confidence!r}")
    rng = np.random.default_rng(seed)
    n = arr.size
    # All resamples at once: n_boot x n indices is 2000 x ~1800 for Dark-48's test set (~30 MB).
    idx = rng.integers(0, n, size=(n_boot, n))
    accs = arr[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(accs, [alpha, 1.0 - alpha])
    return float(low), float(high)


def accuracy_ci(correct, *, n_boot: int = 2000, confidence: float = 0.95,
                seed: int = 0) -> dict[str, Any]:
    """Accuracy and its bootstrap interval in **percent**, with what produced them."""
    arr = _as_correct(correct)
    low, high = bootstrap_ci(arr, n_boot=n_boot, confidence=confidence, seed=seed)
    return {"accuracy": 100.0 * float(arr.mean()), "low": 100.0 * low, "high": 100.0 * high,
            "n": int(arr.size), "confidence": confidence, "n_boot": n_boot, "seed": seed,
            "method": "percentile bootstrap over test videos"}


def binomial_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n fair-coin trials: 2 * P(X <= min(k, n - k)), capped at 1."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def chi2_sf_df1(x: float) -> float:
    """Survival function of chi-square with 1 degree of freedom: P(Z^2 > x) = erfc(sqrt(x / 2))."""
    return math.erfc(math.sqrt(max(x, 0.0) / 2.0))


def mcnemar(correct_a, correct_b) -> dict[str, Any]:
    """McNemar's test that models A and B have the same accuracy on the same test videos.

    b = videos A gets right and B wrong, c = the reverse. Under H0 each discordant video is a fair
    coin. If b + c < 25 the **exact** binomial test is used (statistic = min(b, c)); otherwise the
    chi-square statistic with Edwards' continuity correction, (|b - c| - 1)^2 / (b + c), with 1 degree
    of freedom. Returns ``b, c, statistic, p_value, method``.
    """
    a = _as_correct(correct_a, "correct_a")
    bb = _as_correct(correct_b, "correct_b")
    if a.shape != bb.shape:
        raise ConfigError(f"mcnemar: correct_a and correct_b must cover the same test videos, "
                          f"got lengths {a.size} and {bb.size}")
    b = int(((a == 1) & (bb == 0)).sum())
    c = int(((a == 0) & (bb == 1)).sum())
    n = b + c
    if n < EXACT_BELOW:
        return {"b": b, "c": c, "statistic": float(min(b, c)), "p_value": binomial_two_sided_p(b, n),
                "method": "exact binomial (b + c < 25)"}
    stat = (abs(b - c) - 1.0) ** 2 / n
    return {"b": b, "c": c, "statistic": stat, "p_value": chi2_sf_df1(stat),
            "method": "chi-square with continuity correction (b + c >= 25)"}


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


# ----------------------------------------------------------------------------------------------
# Across training seeds: paired differences, Student's t, Holm, minimum detectable effect
# ----------------------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta (modified Lentz; Numerical Recipes
    in C, 2nd ed., section 6.4)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ConfigError(f"t_cdf: df must be > 0, got {df}")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (bisection on :func:`t_cdf`, |error| < 1e-10)."""
    if not 0.0 < q < 1.0:
        raise ConfigError(f"t_ppf: q must be in (0, 1), got {q}")
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return 0.5 * (lo + hi)


def paired_seed_test(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> dict:
    """Model A vs model B trained with the same seeds: mean of the per-seed differences a - b, its
    Student-t interval, and the two-sided paired t-test p-value (H0: mean difference 0).

    The interval is over training seeds on one fixed test set: it measures how much the
    difference moves with the training run, not test-set sampling (per-seed McNemar covers that).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ConfigError(f"paired_seed_test: need two equal-length 1-D sequences of >= 2 seeds, "
                          f"got shapes {a.shape} and {b.shape}")
    d = a - b
    n, mean, sd = d.size, float(d.mean()), float(d.std(ddof=1))
    half = t_ppf(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    if sd == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
    else:
        t = mean / (sd / math.sqrt(n))
        p = min(1.0, 2.0 * t_cdf(-abs(t), n - 1))
    return {"mean_diff": mean, "ci95_low": mean - half, "ci95_high": mean + half, "sd_diff": sd,
            "p_value": p, "n_seeds": n, "test": "paired t-test over seeds (two-sided)"}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = p.size
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def minimum_detectable_effect(sd_diff: float, n_seeds: int, *, alpha: float = 0.05,
                              power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided paired t-test over ``n_seeds`` seeds detects with
    probability ``power`` at level ``alpha``, for per-seed differences of standard deviation
    ``sd_diff``: (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n) (the usual t approximation
    of the noncentral-t power; in the units of ``sd_diff``)."""
    if n_seeds < 2:
        raise ConfigError(f"minimum_detectable_effect: need >= 2 seeds, got {n_seeds}")
    df = n_seeds - 1
    return (t_ppf(1.0 - alpha / 2.0, df) + t_ppf(power, df)) * sd_diff / math.sqrt(n_seeds)
