"""Statistics against hand-computed and textbook values."""

import math

import numpy as np
import pytest

from darknb.errors import ConfigError
from darknb.stats import (
    accuracy_ci,
    binomial_two_sided_p,
    bootstrap_ci,
    chi2_sf_df1,
    mcnemar,
    mean_std,
)


def test_bootstrap_ci_close_to_normal_approximation_and_seeded():
    correct = np.array([1] * 80 + [0] * 20)
    low, high = bootstrap_ci(correct, n_boot=4000, seed=0)
    # Normal approximation: 0.8 +- 1.96 * sqrt(0.8 * 0.2 / 100) = (0.7216, 0.8784).
    assert low == pytest.approx(0.7216, abs=0.015) and high == pytest.approx(0.8784, abs=0.015)
    assert bootstrap_ci(correct, n_boot=4000, seed=0) == (low, high)
    assert bootstrap_ci(correct, n_boot=4000, seed=1) != (low, high)
    narrow = bootstrap_ci(correct, n_boot=4000, confidence=0.5, seed=0)
    assert low < narrow[0] < 0.8 < narrow[1] < high


def test_bootstrap_degenerate_and_invalid_inputs():
    assert bootstrap_ci(np.ones(30, dtype=bool)) == (1.0, 1.0)
    assert bootstrap_ci([0, 0, 0]) == (0.0, 0.0)
    with pytest.raises(ConfigError, match="0/1"):
        bootstrap_ci([1, 0, 2])
    with pytest.raises(ConfigError, match="non-empty"):
        bootstrap_ci([])
    with pytest.raises(ConfigError, match="confidence"):
        bootstrap_ci([1, 0], confidence=95)


def test_accuracy_ci_in_percent():
    res = accuracy_ci([1, 1, 1, 0], n_boot=500)
    assert res["accuracy"] == 75.0 and res["n"] == 4
    assert 0.0 <= res["low"] <= 75.0 <= res["high"] <= 100.0


def test_chi2_and_binomial_tails_match_tables():
    assert chi2_sf_df1(3.841458820694124) == pytest.approx(0.05, abs=1e-9)  # 95 % critical value
    assert chi2_sf_df1(6.634896601021214) == pytest.approx(0.01, abs=1e-9)
    assert binomial_two_sided_p(1, 8) == pytest.approx(2 * (1 + 8) / 256)
    assert binomial_two_sided_p(4, 8) == 1.0


def test_mcnemar_exact_small_sample():
    # 10 concordant videos, then b = 1 (A right, B wrong) and c = 7 (A wrong, B right).
    a = [1] * 5 + [0] * 5 + [1] + [0] * 7
    b = [1] * 5 + [0] * 5 + [0] + [1] * 7
    res = mcnemar(a, b)
    assert (res["b"], res["c"]) == (1, 7)
    assert res["p_value"] == pytest.approx(0.0703125)
    assert res["method"].startswith("exact")
    assert mcnemar(a, a)["p_value"] == 1.0


def test_mcnemar_chi_square_wikipedia_example():
    # Wikipedia's McNemar example table: a = 101, b = 121, c = 59, d = 33.
    a = [1] * 101 + [1] * 121 + [0] * 59 + [0] * 33
    b = [1] * 101 + [0] * 121 + [1] * 59 + [0] * 33
    res = mcnemar(a, b)
    assert (res["b"], res["c"]) == (121, 59)
    assert res["statistic"] == pytest.approx((62 - 1) ** 2 / 180)  # 20.672
    assert res["p_value"] == pytest.approx(math.erfc(math.sqrt(20.672222 / 2)), rel=1e-5)
    assert 5e-6 < res["p_value"] < 6e-6
    assert res["method"].startswith("chi-square")
    with pytest.raises(ConfigError, match="same test videos"):
        mcnemar([1, 0], [1, 0, 1])


def test_mean_std():
    mean, std = mean_std([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert mean == 5.0 and std == pytest.approx(math.sqrt(32 / 7))
    mean, std = mean_std([97.36])
    assert mean == 97.36 and math.isnan(std)
    with pytest.raises(ConfigError):
        mean_std([1.0, float("nan")])


def test_student_t_matches_tables():
    from darknb.stats import t_cdf, t_ppf

    assert abs(t_ppf(0.975, 5) - 2.570582) < 1e-5   # two-sided 5 % critical values
    assert abs(t_ppf(0.975, 1) - 12.706205) < 1e-4
    assert abs(t_ppf(0.975, 10_000) - 1.960201) < 1e-4
    assert abs(t_cdf(2.015048, 5) - 0.95) < 1e-6
    assert abs(t_cdf(0.0, 3) - 0.5) < 1e-12 and abs(t_cdf(-1.533206, 4) - 0.1) < 1e-6


def test_paired_seed_test_and_holm():
    from darknb.stats import holm, minimum_detectable_effect, paired_seed_test

    res = paired_seed_test([50.0, 52.0, 51.0, 55.0, 53.0], [48.0, 49.0, 50.0, 51.0, 50.0])
    # differences 2, 3, 1, 4, 3: mean 2.6, sd 1.1402, t = 5.099 with 4 df
    assert abs(res["mean_diff"] - 2.6) < 1e-12 and abs(res["sd_diff"] - 1.140175) < 1e-6
    assert abs(res["p_value"] - 0.006994) < 1e-5
    assert res["ci95_low"] < 2.6 < res["ci95_high"] and abs(res["ci95_high"] - 2.6 - 1.415716) < 1e-5
    assert paired_seed_test([1.0, 2.0], [1.0, 2.0])["p_value"] == 1.0
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    # 6 seeds, sd 2 points: (2.5706 + 0.9195) * 2 / sqrt(6)
    assert abs(minimum_detectable_effect(2.0, 6) - 2.8496) < 1e-3
