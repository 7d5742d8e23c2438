"""Whether the API adds anything to the engine's accuracy: the engine run by hand on the faces a server stored.

    python -m immray.bench.api_engine ../shared/eval/dev [--project immray] [--dataset photos]
        [--database-url URL] [--min-faces 3]

Run it after the README's tour (``immray index`` and ``immray cluster`` of an evaluation folder), against the
server's database (default: ``IMMRAY_DATABASE_URL`` / the data dir's SQLite). For the labeled face of each
photo (the one nearest the centre, as ``bench.api_quality`` takes it) it prints pairwise and BCubed F1 and
the one-photo people left alone of: the clusters the server gave; the engine (default settings) on every
face the server stored, in one batch; and the engine on the labeled faces alone. Prints figures only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sqlalchemy import select

from immray.bench.dev_faces import read_manifest
from immray.clustering import Change, ClusteringConfig, Engine, NewFace
from immray.clustering.metrics import score
from immray.services.database import Database
from immray.settings import Settings
from immray.store import Dataset, Figure, FigureCluster, File, Project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="an evaluation folder with manifest.csv and images/")
    parser.add_argument("--project", default="immray")
    parser.add_argument("--dataset", default="photos")
    parser.add_argument("--database-url", help="default: the server's (IMMRAY_DATABASE_URL or the data dir)")
    parser.add_argument("--min-faces", type=int, default=3)
    args = parser.parse_args()

    truth_of = {(args.folder / path).absolute().as_uri(): who for path, who in read_manifest(args.folder)}
    db = Database.connect(args.database_url or Settings().resolved_database_url)
    with db.read() as session:
        rows = session.execute(
            select(File.uri, File.image_width, File.image_height, Figure, FigureCluster.object_id)
            .join(Figure, Figure.file_id == File.id)
            .join(Dataset, Dataset.id == File.dataset_id)
            .join(Project, Project.id == Dataset.project_id)
            .outerjoin(FigureCluster, FigureCluster.id == Figure.cluster_id)
            .where(Project.name == args.project, Dataset.name == args.dataset, Figure.deleted_at.is_(None))
        ).all()
        faces: list[NewFace] = []
        by_photo: dict[str, list[tuple[int, float, str | None]]] = {}
        for uri, width, height, figure, cluster in rows:
            off = (figure.left + figure.width / 2 - (width or 0) / 2) ** 2 + (
                figure.top + figure.height / 2 - (height or 0) / 2
            ) ** 2
            by_photo.setdefault(uri, []).append((len(faces), off, cluster))
            faces.append(NewFace(figure.id, figure.vector, uri, float(figure.quality or 1.0)))
    db.close()
    labeled = {uri: min(found, key=lambda f: f[1]) for uri, found in by_photo.items() if uri in truth_of}
    truth = [truth_of[uri] for uri in labeled]
    central = [index for index, _, _ in labeled.values()]
    print(f"photos of the manifest with faces: {len(labeled)} of {len(truth_of)}; faces stored: {len(faces)}")

    def show(name: str, predicted: list) -> None:
        s = score(truth, predicted)
        print(
            f"{name:34s} pairwise F1 {s.pairwise_f1:.4f}  BCubed F1 {s.bcubed_f1:.4f}  "
            f"one-photo people alone {s.singleton_people_alone:.3f}"
        )

    def engine_on(chosen: list[int]) -> list:
        engine = Engine(ClusteringConfig())
        state = engine.new_state("api-engine")
        engine.update(state, Change(added=[faces[i] for i in chosen]), min_faces=args.min_faces)
        return [state.cluster_of(faces[i].face_id) for i in central]

    show("the server's clusters", [cluster for _, _, cluster in labeled.values()])
    show("the engine on every stored face", engine_on(list(range(len(faces)))))
    show("the engine on the labeled faces", engine_on(central))


if __name__ == "__main__":
    main()
