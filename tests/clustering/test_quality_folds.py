"""The cross-validated quality protocol (immray.bench.quality_folds): folds of people, chosen on training folds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from clustering_helpers import People

from immray.bench.dev_faces import LabeledFaces
from immray.bench.quality_folds import errors, fold_of, folds_of, run_fold, wrongly_placed
from immray.bench.quality_methods import engine_method, min_faces_rule
from immray.clustering import ClusteringConfig


def labeled(people: People, sizes: dict[str, int]) -> LabeledFaces:
    ids, vecs = [], []
    for person, n in sizes.items():
        for _ in range(n):
            ids.append(person)
            vecs.append(people.vector(person))
    n = len(ids)
    return LabeledFaces(
        np.array([f"{p}/{i}.jpg" for i, p in enumerate(ids)]),
        np.array(ids),
        np.stack(vecs),
        np.full(n, 0.9, np.float32),
        "synthetic",
    )


def test_folds_split_people_deterministically_whatever_the_order():
    names = np.array([f"person-{i}" for i in range(300) for _ in range(1 + i % 4)])
    folds = folds_of(names, 5)
    for name in np.unique(names):  # a person's photos are never spread over two folds
        assert len(set(folds[names == name].tolist())) == 1
    shuffled = np.random.default_rng(1).permutation(names)
    again = dict(zip(shuffled.tolist(), folds_of(shuffled, 5).tolist(), strict=True))
    assert again == dict(zip(names.tolist(), folds.tolist(), strict=True))
    people_per_fold = np.bincount([fold_of(f"person-{i}", 5) for i in range(300)], minlength=5)
    assert people_per_fold.min() >= 40  # roughly even: 60 expected each
    # A name keeps its fold when the set around it changes (the hash of the name alone decides).
    assert fold_of("person-7", 5) == folds_of(np.array(["someone else", "person-7"]), 5)[1]


def test_settings_are_chosen_on_the_training_folds_only():
    people = People(seed=3, spread=0.25)
    faces = labeled(people, {f"p{i}": 2 + i % 6 for i in range(40)})
    folds = folds_of(faces.identities, 4)
    engine = engine_method(
        ClusteringConfig(), [{"join_threshold": j, "merge_threshold": j} for j in (0.999, 0.8)]
    )
    seen: list[tuple[set[str], dict]] = []

    def watched(part: LabeledFaces, settings, min_faces: int):
        seen.append((set(part.identities.tolist()), settings))
        return engine.batch(part, settings, min_faces)

    method = replace(engine, batch=watched)
    result = run_fold(method, faces, folds, 0, 2, 3, 1)
    held_out = set(faces.identities[folds == 0].tolist())
    training = set(faces.identities[folds != 0].tolist())
    assert held_out and training
    *choosing, (scored, used) = seen
    assert [s for _, s in choosing] == engine.grid  # every grid point tried, on the training people only
    assert all(people_seen == training for people_seen, _ in choosing)
    assert scored == held_out and used == result.settings
    assert result.settings["join_threshold"] == 0.8  # 0.999 leaves every face alone
    assert result.batch.bcubed_f1 > 0.9
    assert len(result.increments) == 1


def test_mixed_split_and_wrongly_placed_faces_are_counted():
    truth = np.array(["a", "a", "a", "b", "b", "c", "d"])
    labels = ["x", "x", "y", "y", "y", None, "z"]
    # x: a a (pure); y: a b b (mixed); z: d alone in a cluster of one (not a cluster of 2+).
    found = errors(truth, labels)
    assert (found.mixed, found.split, found.clusters) == (1, 1, 2)  # "a" is split over x and y
    assert wrongly_placed(truth, labels).tolist() == [False, False, True, False, False, False, False]


def test_min_faces_rule_dissolves_small_baseline_clusters():
    labels = [0, 0, 0, 1, 1, -1, 2]
    assert min_faces_rule(labels, 3) == [0, 0, 0, None, None, None, None]
    assert min_faces_rule(labels, 2) == [0, 0, 0, 1, 1, None, None]
