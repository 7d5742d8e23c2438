"""The engine's knobs, each justified by the cross-validated protocol (``python -m immray.bench.quality DIR
--folds 5``: settings chosen on 4 folds of people, scored on the 5th, for every fold) or derived from another.

Similarities are cosines between L2-normalised vectors (1 = identical). Linkage compares *smoothed* vectors
(smoothing.py), in which faces of one person sit closer together, so the join bar is higher than a bar on raw
similarities would be. One similarity scale, ``join_threshold``, is the embedder's calibration (chosen on the
training folds: 0.95 on each of the 5 folds of LFW dev with the shipped dlib ResNet + mirror); the bars that used
to be set by hand beside it are derived from it (merging, confidence) or from the one neighbour floor.

Removed, for no cross-validated gain on dev (held-out folds, MinFaces 3, batch and 10 increments): a separate
candidate floor and wake floor (0.85-0.93 and 0.90-0.94 gave the same clusters as the neighbour floor, on the
held-out folds and on the whole of dev in 10 increments), and two hand-set ends of the confidence scale.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class ClusteringConfig:
    # A new cluster needs this many good faces (IMM: 3). Per dataset; ``Engine.update`` can override it.
    min_faces: int = 3
    # A face is "good" (may found a cluster) when its quality is at least this; weaker faces may only join.
    # CV: 0.3 and 0.5 within 0.001 BCubed F1, 0.7 loses 0.003; 0.5 is also the detection benches' bar.
    min_good_quality: float = 0.5
    # Average-linkage bar on smoothed vectors: two groups join when the mean cosine similarity between their
    # members is at least this (lower = fewer, larger clusters). Chosen by the protocol on the training folds
    # from 0.93-0.96: 0.95 on every fold.
    join_threshold: float = 0.95
    # ... plus pair_penalty / (|A| * |B|): a pair of single faces needs 0.97, a face joining a cluster of 10
    # barely more than the bar. One similarity is a noisy witness; an average over many pairs is not.
    # CV (join re-chosen per fold): without it pairwise F1 0.9759 and BCubed 0.9604 against 0.9894 / 0.9682,
    # with 0.04 0.9884 / 0.9671.
    pair_penalty: float = 0.02
    # New faces join an existing cluster only if their mean similarity to it is within this margin of the
    # cluster's own cohesion (the mean similarity between its members). None turns the check off. It acts in
    # updates only: CV, 10 increments: pairwise / BCubed F1 0.9852 / 0.9648 with it, 0.9822 / 0.9620 without.
    cohesion_margin: float | None = 0.025
    # New faces joining an existing cluster need this much more than new faces joining each other. In one
    # batch a face's own companions are all there to claim it first; in an update they may not have arrived
    # yet, and a face that joined the wrong cluster cannot leave it (ids are stable). It acts in updates only,
    # and only at scale: on a 5-fold's held-out fold (~630 faces) it changes nothing, on the whole of dev
    # (3,183 faces, 10 increments, 5 orders) pairwise F1 is 0.9685 without it, 0.9747 with 0.005 (batch
    # 0.9821). 0.01 scores about the same as 0.005 (0.9761 / BCubed 0.9546 against 0.9747 / 0.9547).
    adopt_margin: float = 0.005
    # Two clusters that already exist merge automatically only at or above this stricter bar ("strong
    # evidence": users may have seen both). None: join_threshold + 0.01. Such merges are rare: on the held-out
    # folds a gap of 0, 0.01 or 0.02 gives the same clusters; on the whole of dev in 10 increments (5 orders)
    # pairwise F1 is 0.9709 with no gap, 0.9749 with 0.005, 0.9745 with 0.01, 0.9725 with 0.02.
    merge_threshold: float | None = None
    # Neighbours looked up per face (CV: 5 loses 0.0013 BCubed F1 in increments, 20 gains nothing) ...
    neighbours: int = 10
    # ... and the raw similarity under which a neighbour is no evidence at all: it neither pulls a face
    # (smoothing), nor is a candidate to join, nor wakes an independent face up. CV: 0.90 loses 0.002 BCubed
    # F1 in increments, 0.95 loses 0.018 (the smoothing no longer reaches a person's other photos).
    neighbour_floor: float = 0.93
    # How far an update spreads through independent faces near the added ones: up to this many hops of
    # neighbours above the floor wake up and look around too. CV, 10 increments: 0 hops BCubed F1 0.824,
    # 1 hop 0.9644, 3 hops 0.9648 (a face's companions arrive in later updates and must find it).
    reconsider_hops: int = 3
    # Smoothing (smoothing.py): each face is pulled towards its smoothing_neighbours closest faces above the
    # neighbour floor, each weighted by similarity ** smoothing_sharpness. 0 neighbours turns it off.
    # CV: off, BCubed F1 0.9495 (against 0.9682); 5 neighbours 0.9599; sharpness 15 0.9628, 60 0.9552.
    smoothing_neighbours: int = 3
    smoothing_sharpness: float = 30.0

    @property
    def merge_bar(self) -> float:
        """The bar for merging two existing clusters (``merge_threshold``, or derived from the join bar)."""
        if self.merge_threshold is not None:
            return self.merge_threshold
        return min(1.0, self.join_threshold + 0.01)

    def confidence(self, mean_similarity):
        """FigureClusterConfidence from a face's mean (smoothed) similarity to the rest of its cluster: how far
        it is from the join bar (0: at the bar the engine joins at) towards a perfect match (1). Derived, not
        fitted; on dev's held-out folds faces under 0.5 are wrongly placed ~3% of the time, faces at 0.8 or
        more almost never (``quality --folds`` prints the rates)."""
        span = max(1.0 - self.join_threshold, 1e-6)
        return np.clip((np.asarray(mean_similarity) - self.join_threshold) / span, 0.0, 1.0)

    def __post_init__(self) -> None:
        problems = []
        if self.min_faces < 1:
            problems.append("min_faces must be >= 1")
        if not 0.0 <= self.min_good_quality <= 1.0:
            problems.append("min_good_quality must be within [0, 1]")
        if not -1.0 <= self.join_threshold <= 1.0:
            problems.append("join_threshold must be within [-1, 1]")
        if self.merge_threshold is not None and not self.join_threshold <= self.merge_threshold <= 1.0:
            problems.append("merge_threshold must be within [join_threshold, 1]")
        if self.neighbours < 1:
            problems.append("neighbours must be >= 1")
        if not -1.0 <= self.neighbour_floor <= 1.0:
            problems.append("neighbour_floor must be within [-1, 1]")
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
        if problems:
            raise ValueError("invalid clustering config: " + "; ".join(problems))

    def with_min_faces(self, min_faces: int | None) -> ClusteringConfig:
        return self if min_faces is None else replace(self, min_faces=min_faces)
