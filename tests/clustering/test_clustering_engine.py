"""Determinism, persistence, the full re-cluster, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
from clustering_helpers import DIM, People, add, groups

from immray.clustering import (
    Change,
    ClusteringConfig,
    ClusteringInputError,
    ClusterState,
    Engine,
    Merge,
    Move,
    NewFace,
)


def _crowd(seed: int = 1, n_people: int = 15):
    people = People(seed=seed)
    rng = np.random.default_rng(seed)
    return [f for p in range(n_people) for f in people.faces(f"p{p:02d}", int(rng.integers(1, 8)))]


def test_the_same_change_in_any_order_gives_the_same_result_and_bytes():
    faces = _crowd()
    outcomes = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        engine = Engine()
        state = engine.new_state("ds")
        first = engine.update(state, Change(added=[faces[i] for i in rng.permutation(40)]))
        second = engine.update(state, Change(added=[faces[40 + i] for i in rng.permutation(len(faces) - 40)]))
        outcomes.append((first, second, state.to_bytes()))
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_new_cluster_ids_are_deterministic_and_salted():
    faces = _crowd()
    a, b, c = Engine().new_state("one"), Engine().new_state("one"), Engine().new_state("two")
    ids = [Engine().update(s, Change(added=faces)).created for s in (a, b, c)]
    assert ids[0] == ids[1] and not set(ids[0]) & set(ids[2])
    assert all(cid.startswith("Cluster-") and len(cid) == len("Cluster-") + 36 for cid in ids[0])


def test_a_custom_id_factory_is_used():
    engine = Engine(id_factory=lambda salt, serial, founder: f"Cluster-{salt}-{serial}-{founder}")
    state = engine.new_state("ds")
    people = People()
    result = add(engine, state, people.faces("ann", 3))
    assert result.created == ("Cluster-ds-0-ann-0001",)


@pytest.mark.parametrize("ivf_min_faces", [20_000, 60])
def test_state_round_trips_through_bytes(ivf_min_faces):
    """Saving and loading between updates changes nothing, with the exact index and with IVF."""
    faces = _crowd(seed=2, n_people=40)
    engine = Engine(ClusteringConfig(ivf_min_faces=ivf_min_faces))
    parts = np.array_split(np.arange(len(faces)), 5)
    kept = engine.new_state("ds")
    reloaded = engine.new_state("ds")
    for part in parts:
        change = Change(added=[faces[i] for i in part])
        r1 = engine.update(kept, change)
        reloaded = ClusterState.from_bytes(reloaded.to_bytes())
        r2 = engine.update(reloaded, change)
        assert r1 == r2
    assert kept.to_bytes() == reloaded.to_bytes()
    assert kept.index is not None and kept.index.is_ivf == (ivf_min_faces < len(faces))
    loaded = ClusterState.from_bytes(kept.to_bytes())
    some = np.arange(10)
    assert np.array_equal(loaded.embeddings(some), kept.embeddings(some))


def test_garbage_bytes_are_refused_clearly():
    with pytest.raises(ValueError, match="not a immray clustering state"):
        ClusterState.from_bytes(b"definitely not a state")


def test_recluster_keeps_ids_by_overlap_and_user_constraints(engine: Engine):
    faces = _crowd(seed=4)
    state = engine.new_state("ds")
    for part in np.array_split(np.arange(len(faces)), 4):
        add(engine, state, [faces[i] for i in part])
    before = state.clusters()
    some = next(iter(before))
    member = before[some][0]
    engine.update(state, Change(moved=[Move(member, None)], renamed={some: "Ann"}))

    result = engine.recluster(state)
    after = state.clusters()
    assert set(after) == set(before) and result.created == result.deleted == ()
    assert state.cluster_of(member) is None and state.name_of(some) == "Ann"
    assert {f.face_id for f in result.faces} == set(state.row_of)


def test_recluster_after_a_model_change_takes_new_embeddings(engine: Engine):
    faces = _crowd(seed=5)
    state = engine.new_state("ds")
    add(engine, state, faces)
    before = groups(state)
    # a "new model": a random rotation keeps every similarity, so the people stay the same
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(DIM, DIM)))
    rotated = [NewFace(f.face_id, q @ f.embedding, f.image_id, f.quality) for f in faces[:-1]]
    ids = set(state.clusters())
    result = engine.recluster(state, rotated)
    assert result.removed_faces == 1 and faces[-1].face_id not in state
    assert set(state.clusters()) <= ids
    assert groups(state) == [
        [f for f in g if f != faces[-1].face_id] for g in before if g != [faces[-1].face_id]
    ]


BAD_CHANGES = [
    (
        Change(added=[NewFace("a", np.ones(DIM), "i", 0.9), NewFace("a", np.ones(DIM), "j", 0.9)]),
        "added twice",
    ),
    (Change(added=[NewFace("x", np.ones(DIM + 1), "i", 0.9)]), "dimensions"),
    (Change(added=[NewFace("x", np.zeros(DIM), "i", 0.9)]), "zero or not finite"),
    (Change(added=[NewFace("x", np.full(DIM, np.nan), "i", 0.9)]), "zero or not finite"),
    (Change(added=[NewFace("x", np.ones(DIM), "i", 1.5)]), "quality"),
    (Change(added=[NewFace(3.5, np.ones(DIM), "i", 0.9)]), "face id"),  # type: ignore[arg-type]
    (Change(added=[NewFace("ann-0001", np.ones(DIM), "i", 0.9)]), "already in the dataset"),
    (Change(moved=[Move("nobody", None)]), "cannot move face"),
    (Change(merged=[Merge("Cluster-nope", ("Cluster-nada",))]), "unknown cluster"),
    (Change(renamed={"Cluster-nope": "x"}), "unknown cluster"),
]


@pytest.mark.parametrize(("change", "message"), BAD_CHANGES)
def test_bad_changes_are_refused_and_leave_the_state_untouched(engine: Engine, change: Change, message: str):
    state = engine.new_state("ds")
    add(engine, state, People().faces("ann", 4))
    snapshot = state.to_bytes()
    with pytest.raises(ClusteringInputError, match=message):
        engine.update(state, change)
    assert state.to_bytes() == snapshot


def test_bad_config_and_min_faces_are_refused(engine: Engine):
    with pytest.raises(ValueError, match="merge_threshold"):
        ClusteringConfig(join_threshold=0.9, merge_threshold=0.8)
    with pytest.raises(ClusteringInputError, match="min_faces"):
        engine.update(engine.new_state(), Change(), min_faces=0)


def test_an_empty_change_does_nothing(engine: Engine):
    state = engine.new_state("ds")
    result = engine.update(state, Change())
    assert result.faces == () and result.created == () and state.n_faces == 0


def test_damaged_state_bytes_are_refused_clearly(engine: Engine):
    state = engine.new_state("ds")
    add(engine, state, People().faces("ann", 4))
    blob = bytearray(state.to_bytes())
    for cut in (len(blob) // 3, len(blob) - 40):
        with pytest.raises(ValueError):
            ClusterState.from_bytes(bytes(blob[:cut]))
    flipped = bytearray(blob)
    flipped[len(blob) // 2 : len(blob) // 2 + 64] = b"\x00" * 64
    with pytest.raises(ValueError):
        ClusterState.from_bytes(bytes(flipped))
