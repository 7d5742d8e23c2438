"""The rules of spec §7, each on a few synthetic people."""

from __future__ import annotations

import numpy as np
import pytest
from clustering_helpers import People, add, groups

from immray.clustering import Change, ClusteringConfig, Engine, Merge, Move, NewFace


def test_min_faces_gates_new_clusters(engine: Engine, people: People):
    state = engine.new_state("ds")
    two = people.faces("ann", 2)
    result = add(engine, state, two)
    assert state.n_clusters == 0
    assert [f.cluster_id for f in result.faces] == [None, None]
    assert state.independent_faces() == sorted(f.face_id for f in two)

    third = people.faces("ann", 1)
    result = add(engine, state, third)  # the two independent faces are reconsidered with the third
    assert groups(state) == [sorted(f.face_id for f in two + third)]
    assert len(result.created) == 1
    assert {f.face_id for f in result.faces} == {f.face_id for f in two + third}


def test_min_faces_can_be_set_per_call(engine: Engine, people: People):
    state = engine.new_state("ds")
    add(engine, state, people.faces("ann", 2), min_faces=2)
    assert len(groups(state)) == 1
    state = engine.new_state("ds")
    add(engine, state, people.faces("bob", 4), min_faces=5)
    assert state.n_clusters == 0


def test_weak_faces_cannot_found_a_cluster_but_can_join_one(engine: Engine, people: People):
    state = engine.new_state("ds")
    weak = people.faces("ann", 2, quality=0.2)
    add(engine, state, weak + people.faces("ann", 2, quality=0.9))
    assert state.n_clusters == 0  # only two good faces

    add(engine, state, people.faces("bob", 3, quality=0.9))
    (bob,) = state.clusters()
    late_weak = people.faces("bob", 2, quality=0.1)
    result = add(engine, state, late_weak)
    assert {f.cluster_id for f in result.faces} == {bob}
    assert result.grown == (bob,)


def test_different_people_stay_apart(engine: Engine, people: People):
    state = engine.new_state("ds")
    faces = people.faces("ann", 4) + people.faces("bob", 4) + people.faces("cy", 4)
    add(engine, state, faces)
    assert groups(state) == [sorted(f.face_id for f in faces[i : i + 4]) for i in (0, 4, 8)]


def test_cluster_ids_are_stable_over_many_updates(engine: Engine):
    people = People(seed=3)
    state = engine.new_state("ds")
    rng = np.random.default_rng(5)
    faces = [f for p in range(12) for f in people.faces(f"p{p}", int(rng.integers(3, 9)))]
    order = rng.permutation(len(faces))
    seen: dict[str, str] = {}
    for part in np.array_split(order, 10):
        result = add(engine, state, [faces[i] for i in part])
        absorbed = {a: m.survivor for m in result.merged for a in m.absorbed}
        for face_id, cluster_id in list(seen.items()):
            now = state.cluster_of(face_id)
            assert now == absorbed.get(cluster_id, cluster_id), "a clustered face changed cluster"
        for face_id in state.row_of:
            cid = state.cluster_of(face_id)
            if cid is not None:
                seen[face_id] = cid
    assert len(groups(state)) == 12


def _two_clusters_of_one_person(engine: Engine, people: People, sizes=(5, 3), names=(None, None)):
    """Two clusters of the same person: built apart with a very strict engine, then named."""
    strict = Engine(ClusteringConfig(join_threshold=0.995, merge_threshold=0.995))
    state = strict.new_state("ds")
    ids = []
    for size, name in zip(sizes, names, strict=True):
        result = add(strict, state, people.faces("ann", size, quality=0.9), min_faces=1)
        # with the strict bar each face is its own cluster: merge them by hand into one per part
        target, *rest = result.created
        if rest:
            strict.update(state, Change(merged=[Merge(target, tuple(rest))]))
        if name:
            strict.update(state, Change(renamed={target: name}))
        ids.append(target)
    assert state.n_clusters == 2
    return state, ids


def test_automatic_merge_keeps_the_larger_cluster(engine: Engine, people: People):
    state, (big, small) = _two_clusters_of_one_person(engine, people, sizes=(3, 5))
    big, small = small, big  # the second one has 5 faces
    result = add(engine, state, people.faces("ann", 1))
    assert [(m.survivor, m.absorbed, m.automatic) for m in result.merged] == [(big, (small,), True)]
    assert list(state.clusters()) == [big]
    assert small not in result.deleted
    moved = {f.face_id for f in result.faces if f.previous_cluster_id == small}
    assert len(moved) == 3 and all(state.cluster_of(f) == big for f in moved)


def test_automatic_merge_keeps_the_named_cluster(engine: Engine, people: People):
    state, (big, small) = _two_clusters_of_one_person(engine, people, sizes=(5, 3), names=(None, "Ann"))
    result = add(engine, state, people.faces("ann", 1))
    assert [(m.survivor, m.absorbed) for m in result.merged] == [(small, (big,))]
    assert state.name_of(small) == "Ann"


def test_clusters_named_differently_never_merge(engine: Engine, people: People):
    state, (a, b) = _two_clusters_of_one_person(engine, people, names=("Ann", "Anna"))
    for _ in range(3):
        result = add(engine, state, people.faces("ann", 2))
        assert result.merged == ()
    assert sorted(state.clusters()) == sorted([a, b])


def test_clusters_named_alike_may_merge(engine: Engine, people: People):
    state, (a, b) = _two_clusters_of_one_person(engine, people, names=("Ann", "Ann"))
    result = add(engine, state, people.faces("ann", 1))
    assert len(result.merged) == 1 and list(state.clusters()) == [a]


def test_merges_need_strong_evidence(people: People):
    lenient = Engine(ClusteringConfig(merge_threshold=1.0))
    state, _ = _two_clusters_of_one_person(lenient, people)
    result = add(lenient, state, people.faces("ann", 3))
    assert result.merged == () and state.n_clusters == 2


def test_a_face_the_user_moved_stays(engine: Engine, people: People):
    state = engine.new_state("ds")
    add(engine, state, people.faces("ann", 4) + people.faces("bob", 4))
    ann, bob = (state.cluster_of(f) for f in ("ann-0001", "bob-0005"))
    result = engine.update(state, Change(moved=[Move("ann-0001", bob)]))
    (face,) = result.faces
    assert (face.cluster_id, face.previous_cluster_id, face.confidence) == (bob, ann, 1.0)
    assert result.grown == (bob,) and result.shrunk == (ann,)
    for _ in range(3):  # more of ann arrives: the moved face stays with bob, ann does not absorb bob
        add(engine, state, people.faces("ann", 2))
        assert state.cluster_of("ann-0001") == bob
        assert state.n_clusters == 2


def test_a_face_taken_out_is_not_joined_again(engine: Engine, people: People):
    state = engine.new_state("ds")
    add(engine, state, people.faces("ann", 4))
    (ann,) = state.clusters()
    result = engine.update(state, Change(moved=[Move("ann-0002", None)]))
    assert [(f.face_id, f.cluster_id, f.previous_cluster_id) for f in result.faces] == [
        ("ann-0002", None, ann)
    ]
    add(engine, state, people.faces("ann", 4))
    assert state.cluster_of("ann-0002") is None
    assert state.cluster_of("ann-0005") == ann


def test_moved_apart_faces_keep_their_clusters_apart(engine: Engine, people: People):
    state = engine.new_state("ds")
    add(engine, state, people.faces("ann", 6))
    (ann,) = state.clusters()
    engine.update(state, Change(moved=[Move("ann-0001", "Cluster-user"), Move("ann-0002", "Cluster-user")]))
    assert groups(state) == [["ann-0001", "ann-0002"], ["ann-0003", "ann-0004", "ann-0005", "ann-0006"]]
    for _ in range(3):
        result = add(engine, state, people.faces("ann", 2))
        assert result.merged == ()
    assert state.cluster_of("ann-0001") == "Cluster-user" and state.cluster_of("ann-0003") == ann


def test_user_merge_moves_every_face_and_deletes_the_source(engine: Engine, people: People):
    state = engine.new_state("ds")
    add(engine, state, people.faces("ann", 3) + people.faces("bob", 3))
    ann, bob = state.cluster_of("ann-0001"), state.cluster_of("bob-0004")
    result = engine.update(state, Change(merged=[Merge(ann, (bob,))]))
    assert [(m.survivor, m.absorbed, m.automatic) for m in result.merged] == [(ann, (bob,), False)]
    assert [c.face_count for c in result.clusters] == [6]
    assert sorted(f.face_id for f in result.faces) == ["bob-0004", "bob-0005", "bob-0006"]
    assert list(state.clusters()) == [ann]


def test_faces_of_one_image_never_share_a_cluster(engine: Engine, people: People):
    state = engine.new_state("ds")
    twins = people.faces("ann", 2, image="group-photo")
    add(engine, state, twins + people.faces("ann", 4))
    (ann,) = state.clusters()
    in_ann = [f.face_id for f in twins if state.cluster_of(f.face_id) == ann]
    assert len(in_ann) == 1
    # and not later either, when the other face is reconsidered
    add(engine, state, people.faces("ann", 3))
    assert sum(state.cluster_of(f.face_id) == ann for f in twins) == 1


def test_a_cluster_whose_last_face_is_removed_is_deleted(engine: Engine, people: People):
    state = engine.new_state("ds")
    add(engine, state, people.faces("ann", 3) + people.faces("bob", 3))
    ann = state.cluster_of("ann-0001")
    result = engine.update(state, Change(removed=["ann-0001", "ann-0002"]))
    assert result.shrunk == (ann,) and result.deleted == ()
    assert [(c.cluster_id, c.face_count) for c in result.clusters] == [(ann, 1)]
    result = engine.update(state, Change(removed=["ann-0003", "never-seen"]))
    assert result.deleted == (ann,) and result.removed_faces == 1
    assert ann not in state.clusters() and "ann-0003" not in state


def test_cluster_outcomes_count_faces_and_images(engine: Engine, people: People):
    state = engine.new_state("ds")
    faces = people.faces("ann", 6)
    result = engine.update(state, Change(added=faces, moved=()))
    (cluster,) = result.clusters
    assert (cluster.face_count, cluster.image_count) == (6, 6)
    assert cluster.cover_face_id in {f.face_id for f in faces}
    # the user puts a second face of one photo into the cluster: 7 faces, still 6 images
    twin = NewFace("twin", people.vector("bob"), faces[0].image_id, 0.9)
    add(engine, state, [twin])
    result = engine.update(state, Change(moved=[Move("twin", cluster.cluster_id)]))
    assert [(c.face_count, c.image_count) for c in result.clusters] == [(7, 6)]


def test_confidence_is_high_for_typical_faces_and_zero_when_independent(engine: Engine, people: People):
    state = engine.new_state("ds")
    result = add(engine, state, people.faces("ann", 5) + people.faces("bob", 1))
    conf = {f.face_id: f.confidence for f in result.faces}
    assert conf["bob-0006"] == 0.0
    assert all(0.5 < conf[f"ann-000{i}"] <= 1.0 for i in range(1, 6))


def _two_ann_clusters_then_more(shared_photo: bool):
    """Two clusters of one person (built apart with a strict bar), whose first faces may share a photo; then
    more of her faces, which bring strong evidence that the two are one person."""
    people = People(seed=5)
    a, b = people.faces("ann", 3), people.faces("ann", 3)
    if shared_photo:
        b[0] = NewFace(b[0].face_id, b[0].embedding, a[0].image_id, b[0].quality)
    strict = Engine(ClusteringConfig(join_threshold=0.999))
    state = strict.new_state("ds")
    for part in (a, b):
        first, *rest = add(strict, state, part, min_faces=1).created
        strict.update(state, Change(merged=[Merge(first, tuple(rest))]))
    assert state.n_clusters == 2
    result = add(Engine(), state, people.faces("ann", 4))
    return state, result, a[0].face_id, b[0].face_id


def test_clusters_holding_faces_of_one_photo_never_merge():
    state, result, _, _ = _two_ann_clusters_then_more(shared_photo=False)
    assert len(result.merged) == 1 and state.n_clusters == 1  # the evidence is enough to merge ...
    state, result, one, other = _two_ann_clusters_then_more(shared_photo=True)
    assert result.merged == () and state.n_clusters == 2  # ... unless a photo would hold one person twice
    assert state.cluster_of(one) != state.cluster_of(other)


def test_merge_bar_and_confidence_follow_the_join_bar(people: People):
    assert ClusteringConfig(join_threshold=0.9).merge_bar == pytest.approx(0.91)
    assert ClusteringConfig(join_threshold=0.9, merge_threshold=0.97).merge_bar == 0.97
    assert ClusteringConfig(join_threshold=0.9).confidence([0.85, 0.9, 0.95, 1.0]).tolist() == pytest.approx(
        [0.0, 0.0, 0.5, 1.0]
    )
    # The same cluster seen by an engine with a higher bar: each face is nearer that bar, less sure.
    faces = people.faces("ann", 6)
    confidence = {}
    for bar in (0.8, 0.9):
        engine = Engine(ClusteringConfig(join_threshold=bar))
        result = add(engine, engine.new_state("ds"), faces)
        assert len(result.created) == 1
        confidence[bar] = np.array([f.confidence for f in result.faces])
    assert (confidence[0.9] < confidence[0.8]).all() and (confidence[0.9] > 0).all()
