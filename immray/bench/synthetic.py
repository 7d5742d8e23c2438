"""Synthetic face descriptors with the spread of real ones, for scale benchmarks.

Fitted on a labeled set of real (normalised) descriptors as a two-level Gaussian: a person is a centre drawn
around the global mean with the between-person covariance, a photo is that centre plus noise with the
within-person covariance, then normalised like the real ones. Both covariances are estimated from the set
(full 128x128, so the real anisotropy is kept) and scaled so that the mean same-person and different-person
distances of the synthetic faces match the real ones. Some people vary more than others: each person's
within-person spread is scaled by a log-normal factor whose width is chosen so that the spread of
same-person distances (5th to 95th percentile) matches too. Sizes of people follow the real set's histogram.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _psd_root(cov: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    return vecs * np.sqrt(np.clip(vals, 0, None))


def distance_profile(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, pairs: int = 20_000):
    """Mean and 5/50/95th percentiles of same-person and different-person distances (normalised vectors)."""
    x = _normalise(x)
    order = np.argsort(labels, kind="stable")
    labels, x = labels[order], x[order]
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    sizes = np.diff(np.r_[starts, len(labels)])
    multi = np.flatnonzero(sizes >= 2)
    g = rng.choice(multi, pairs, p=sizes[multi] / sizes[multi].sum())
    a = starts[g] + (rng.random(pairs) * sizes[g]).astype(int)
    b = starts[g] + (rng.random(pairs) * sizes[g]).astype(int)
    keep = a != b
    same = np.linalg.norm(x[a[keep]] - x[b[keep]], axis=1)
    i, j = rng.integers(0, len(x), pairs), rng.integers(0, len(x), pairs)
    keep = labels[i] != labels[j]
    diff = np.linalg.norm(x[i[keep]] - x[j[keep]], axis=1)
    q = [5, 50, 95]
    return {
        "same": (same.mean(), *np.percentile(same, q)),
        "different": (diff.mean(), *np.percentile(diff, q)),
    }


@dataclass
class DescriptorModel:
    mean: np.ndarray
    between: np.ndarray  # (d, d) root of the between-person covariance
    within: np.ndarray  # (d, d) root of the within-person covariance
    sizes: np.ndarray  # photos per person in the real set
    person_spread: float = 0.0  # sd of the log of each person's within-person scale

    @classmethod
    def fit(cls, x: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> DescriptorModel:
        x = _normalise(x.astype(np.float64))
        names, codes, sizes = np.unique(labels, return_inverse=True, return_counts=True)
        centres = np.zeros((len(names), x.shape[1]))
        np.add.at(centres, codes, x)
        centres /= sizes[:, None]
        multi = sizes[codes] >= 2
        dev = (x - centres[codes])[multi] * np.sqrt(sizes[codes][multi] / (sizes[codes][multi] - 1))[:, None]
        within = dev.T @ dev / len(dev)
        mean = centres.mean(axis=0)
        offsets = centres - mean
        between = offsets.T @ offsets / len(names) - within * np.mean(1.0 / sizes)
        target = distance_profile(x, labels, rng)
        best = None
        for person_spread in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5):
            model = cls(mean, _psd_root(between), _psd_root(within), sizes, person_spread)
            for _ in range(5):  # scale the two spreads until the mean distances match the real ones
                xs, ls = model.sample(20_000, rng)
                got = distance_profile(xs, ls, rng)
                model.within *= target["same"][0] / got["same"][0]
                model.between *= target["different"][0] / got["different"][0]
            got = distance_profile(*model.sample(20_000, rng), rng)
            miss = abs((got["same"][3] - got["same"][1]) - (target["same"][3] - target["same"][1]))
            if best is None or miss < best[0]:
                best = (miss, model)
        return best[1]

    def sample(
        self, n: int, rng: np.random.Generator, first_person: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` faces (float32, normalised) and their person numbers, people sized like the real set."""
        sizes = rng.choice(self.sizes, size=n)  # more than enough people
        sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n)) + 1]
        sizes[-1] -= sizes.sum() - n
        people = np.repeat(np.arange(len(sizes)), sizes)
        d = len(self.mean)
        out = np.empty((n, d), np.float32)
        centres = self.mean + rng.standard_normal((len(sizes), d)) @ self.between.T
        scale = np.exp(self.person_spread * rng.standard_normal(len(sizes)))
        for lo in range(0, n, 100_000):
            hi = min(n, lo + 100_000)
            noise = rng.standard_normal((hi - lo, d)) @ self.within.T
            chunk = centres[people[lo:hi]] + noise * scale[people[lo:hi], None]
            out[lo:hi] = _normalise(chunk)
        return out, people + first_person
