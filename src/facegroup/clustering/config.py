"""The engine's knobs, with defaults measured on LFW (dlib embeddings) and checked on held-back people.

Similarities are cosines between L2-normalised embeddings (1 = identical). For dlib's model, cosine
similarity s and Euclidean distance of the normalised vectors r are related by r² = 2 - 2s, so the default
join threshold 0.86 is r ≈ 0.53 (dlib's raw vectors have norms near 1, so its "0.6" is r ≈ 0.6, s ≈ 0.82).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ClusteringConfig:
    # A new cluster needs this many good faces (IMM: 3). Per dataset; ``Engine.update`` can override it.
    min_faces: int = 3
    # A face is "good" (may found a cluster) when its quality is at least this; weaker faces may only join.
    min_good_quality: float = 0.5
    # Average-linkage bar: two groups join when the mean cosine similarity between their members is at least
    # this. Lower = fewer, larger clusters.
    join_threshold: float = 0.86
    # Two clusters that already exist merge automatically only above this stricter bar ("strong evidence").
    merge_threshold: float = 0.90
    # Neighbours looked up per face (kNN graph degree).
    neighbours: int = 20
    # How far an update spreads through independent faces near the added ones (graph hops).
    reconsider_hops: int = 3
    # Confidence is the face's mean similarity to the rest of its cluster, mapped linearly from
    # [confidence_floor, confidence_ceiling] onto [0, 1].
    confidence_floor: float = 0.80
    confidence_ceiling: float = 0.96
    # Index: exact below this many faces, IVF above; lists probed per search.
    ivf_min_faces: int = 20_000
    nprobe: int = 12

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
        if self.reconsider_hops < 0:
            problems.append("reconsider_hops must be >= 0")
        if not self.confidence_floor < self.confidence_ceiling:
            problems.append("confidence_floor must be below confidence_ceiling")
        if self.ivf_min_faces < 1 or self.nprobe < 1:
            problems.append("ivf_min_faces and nprobe must be >= 1")
        if problems:
            raise ValueError("invalid clustering config: " + "; ".join(problems))

    def with_min_faces(self, min_faces: int | None) -> ClusteringConfig:
        return self if min_faces is None else replace(self, min_faces=min_faces)
