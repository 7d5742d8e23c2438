"""AgeSD: how far a face's true age typically lies from the age network's estimate.

face-api's age network is a plain regression with no spread of its own, so its error is calibrated on labeled
photos instead: ``sd(age) = intercept + slope * age`` (older faces are estimated less precisely), fitted to the
absolute errors scaled by sqrt(pi/2), which is the SD of a normal error whose mean absolute value they are.
``python -m immray.bench.attributes DIR --calibrate`` fits it, choosing it on some people and checking it on
the others (how often a held-out label lies within one and two AgeSD of its estimate: 0.68 and 0.95 for a
calibrated normal error), and prints the values that ``AGE_ERROR`` ships.

The calibration saw only the ages of its labeled photos: an estimate below ``lowest`` (the youngest ages it
measured) gets no AgeSD rather than an extrapolated one, and one above ``highest`` the AgeSD of ``highest``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_NORMAL_SD_PER_MAE = math.sqrt(math.pi / 2)


@dataclass(frozen=True)
class AgeError:
    """The calibrated spread of the true age around an estimate, in years."""

    intercept: float
    slope: float
    lowest: float  # estimates below it were not calibrated
    highest: float = float("inf")  # nor above it: the line stops there

    def sd(self, age: float) -> float | None:
        """The AgeSD of an estimate of ``age`` years (None where not calibrated)."""
        if age < self.lowest:
            return None
        return round(max(1.0, self.intercept + self.slope * min(float(age), self.highest)), 1)


def fit(estimates, labels, tail: float = 0.01) -> AgeError:
    """The least-squares line through each estimate's absolute error times sqrt(pi/2); ``lowest`` and
    ``highest`` are the ``tail`` and 1 - ``tail`` quantiles of the estimates (the range the line was
    measured on)."""
    x = np.asarray(estimates, np.float64)
    y = np.abs(np.asarray(labels, np.float64) - x) * _NORMAL_SD_PER_MAE
    if len(x) < 10:
        raise ValueError("at least 10 labeled ages are needed to calibrate AgeSD")
    slope, intercept = np.polyfit(x, y, 1)
    low, high = np.quantile(x, [tail, 1 - tail])
    return AgeError(float(intercept), float(slope), float(low), float(high))


def coverage(model: AgeError, estimates, labels) -> tuple[float, float, int]:
    """How often a label lies within one and within two AgeSD of its estimate, over the estimates that have
    an AgeSD, and how many those were."""
    inside1 = inside2 = n = 0
    for est, label in zip(estimates, labels, strict=True):
        sd = model.sd(est)
        if sd is None:
            continue
        n += 1
        inside1 += abs(label - est) <= sd
        inside2 += abs(label - est) <= 2 * sd
    return (inside1 / n if n else float("nan"), inside2 / n if n else float("nan"), n)


#: Fitted by ``python -m immray.bench.attributes ../shared/eval/dev --calibrate`` (see the README).
#: On dev's 1,432 photos of 47 public figures aged 20-80 (labels from public record), 2026-12-05: held out over
#: 5 folds of people (quality_folds.fold_of), 0.700 of the labels lie within one AgeSD and 0.934 within two
#: (folds 0.40-0.80 and 0.82-0.99). The error shrinks with the estimate: young-looking estimates of older people miss the most.
AGE_ERROR = AgeError(intercept=12.40, slope=-0.0929, lowest=20.0, highest=76.0)
