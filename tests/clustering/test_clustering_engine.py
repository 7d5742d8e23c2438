"""Determinism, persistence, the full re-cluster, and clear errors for bad input."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from clustering_helpers import DIM, People, add, groups

from immray.bench.faiss_index import faiss_index_factory
from immray.clustering import (
    Change,
    ClusteringConfig,
    ClusteringInputError,
    ClusterState,
    Engine,
    ExactIndex,
    Merge,
    Move,
    NewFace,
    exact_index,
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


def _reload(engine: Engine, state: ClusterState, how: str, raw: dict) -> ClusterState:
    """The state through its bytes, its index restored the way a caller would."""
    blob = state.to_bytes()
    if how == "fresh index, refilled":  # as the service does from the store's embeddings
        loaded = engine.load_state(blob)
        loaded.fill_index(lambda ids: np.stack([raw[f] for f in ids]), batch=7)
        return loaded
    return engine.load_state(blob, index=state.index)  # the index lives on (Milvus, or memory)


@pytest.mark.parametrize(
    "how, factory",
    [
        ("same index", exact_index),
        ("fresh index, refilled", exact_index),
        ("same index", faiss_index_factory(ivf_min_faces=60)),  # any NeighbourIndex: faiss IVF here
    ],
)
def test_state_round_trips_through_bytes(how, factory):
    """Saving and loading between updates changes nothing, whether the index lives on or is refilled."""
    faces = _crowd(seed=2, n_people=40)
    raw = {f.face_id: f.embedding for f in faces}  # what the engine was given, as the store keeps it
    engine = Engine(index_factory=factory)
    parts = np.array_split(np.arange(len(faces)), 5)
    kept = engine.new_state("ds")
    reloaded = engine.new_state("ds")
    gone = faces[int(parts[0][0])].face_id  # removed in the second update: its row dies, its vector goes
    for n, part in enumerate(parts):
        change = Change(added=[faces[i] for i in part], removed=[gone] if n == 1 else [])
        r1 = engine.update(kept, change)
        reloaded = _reload(engine, reloaded, how, raw)
        r2 = engine.update(reloaded, change)
        assert r1 == r2
    assert kept.to_bytes() == reloaded.to_bytes()
    loaded = _reload(engine, kept, how, raw)
    rows, ids = loaded.indexed_rows()
    assert loaded.index is not None and loaded.index.ntotal == len(rows) == len(faces) - 1
    assert np.array_equal(loaded.embeddings(rows), kept.embeddings(rows))
    assert ids == [loaded.face_ids[r] for r in rows.tolist()] and gone not in ids


def test_state_bytes_hold_no_vectors_and_load_with_an_index_of_their_dimension():
    faces = _crowd(seed=3)
    state = Engine().new_state("ds")
    add(Engine(), state, faces)
    with zipfile.ZipFile(io.BytesIO(state.to_bytes())) as zf:
        assert not any("index" in name for name in zf.namelist())
        assert json.loads(zf.read("header.json"))["dim"] == DIM
    with pytest.raises(ValueError, match="16-d vectors"):
        ClusterState.from_bytes(state.to_bytes(), index=ExactIndex(16))
    empty = Engine().new_state("ds")
    assert ClusterState.from_bytes(empty.to_bytes()).index is None


def test_a_version_1_state_loads_without_its_faiss_index():
    """Blobs saved before issue 15 carried a faiss index: it is ignored; the vectors are restored."""
    faces = _crowd(seed=5)
    engine = Engine()
    state = engine.new_state("ds")
    add(engine, state, faces[:30])
    old = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(state.to_bytes())) as new, zipfile.ZipFile(old, "w") as zf:
        for info in new.infolist():
            data = new.read(info)
            if info.filename == "header.json":
                header = json.loads(data)
                header.update(version=1, ivf_min_faces=20_000, nprobe=12)
                del header["dim"]
                data = json.dumps(header).encode()
            zf.writestr(info, data)
        zf.writestr("index.faiss", b"\x00" * 64)  # never read
    loaded = ClusterState.from_bytes(old.getvalue())
    raw = {f.face_id: f.embedding for f in faces}
    loaded.fill_index(lambda ids: np.stack([raw[f] for f in ids]))
    assert loaded.dim == DIM and loaded.to_bytes() == state.to_bytes()
    assert engine.update(loaded, Change(added=faces[30:])) == engine.update(state, Change(added=faces[30:]))


def test_a_state_refuses_a_refill_that_does_not_fit():
    faces = _crowd(seed=6)
    state = Engine().new_state("ds")
    add(Engine(), state, faces)
    loaded = ClusterState.from_bytes(state.to_bytes())
    with pytest.raises(ValueError, match="expected"):
        loaded.fill_index(lambda ids: np.zeros((len(ids), DIM + 1), np.float32))
    with pytest.raises(ValueError, match="zero or not finite"):
        loaded.fill_index(lambda ids: np.zeros((len(ids), DIM), np.float32))


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
