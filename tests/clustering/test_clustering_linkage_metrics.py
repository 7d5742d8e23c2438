"""The linkage against a textbook implementation, and the metrics against hand counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

from immray.clustering.linkage import LinkageConstraints, average_linkage
from immray.clustering.metrics import score


def _partition(labels) -> list[list[int]]:
    out: dict[int, list[int]] = {}
    for i, lab in enumerate(np.asarray(labels).tolist()):
        out.setdefault(lab, []).append(i)
    return sorted(out.values())


@pytest.mark.parametrize("seed", range(6))
def test_average_linkage_on_the_full_graph_equals_scipy(seed):
    """On the complete graph, reciprocal merging gives exactly classic average linkage (cosine)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 16))
    x = np.repeat(centres, 5, axis=0) + rng.normal(scale=0.6, size=(30, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    threshold = 0.7
    edges = np.array([(i, j) for i in range(30) for j in range(i + 1, 30)])
    ours = average_linkage(x, np.ones(30), edges, threshold)
    tree = linkage(x, method="average", metric="cosine")
    theirs = fcluster(tree, t=1 - threshold, criterion="distance")
    assert _partition(ours) == _partition(theirs)
    assert len(_partition(ours)) not in (1, 30)  # the case is not trivial


def test_groups_are_named_after_their_smallest_unit():
    x = np.array([[1.0, 0], [0.99, 0.14], [0, 1.0], [0.1, 0.995]])
    roots = average_linkage(x, np.ones(4), np.array([[0, 1], [1, 2], [2, 3]]), 0.9)
    assert roots.tolist() == [0, 0, 2, 2]


def test_constraints_block_merges():
    x = np.array([[1.0, 0], [0.99, 0.14], [0.98, -0.2]])
    edges = np.array([[0, 1], [1, 2], [0, 2]])
    assert len(set(average_linkage(x, np.ones(3), edges, 0.9).tolist())) == 1
    cut = average_linkage(x, np.ones(3), edges, 0.9, LinkageConstraints(cannot_link=np.array([[0, 1]])))
    assert cut[0] != cut[1]
    named = average_linkage(x, np.ones(3), edges, 0.9, LinkageConstraints(name=np.array([0, 1, -1])))
    assert named[0] != named[1]
    strict = LinkageConstraints(established=np.array([True, True, True]), strong_threshold=0.999)
    assert average_linkage(x, np.ones(3), edges, 0.9, strict).tolist() == [0, 1, 2]


def test_units_with_sizes_count_as_their_members():
    # unit 0 stands for 3 faces at (1, 0); unit 1 is a face between it and unit 2
    sums = np.array([[3.0, 0.0], [0.8, 0.6], [0.6, 0.8]])
    roots = average_linkage(sums, np.array([3, 1, 1]), np.array([[0, 1], [1, 2]]), 0.85)
    assert roots.tolist() == [0, 1, 1]


def test_metrics_match_hand_counts():
    truth = ["a", "a", "a", "b", "b", "c"]
    pred = [1, 1, 2, 2, None, None]
    s = score(truth, pred)
    # predicted pairs: (0,1) right, (2,3) wrong -> precision 1/2; true pairs: 3 for a + 1 for b -> recall 1/4
    assert (s.pairwise_precision, s.pairwise_recall) == (0.5, 0.25)
    assert s.pairwise_f1 == pytest.approx(1 / 3)
    # BCubed precision per face: 1, 1, 1/2, 1/2, 1, 1 ; recall: 2/3, 2/3, 1/3, 1/2, 1/2, 1
    assert s.bcubed_precision == pytest.approx(5 / 6)
    assert s.bcubed_recall == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 / 2 + 1 / 2 + 1) / 6)
    assert (s.n_clusters, s.n_independent, s.singleton_people_alone) == (2, 2, 1.0)


def test_perfect_and_all_alone_clusterings():
    truth = ["a", "a", "b"]
    perfect = score(truth, ["x", "x", "y"])
    assert perfect.bcubed_f1 == perfect.pairwise_f1 == 1.0
    alone = score(truth, [None, None, None])
    assert alone.pairwise_recall == 0.0 and alone.bcubed_precision == 1.0 and alone.n_clusters == 0


def test_metrics_refuse_mismatched_input():
    with pytest.raises(ValueError, match="faces"):
        score(["a"], [1, 2])


def test_joining_an_established_cluster_needs_to_match_its_cohesion():
    rng = np.random.default_rng(0)
    centre = np.array([1.0, 0, 0, 0])
    tight = centre + 0.02 * rng.normal(size=(6, 4))  # a very cohesive cluster
    tight /= np.linalg.norm(tight, axis=1, keepdims=True)
    face = np.array([0.97, 0.243, 0, 0])  # about 0.97 similar to it: over the bar, under its cohesion
    sums = np.stack([tight.sum(axis=0), face / np.linalg.norm(face)])
    counts, edges = np.array([6, 1]), np.array([[0, 1]])
    established = np.array([True, False])
    loose = LinkageConstraints(established=established)
    strict = LinkageConstraints(established=established, cohesion_margin=0.01)
    assert average_linkage(sums, counts, edges, 0.95, loose).tolist() == [0, 0]
    assert average_linkage(sums, counts, edges, 0.95, strict).tolist() == [0, 1]
    # the same face and faces that are not yet a cluster: no cohesion check
    assert average_linkage(sums, counts, edges, 0.95, LinkageConstraints(cohesion_margin=0.01)).tolist() == [
        0,
        0,
    ]


def test_joining_an_established_cluster_takes_the_adopt_margin_more():
    cluster, face = np.array([1.0, 0.0]), np.array([np.cos(0.3), np.sin(0.3)])  # cosine 0.955
    sums, counts, edges = np.stack([cluster, face]), np.ones(2), np.array([[0, 1]])
    established = np.array([True, False])
    plain = LinkageConstraints(established=established)
    wary = LinkageConstraints(established=established, adopt_margin=0.01)
    assert average_linkage(sums, counts, edges, 0.95, plain).tolist() == [0, 0]
    assert average_linkage(sums, counts, edges, 0.95, wary).tolist() == [0, 1]  # 0.955 - 0.01 < 0.95
    # between new faces the margin does not apply
    between_new_faces = LinkageConstraints(adopt_margin=0.01)
    assert average_linkage(sums, counts, edges, 0.95, between_new_faces).tolist() == [0, 0]


def test_with_an_adopt_margin_a_new_face_pairs_with_its_new_companion_first():
    # a new face (1) is a little closer to an existing cluster (0) than to another new face (2); alone in a
    # batch it would join the cluster, but the margin lets the two new faces claim each other first, and the
    # pair is then too far from the cluster on average
    cluster = np.array([1.0, 0.0])
    face = np.array([np.cos(0.26), np.sin(0.26)])  # 0.966 from the cluster
    companion = np.array([np.cos(0.533), np.sin(0.533)])  # 0.963 from the face
    sums, counts = np.stack([cluster, face, companion]), np.ones(3)
    edges = np.array([[0, 1], [1, 2], [0, 2]])
    established = np.array([True, False, False])
    plain = average_linkage(sums, counts, edges, 0.95, LinkageConstraints(established=established))
    wary = average_linkage(
        sums, counts, edges, 0.95, LinkageConstraints(established=established, adopt_margin=0.005)
    )
    assert plain.tolist() == [0, 0, 2]
    assert wary.tolist() == [0, 1, 1]


def test_pair_penalty_holds_back_pairs_more_than_groups():
    a, b = np.array([1.0, 0.0]), np.array([np.cos(0.25), np.sin(0.25)])  # cosine 0.969
    one_pair = average_linkage(np.stack([a, b]), np.ones(2), np.array([[0, 1]]), 0.95, pair_penalty=0.02)
    assert one_pair.tolist() == [0, 1]  # 0.969 - 0.02 < 0.95
    group = average_linkage(
        np.stack([10 * a, b]), np.array([10, 1]), np.array([[0, 1]]), 0.95, pair_penalty=0.02
    )
    assert group.tolist() == [0, 0]  # 0.969 - 0.002 >= 0.95
