"""How good a clustering is against true identities: pairwise and BCubed precision/recall/F1.

Every face that was left independent counts as a cluster of its own, so leaving a face alone is never
"free": it costs recall when the person has other photos, and is right when the person appears once.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ClusteringScores:
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    n_faces: int
    n_clusters: int  # clusters of two faces or more (independent faces are not counted here)
    n_independent: int  # faces alone: independent, or the only face of their cluster
    singleton_people_alone: float  # share of the people with one photo whose face was left alone

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _codes(labels: Sequence[Hashable | None], independent: bool) -> np.ndarray:
    """Dense integer codes; with ``independent``, every ``None`` (or -1) gets a code of its own."""
    out = np.empty(len(labels), dtype=np.int64)
    seen: dict[Hashable, int] = {}
    for i, lab in enumerate(labels):
        if independent and (lab is None or (isinstance(lab, int | np.integer) and lab < 0)):
            out[i] = len(seen)
            seen[("__alone__", i)] = out[i]
        else:
            if lab is None:
                raise ValueError("true labels may not be None")
            out[i] = seen.setdefault(lab, len(seen))
    return out


def score(truth: Sequence[Hashable], predicted: Sequence[Hashable | None]) -> ClusteringScores:
    """Compare a predicted clustering with the true identities, face by face.

    ``predicted[i]`` is the cluster of face ``i``, or ``None`` / a negative int when it was left independent.
    """
    if len(truth) != len(predicted):
        raise ValueError(f"truth has {len(truth)} faces but predicted has {len(predicted)}")
    n = len(truth)
    if n == 0:
        raise ValueError("no faces to score")
    t = _codes(truth, independent=False)
    p = _codes(predicted, independent=True)
    # Contingency table as (true, predicted) -> count, over the non-empty cells only.
    cells, n_ij = np.unique(t * (p.max() + 1) + p, return_counts=True)
    cell_t, cell_p = cells // (p.max() + 1), cells % (p.max() + 1)
    a = np.bincount(t).astype(np.float64)  # size of each true identity
    b = np.bincount(p).astype(np.float64)  # size of each predicted cluster
    nij = n_ij.astype(np.float64)

    tp = float((nij * (nij - 1) / 2).sum())
    pred_pairs = float((b * (b - 1) / 2).sum())
    true_pairs = float((a * (a - 1) / 2).sum())
    pw_p = 1.0 if pred_pairs == 0 else tp / pred_pairs
    pw_r = 1.0 if true_pairs == 0 else tp / true_pairs

    # BCubed: each face's precision is the share of its cluster that is its person, recall the share of
    # its person that is in its cluster; the cell sums below are those per-face averages.
    bc_p = float((nij * nij / b[cell_p]).sum() / n)
    bc_r = float((nij * nij / a[cell_t]).sum() / n)

    alone = b[p] == 1
    single_people = a[t] == 1
    share_alone = float(alone[single_people].mean()) if single_people.any() else 1.0
    return ClusteringScores(
        pairwise_precision=pw_p,
        pairwise_recall=pw_r,
        pairwise_f1=_f1(pw_p, pw_r),
        bcubed_precision=bc_p,
        bcubed_recall=bc_r,
        bcubed_f1=_f1(bc_p, bc_r),
        n_faces=n,
        n_clusters=int((b >= 2).sum()),
        n_independent=int(alone.sum()),
        singleton_people_alone=share_alone,
    )
