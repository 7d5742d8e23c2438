"""A protocol that cannot flatter: k-fold cross-validation over the *people* of a labeled set.

The people (not the photos) are split into k folds by a hash of the identity name, so a person's photos are
all in one fold, the split does not depend on the order or size of the set, and the same person always lands
in the same fold. For every fold, each method chooses its settings from its small grid on the other k-1 folds
(clustered together as one dataset; the criterion is the mean of pairwise and BCubed F1), then clusters the
held-out fold with them, in one batch and fed in increments. The figures are the held-out folds' mean and
spread: the accuracy on people whose photos played no part in choosing the settings.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np

from immray.bench.dev_faces import LabeledFaces
from immray.bench.quality_methods import Clustering, Method, Settings
from immray.clustering.metrics import ClusteringScores, score


def fold_of(identity: str, k: int) -> int:
    """The fold (0..k-1) an identity falls in, by a hash of its name: fixed for a name and a k."""
    return int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big") % k


def folds_of(identities: np.ndarray, k: int) -> np.ndarray:
    return np.array([fold_of(str(i), k) for i in identities], np.int64)


def subset(faces: LabeledFaces, keep: np.ndarray) -> LabeledFaces:
    return LabeledFaces(
        faces.paths[keep],
        faces.identities[keep],
        faces.embeddings[keep],
        faces.quality[keep],
        faces.source,
        faces.missing,
    )


@dataclass(frozen=True)
class Errors:
    mixed: int  # clusters (2+ faces) holding more than one person
    split: int  # people whose faces are spread over 2+ clusters
    clusters: int


def errors(truth: np.ndarray, labels: list) -> Errors:
    by_cluster: dict[str, set[str]] = {}
    by_person: dict[str, set[str]] = {}
    for person, lab in zip(truth.tolist(), labels, strict=True):
        if lab is None:
            continue
        by_cluster.setdefault(str(lab), set()).add(person)
        by_person.setdefault(person, set()).add(str(lab))
    sizes: dict[str, int] = {}
    for lab in labels:
        if lab is not None:
            sizes[str(lab)] = sizes.get(str(lab), 0) + 1
    real = {c for c, n in sizes.items() if n >= 2}
    mixed = sum(1 for c in real if len(by_cluster[c]) > 1)
    split = sum(1 for cs in by_person.values() if len(cs & real) > 1)
    return Errors(mixed, split, len(real))


def wrongly_placed(truth: np.ndarray, labels: list) -> np.ndarray:
    """Per face: in a cluster whose most common person is someone else (faces alone are never wrong here)."""
    out = np.zeros(len(labels), bool)
    members: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        if lab is not None:
            members.setdefault(str(lab), []).append(i)
    for rows in members.values():
        people, counts = np.unique(truth[rows], return_counts=True)
        majority = people[np.argmax(counts)]  # ties: the first name, a fixed choice
        out[rows] = truth[rows] != majority
    return out


def objective(s: ClusteringScores) -> float:
    return (s.pairwise_f1 + s.bcubed_f1) / 2


def choose(method: Method, train: LabeledFaces, min_faces: int) -> tuple[Settings, float]:
    """The grid point with the best objective on the training faces (ties: the first in the grid)."""
    truth = train.identities.tolist()
    best, best_value = method.grid[0], -1.0
    for settings in method.grid:
        value = objective(score(truth, method.batch(train, settings, min_faces).labels))
        if value > best_value:
            best, best_value = settings, value
    return best, best_value


@dataclass
class FoldResult:
    fold: int
    settings: Settings
    batch: ClusteringScores
    batch_errors: Errors
    increments: list[ClusteringScores] = field(default_factory=list)
    merges: list[int] = field(default_factory=list)
    confidence: np.ndarray | None = None  # held-out batch faces' confidence
    wrong: np.ndarray | None = None  # held-out batch faces wrongly placed
    clustered: np.ndarray | None = None


def run_fold(
    method: Method,
    faces: LabeledFaces,
    folds: np.ndarray,
    fold: int,
    min_faces: int,
    increments: int,
    orders: int,
) -> FoldResult:
    train, test = subset(faces, folds != fold), subset(faces, folds == fold)
    settings, _ = choose(method, train, min_faces)
    truth = test.identities
    out: Clustering = method.batch(test, settings, min_faces)
    result = FoldResult(fold, settings, score(truth.tolist(), out.labels), errors(truth, out.labels))
    if out.confidence is not None:
        result.confidence = out.confidence
        result.wrong = wrongly_placed(truth, out.labels)
        result.clustered = np.array([lab is not None for lab in out.labels])
    if method.incremental is not None:
        for k in range(orders):
            inc = method.incremental(test, settings, min_faces, increments, 1000 * fold + k)
            result.increments.append(score(truth.tolist(), inc.labels))
            result.merges.append(inc.merges)
    return result


def cross_validate(
    method: Method, faces: LabeledFaces, k: int, min_faces: int, increments: int, orders: int
) -> tuple[list[FoldResult], float]:
    folds = folds_of(faces.identities, k)
    start = time.perf_counter()
    results = [run_fold(method, faces, folds, f, min_faces, increments, orders) for f in range(k)]
    return results, time.perf_counter() - start


def spread(values: list[float]) -> str:
    """``mean [min-max]`` of the folds' figures."""
    v = np.array(values)
    return f"{v.mean():.4f} [{v.min():.4f}-{v.max():.4f}]"


HEADER = (
    f"{'method (held-out folds: mean [min-max])':40s} {'pairwise F1':>22s} {'BCubed F1':>22s} "
    f"{'alone1':>22s} {'mixed':>5s} {'split':>5s} {'clusters':>8s} {'secs':>6s}"
)


def table_rows(name: str, results: list[FoldResult], secs: float) -> list[str]:
    rows = [
        f"{name + ' batch':40s} {spread([r.batch.pairwise_f1 for r in results]):>22s} "
        f"{spread([r.batch.bcubed_f1 for r in results]):>22s} "
        f"{spread([r.batch.singleton_people_alone for r in results]):>22s} "
        f"{sum(r.batch_errors.mixed for r in results):5d} {sum(r.batch_errors.split for r in results):5d} "
        f"{sum(r.batch_errors.clusters for r in results):8d} {secs:6.1f}"
    ]
    if results and results[0].increments:
        per_fold = [
            (
                float(np.mean([s.pairwise_f1 for s in r.increments])),
                float(np.mean([s.bcubed_f1 for s in r.increments])),
                float(np.mean([s.singleton_people_alone for s in r.increments])),
            )
            for r in results
        ]
        n = len(results[0].increments)
        rows.append(
            f"{name + f' increments (x{n} orders)':40s} {spread([p for p, _, _ in per_fold]):>22s} "
            f"{spread([b for _, b, _ in per_fold]):>22s} {spread([a for _, _, a in per_fold]):>22s}"
            f"{'':21s}merges/run {np.mean([m for r in results for m in r.merges]):.1f}"
        )
    return rows


def gaps(results: list[FoldResult]) -> str:
    """Increments against batch, and each fold against the mean."""
    pw = np.array([r.batch.pairwise_f1 for r in results])
    bc = np.array([r.batch.bcubed_f1 for r in results])
    inc_pw = np.array([np.mean([s.pairwise_f1 for s in r.increments]) for r in results])
    inc_bc = np.array([np.mean([s.bcubed_f1 for s in r.increments]) for r in results])
    return (
        f"    increments - batch: pairwise {inc_pw.mean() - pw.mean():+.4f}, BCubed {inc_bc.mean() - bc.mean():+.4f}; "
        f"largest fold - mean: pairwise {np.abs(pw - pw.mean()).max():.4f}, BCubed {np.abs(bc - bc.mean()).max():.4f}"
    )


def confidence_rates(results: list[FoldResult], low: float = 0.5, high: float = 0.8) -> str:
    """How often clustered faces are wrongly placed below ``low`` and at or above ``high`` confidence."""
    conf = np.concatenate([r.confidence for r in results if r.confidence is not None])
    wrong = np.concatenate([r.wrong for r in results if r.wrong is not None])
    inside = np.concatenate([r.clustered for r in results if r.clustered is not None])
    lo, hi = inside & (conf < low), inside & (conf >= high)
    mid = inside & ~lo & ~hi

    def rate(mask: np.ndarray) -> str:
        return f"{wrong[mask].mean() if mask.any() else 0.0:.4f} of {int(mask.sum())}"

    return (
        f"    confidence (held-out batch, clustered faces): wrongly placed with confidence < {low}: {rate(lo)}; "
        f"{low}-{high}: {rate(mid)}; >= {high}: {rate(hi)}"
    )


def chosen(results: list[FoldResult]) -> str:
    return "    settings chosen per fold: " + "; ".join(
        f"{r.fold}: " + ", ".join(f"{k}={v}" for k, v in r.settings.items()) for r in results
    )


def report(methods: list[Method], faces: LabeledFaces, k: int, min_faces: int, increments: int, orders: int):
    """Print the protocol's table for ``methods``; returns the engine-style results by method name."""
    folds = folds_of(faces.identities, k)
    sizes = [int(len(np.unique(faces.identities[folds == f]))) for f in range(k)]
    print(f"{k} folds of people (by sha256 of the name): {sizes} people; MinFaces {min_faces}")
    print(HEADER)
    everything = {}
    for method in methods:
        results, secs = cross_validate(method, faces, k, min_faces, increments, orders)
        everything[method.name] = results
        for line in table_rows(method.name, results, secs):
            print(line, flush=True)
        if results[0].increments:
            print(gaps(results))
        if results[0].confidence is not None:
            print(confidence_rates(results))
        print(chosen(results), flush=True)
        if method.incremental is not None:
            print(scale_check(method, faces, results, min_faces, increments, orders), flush=True)
    return everything


def scale_check(
    method: Method,
    faces: LabeledFaces,
    results: list[FoldResult],
    min_faces: int,
    increments: int,
    orders: int,
) -> str:
    """Increments against batch on the whole set, with the settings the folds chose most often.

    Not a held-out figure (every person is in it), but the only one at the set's full size: a held-out fold
    has 1/k of the people, and an update's mistakes (a face joining a lookalike's cluster before its own
    companions arrive) grow with the crowd."""
    picks = [tuple(sorted(r.settings.items())) for r in results]
    settings = dict(max(set(picks), key=lambda p: (picks.count(p), p)))
    truth = faces.identities.tolist()
    whole = score(truth, method.batch(faces, settings, min_faces).labels)
    assert method.incremental is not None
    runs = [
        score(truth, method.incremental(faces, settings, min_faces, increments, k).labels)
        for k in range(orders)
    ]
    pw = float(np.mean([s.pairwise_f1 for s in runs]))
    bc = float(np.mean([s.bcubed_f1 for s in runs]))
    return (
        f"    whole set (not held out; {len(faces)} faces, {settings}): batch pairwise {whole.pairwise_f1:.4f} "
        f"BCubed {whole.bcubed_f1:.4f}; {increments} increments x{orders} orders pairwise {pw:.4f} "
        f"({pw - whole.pairwise_f1:+.4f}) BCubed {bc:.4f} ({bc - whole.bcubed_f1:+.4f})"
    )
