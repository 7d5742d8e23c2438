"""Faces of one photo are never one person: the group photos clustered through the engine, alone and mixed
into a labeled set's faces.

    python -m immray.bench.quality_groups ../shared/eval/groups [--with ../shared/eval/dev] [--min-faces 2]

Every face of every group photo is embedded with ``immray.faces`` (each photo is one image, so its faces are
cannot-linked); with ``--with`` the labeled set's faces (cached, see ``dev_faces``) are clustered alongside,
so the group faces meet lookalikes. It prints each group face's cluster and any cluster that holds two faces
of one photo (there must be none), and how many of the people seen in 2+ group photos were found again.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from immray.bench.dev_faces import load_faces
from immray.clustering import Change, ClusteringConfig, Engine, NewFace


def group_faces(folder: Path) -> list[tuple[str, list[str], np.ndarray]]:
    """(photo, people listed for it, its faces' embeddings) per group photo."""
    from immray.faces import get_analyzer

    analyzer = get_analyzer()
    out = []
    with (folder / "manifest.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            image = analyzer.analyze((folder / row["relative_path"]).read_bytes())
            vectors = np.stack([np.asarray(f.embedding, np.float32) for f in image.faces])
            out.append((row["relative_path"], row["identity"].split(","), vectors))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="the group photos (manifest.csv: relative_path, identity)")
    ap.add_argument("--with", dest="labeled", type=Path, help="a labeled set clustered alongside")
    ap.add_argument("--min-faces", type=int, default=2)
    args = ap.parse_args()

    groups = group_faces(args.folder)
    added = [
        NewFace(f"group:{photo}:{i}", v, f"group:{photo}", 0.9)
        for photo, _, vectors in groups
        for i, v in enumerate(vectors)
    ]
    if args.labeled is not None:
        faces = load_faces(args.labeled, None)
        added += [
            NewFace(f"set:{i}", faces.embeddings[i], str(faces.paths[i]), float(faces.quality[i]))
            for i in range(len(faces))
        ]
    engine = Engine(ClusteringConfig())
    state = engine.new_state("groups")
    engine.update(state, Change(added=added), min_faces=args.min_faces)
    together = 0
    for photo, people, vectors in groups:
        clusters = [state.cluster_of(f"group:{photo}:{i}") for i in range(len(vectors))]
        placed = [c for c in clusters if c is not None]
        together += len(placed) - len(set(placed))
        shown = ", ".join("alone" if c is None else c.removeprefix("Cluster-")[:8] for c in clusters)
        print(f"{photo}: {len(vectors)} faces ({', '.join(people)}); clusters: {shown}")
    print(f"clusters holding two faces of one group photo: {together} (must be 0)")


if __name__ == "__main__":
    main()
