"""The engine's knobs, with defaults measured on LFW with dlib's embeddings (`python -m immray.bench.quality`).

Similarities are cosines between L2-normalised vectors (1 = identical; r² = 2 - 2s for the Euclidean distance
r of normalised vectors). dlib's raw descriptors have norms near 1.42, so its customary raw cut of 0.6 is
r ≈ 0.42, s ≈ 0.91 here. Linkage compares *smoothed* vectors (smoothing.py), in which faces of one person sit
closer together, so the join bar (0.95) is higher than a bar on raw similarities would be.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ClusteringConfig:
    # A new cluster needs this many good faces (IMM: 3). Per dataset; ``Engine.update`` can override it.
    min_faces: int = 3
    # A face is "good" (may found a cluster) when its quality is at least this; weaker faces may only join.
    min_good_quality: float = 0.5
    # Average-linkage bar on smoothed vectors: two groups join when the mean cosine similarity between their
    # members is at least this (lower = fewer, larger clusters) ...
    join_threshold: float = 0.95
    # ... plus pair_penalty / (|A| * |B|): a pair of single faces needs 0.97, a face joining a cluster of 10
    # barely more than the bar. One similarity is a noisy witness; an average over many pairs is not.
    pair_penalty: float = 0.02
    # New faces join an existing cluster only if their mean similarity to it is within this margin of the
    # cluster's own cohesion (the mean similarity between its members). None turns the check off.
    cohesion_margin: float | None = 0.025
    # New faces joining an existing cluster need this much more than new faces joining each other. In one
    # batch a face's own companions are all there to claim it first; in an update they may not have arrived
    # yet, and a face that joined the wrong cluster cannot leave it (ids are stable). Measured on LFW dev fed
    # in 10 increments (5 orders): 0.005 cuts the wrong pairs the increments make beyond the batch's own
    # from 663 to 292, and leaves the batch alone (it has no existing clusters).
    adopt_margin: float = 0.005
    # Two clusters that already exist merge automatically only above this stricter bar ("strong evidence").
    merge_threshold: float = 0.96
    # Neighbours looked up per face, and the raw similarity under which a neighbour is not even a candidate.
    neighbours: int = 10
    candidate_floor: float = 0.88
    # How far an update spreads through independent faces near the added ones: faces at least wake_floor
    # similar (raw) wake up and look around too, up to reconsider_hops deep.
    wake_floor: float = 0.92
    reconsider_hops: int = 3
    # Smoothing (smoothing.py): each face is pulled towards its smoothing_neighbours closest faces above
    # smoothing_floor, each weighted by similarity ** smoothing_sharpness. 0 neighbours turns it off.
    smoothing_neighbours: int = 3
    smoothing_sharpness: float = 30.0
    smoothing_floor: float = 0.93
    # Confidence is the face's mean (smoothed) similarity to the rest of its cluster, mapped linearly from
    # [confidence_floor, confidence_ceiling] onto [0, 1].
    confidence_floor: float = 0.90
    confidence_ceiling: float = 0.98

    def __post_init__(self) -> None:
        problems = []
        if self.min_faces < 1:
            problems.append("min_faces must be >= 1")
        if not 0.0 <= self.min_good_quality <= 1.0:
            problems.append("min_good_quality must be within [0, 1]")
        if not -1.0 <= self.join_threshold <= 1.0:
            problems.append("join_threshold must be within [-1, 1]")
        if not self.join_threshold <= self.merge_threshold <= 1.0:
            problems.append("merge_threshold must be within [join_threshold, 1]")
        if self.neighbours < 1:
            problems.append("neighbours must be >= 1")
        for name in ("candidate_floor", "wake_floor", "smoothing_floor"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be within [-1, 1]")
        if self.cohesion_margin is not None and self.cohesion_margin < 0:
            problems.append("cohesion_margin must be >= 0 (or None)")
        if not 0.0 <= self.adopt_margin <= 1.0:
            problems.append("adopt_margin must be within [0, 1]")
        if self.pair_penalty < 0:
            problems.append("pair_penalty must be >= 0")
        if self.smoothing_neighbours < 0 or self.smoothing_sharpness <= 0:
            problems.append("smoothing_neighbours must be >= 0 and smoothing_sharpness > 0")
        if self.reconsider_hops < 0:
            problems.append("reconsider_hops must be >= 0")
        if not self.confidence_floor < self.confidence_ceiling:
            problems.append("confidence_floor must be below confidence_ceiling")
        if problems:
            raise ValueError("invalid clustering config: " + "; ".join(problems))

    def with_min_faces(self, min_faces: int | None) -> ClusteringConfig:
        return self if min_faces is None else replace(self, min_faces=min_faces)
