"""AgeSD's calibration (immray.faces.age_error) recovers a known spread and covers what it should."""

from __future__ import annotations

import numpy as np
import pytest

from immray.faces.age_error import AGE_ERROR, AgeError, coverage, fit


def _labeled(n: int, seed: int):
    rng = np.random.default_rng(seed)
    estimates = rng.uniform(20, 80, n)
    labels = estimates + rng.normal(0, 2.0 + 0.1 * estimates)  # the truth spreads more for older faces
    return estimates, labels


def test_the_fit_recovers_a_spread_that_grows_with_age():
    estimates, labels = _labeled(20_000, 1)
    model = fit(estimates, labels)
    assert model.slope == pytest.approx(0.1, abs=0.01)
    assert model.intercept == pytest.approx(2.0, abs=0.5)
    assert model.lowest == pytest.approx(20.6, abs=0.5)  # the 1st and 99th percentiles of the estimates
    assert model.highest == pytest.approx(79.4, abs=0.5)
    assert model.sd(30) < model.sd(70)
    assert model.sd(120) == model.sd(model.highest)  # not extrapolated beyond what was measured


def test_held_out_labels_fall_within_one_and_two_sd_as_a_normal_error_does():
    model = fit(*_labeled(5_000, 2))
    within1, within2, n = coverage(model, *(v.tolist() for v in _labeled(5_000, 3)))
    assert n > 4_800
    assert within1 == pytest.approx(0.683, abs=0.03)
    assert within2 == pytest.approx(0.954, abs=0.02)


def test_below_the_calibrated_ages_there_is_no_age_sd():
    model = AgeError(intercept=1.0, slope=0.1, lowest=18.0, highest=70.0)
    assert model.sd(5) is None
    assert model.sd(18) == 2.8
    assert model.sd(40) == 5.0
    assert model.sd(90) == 8.0


def test_too_few_labels_are_refused():
    with pytest.raises(ValueError, match="at least 10"):
        fit([30, 40], [31, 44])


def test_the_shipped_calibration_is_a_fitted_one():
    assert AGE_ERROR.lowest >= 13 and AGE_ERROR.highest > 60  # calibrated on adults: children get none
    assert all(2 < AGE_ERROR.sd(age) < 15 for age in range(20, 100))
