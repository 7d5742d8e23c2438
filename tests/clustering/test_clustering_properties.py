"""Property-based: whatever sequence of changes comes, no face is lost or duplicated, the bookkeeping stays
exact, and no constraint is broken."""

from __future__ import annotations

import numpy as np
from clustering_helpers import People
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from immray.clustering import Change, ClusteringConfig, ClusterState, Engine, Merge, Move, NewFace, Result
from immray.clustering.state import INDEPENDENT

N_PEOPLE = 4

add_op = st.tuples(
    st.just("add"),
    st.lists(
        st.tuples(st.integers(0, N_PEOPLE - 1), st.floats(0.0, 1.0), st.integers(0, 3)),
        min_size=1,
        max_size=8,
    ),
)
remove_op = st.tuples(st.just("remove"), st.lists(st.integers(0, 10_000), min_size=1, max_size=3))
move_op = st.tuples(st.just("move"), st.integers(0, 10_000), st.integers(-1, 10_000))
merge_op = st.tuples(st.just("merge"), st.integers(0, 10_000), st.integers(0, 10_000))
rename_op = st.tuples(st.just("rename"), st.integers(0, 10_000), st.sampled_from(["Ann", "Bob", None]))
operations = st.lists(
    st.one_of(add_op, add_op, remove_op, move_op, merge_op, rename_op), min_size=1, max_size=10
)


class Model:
    """What the test knows must hold, kept independently of the engine."""

    def __init__(self) -> None:
        self.faces: dict[str, NewFace] = {}
        self.placed: dict[str, str | None] = {}  # face the user moved -> where it must be
        self.apart: set[tuple[str, str]] = set()  # (face, cluster) the user took it out of
        self.exempt: set[str] = set()  # faces whose company the user chose (moved or merged by hand)
        self.names: dict[str, str | None] = {}
        self.serial = 0

    def follow_merges(self, result: Result) -> None:
        for merge in result.merged:
            for gone in merge.absorbed:
                self.placed = {f: merge.survivor if c == gone else c for f, c in self.placed.items()}
                self.apart = {(f, merge.survivor if c == gone else c) for f, c in self.apart}


def check(state: ClusterState, model: Model, result: Result, names_before: dict[str, str | None]) -> None:
    # every face once: in exactly one cluster or independent, and nothing else
    alive = {state.face_ids[r] for r in np.flatnonzero(state.alive.data).tolist()}
    assert alive == set(model.faces)
    in_clusters = [f for faces in state.clusters().values() for f in faces]
    assert len(in_clusters) == len(set(in_clusters))
    assert set(in_clusters) | set(state.independent_faces()) == alive
    assert len(in_clusters) + len(state.independent_faces()) == len(alive)
    # sums and counts match the members exactly enough
    for cid, faces in state.clusters().items():
        code = state.code_of[cid]
        rows = np.array([state.row_of[f] for f in faces])
        assert faces, f"empty cluster {cid} was kept"
        assert state.counts.data[code] == len(faces)
        assert np.allclose(state.sums.data[code], state.smoothed(rows).sum(axis=0), atol=1e-4)
    # each face's smoothing neighbours are what a from-scratch search would give (same similarities)
    rows = np.flatnonzero(state.alive.data)
    if len(rows):
        position = {int(r): i for i, r in enumerate(rows.tolist())}
        sims = state.embeddings(rows) @ state.embeddings(rows).T
        np.fill_diagonal(sims, -np.inf)
        for i, row in enumerate(rows.tolist()):
            listed = sorted(sims[i, position[r]] for r in state.nbr.data[row].tolist() if r >= 0)
            best = np.sort(sims[i])[::-1][: state.smooth_k]
            want = sorted(best[best >= state.smooth_floor])
            assert np.allclose(listed, want, atol=1e-5)
    # the result lists each face at most once, and tells the truth about it
    listed = [f.face_id for f in result.faces]
    assert len(listed) == len(set(listed))
    for f in result.faces:
        assert state.cluster_of(f.face_id) == f.cluster_id and 0.0 <= f.confidence <= 1.0
    # the user's constraints
    for face, where in model.placed.items():
        if face in model.faces:
            assert state.cluster_of(face) == where
    for face, cluster in model.apart:
        if face in model.faces:
            assert state.cluster_of(face) != cluster
    for merge in result.merged:
        if merge.automatic:
            named = {names_before.get(c) for c in (merge.survivor, *merge.absorbed)} - {None}
            assert len(named) <= 1, "clusters with different names were merged"
    by_image: dict[tuple[str, object], list[str]] = {}
    for cid, faces in state.clusters().items():
        for f in faces:
            if f not in model.exempt:
                by_image.setdefault((cid, model.faces[f].image_id), []).append(f)
    assert all(len(v) == 1 for v in by_image.values()), "two faces of one image share a cluster"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, min_faces=st.integers(1, 3), seed=st.integers(0, 3))
def test_updates_never_lose_faces_or_break_constraints(ops, min_faces, seed):
    engine = Engine(ClusteringConfig(min_faces=min_faces))
    state = engine.new_state("ds")
    people = People(seed=seed, spread=0.35)
    model = Model()
    for op in ops:
        clusters = sorted(state.clusters())
        faces = sorted(model.faces)
        kind = op[0]
        if kind == "add":
            new = []
            for person, quality, image in op[1]:
                model.serial += 1
                fid = f"f{model.serial:03d}"
                new.append(
                    NewFace(fid, people.vector(f"p{person}"), f"img{model.serial // 2}-{image}", quality)
                )
            change = Change(added=new)
        elif kind == "remove":
            change = Change(removed=[faces[i % len(faces)] for i in op[1]] if faces else ["nobody"])
        elif kind == "move" and faces:
            face = faces[op[1] % len(faces)]
            target = None if op[2] < 0 or not clusters else clusters[op[2] % len(clusters)]
            change = Change(moved=[Move(face, target)])
        elif kind == "merge" and len(clusters) >= 2:
            a, b = clusters[op[1] % len(clusters)], clusters[op[2] % len(clusters)]
            change = Change(merged=[Merge(a, (b,))]) if a != b else Change()
        elif kind == "rename" and clusters:
            change = Change(renamed={clusters[op[1] % len(clusters)]: op[2]})
        else:
            continue
        names_before = {c: state.name_of(c) for c in clusters}
        members_before = state.clusters()
        result = engine.update(state, change, min_faces=min_faces)

        for f in change.added:
            model.faces[f.face_id] = f
        for f in change.removed:
            model.faces.pop(f, None)
            model.placed.pop(f, None)
            model.apart = {(g, c) for g, c in model.apart if g != f}
        for m in change.merged:
            model.exempt.update(members_before[m.target])
            model.exempt.update(f for s in m.sources for f in members_before[s])
            model.placed = {f: m.target if c in m.sources else c for f, c in model.placed.items()}
            model.apart = {(f, m.target if c in m.sources else c) for f, c in model.apart}
            model.apart = {(f, c) for f, c in model.apart if state.cluster_of(f) != c}
        for mv in change.moved:
            old = None
            for cid, members in members_before.items():
                if mv.face_id in members:
                    old = cid
            model.placed[mv.face_id] = mv.cluster_id
            model.exempt.add(mv.face_id)
            if old is not None and old != mv.cluster_id:
                model.apart.add((mv.face_id, old))
            model.apart.discard((mv.face_id, mv.cluster_id))
        model.follow_merges(result)
        check(state, model, result, names_before)
    # the state survives a trip through bytes unchanged
    again = ClusterState.from_bytes(state.to_bytes(), index=state.index)
    assert again.clusters() == state.clusters()
    assert (again.cluster.data == state.cluster.data).all() and INDEPENDENT == -1
