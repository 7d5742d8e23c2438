"""How well the people that come back through the API match the true identities. Prints figures only.

    python -m immray.bench.api_quality ../shared/eval/dev --project immray --dataset photos \
        [--data-dir DIR] [--endpoint HOST:PORT]

Run it after the README's tour on an evaluation folder (``immray serve --root FOLDER``, ``immray index
FOLDER/images``, ``immray cluster``): it reads every photo of the manifest with BatchGetFileMeta (signed
with the saved key, like the CLI), takes the labeled face of each photo as the manifest defines it (the face
nearest the centre), and scores its FigureClusterId against the identity with immray.clustering.metrics
(pairwise and BCubed precision/recall/F1; independent faces count as clusters of their own). Photos in
which no face was found are left out and counted, as `python -m immray.bench.quality` does.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from immray.bench.dev_faces import read_manifest
from immray.client import ClientError, connect  # noqa: E402
from immray.clustering.metrics import ClusteringScores, score  # noqa: E402
from immray.settings import Settings  # noqa: E402

RESERVED = ("figure-cluster-id-independent", "figure-cluster-id-unavailable")


def central_cluster(item: dict) -> str | None | bool:
    """The FigureClusterId of the face nearest the photo's centre; None when independent; False: no face."""
    figures = item.get("Figures") or []
    if not figures:
        return False
    width, height = item.get("ImageWidth") or 0, item.get("ImageHeight") or 0

    def off_centre(figure: dict) -> float:
        box = figure["Boundary"]
        return (box["Left"] + box["Width"] / 2 - width / 2) ** 2 + (
            box["Top"] + box["Height"] / 2 - height / 2
        ) ** 2

    cluster = min(figures, key=off_centre).get("FigureClusterId")
    return None if cluster in RESERVED else cluster


@dataclass
class ApiScores:
    """What came back through the API for one labeled folder, scored."""

    scores: ClusteringScores
    photos: int
    missing: int
    not_indexed: int
    no_face: int
    people: int
    read_seconds: float


def measure(folder: Path, project: str, dataset: str, settings: Settings, endpoint: str | None) -> ApiScores:
    """Read every photo of ``folder``'s manifest back from ``project/dataset`` and score its labeled face's
    FigureClusterId against the identity (ClientError when the server refuses)."""
    rows = read_manifest(folder)
    uris = [(folder / path).absolute().as_uri() for path, _ in rows]
    truth_of = {uri: identity for uri, (_, identity) in zip(uris, rows, strict=True)}
    started = time.perf_counter()
    found: dict[str, dict] = {}
    with connect(settings, endpoint=endpoint) as client:
        for start in range(0, len(uris), 100):
            body = client.call(
                "BatchGetFileMeta",
                {"ProjectName": project, "DatasetName": dataset, "URIs": uris[start : start + 100]},
            )
            found |= {item["URI"]: item for item in body.get("Files") or []}
        people = sum(
            1
            for _ in client.pages(
                "QueryFigureClusters", "FigureClusters", {"ProjectName": project, "DatasetName": dataset}
            )
        )
    read_seconds = time.perf_counter() - started

    truth, predicted = [], []
    missing = not_indexed = no_face = 0
    for uri in uris:
        item = found.get(uri)
        if item is None:
            missing += 1
            continue
        if item.get("ObjectStatus") != "Indexed":
            not_indexed += 1
            continue
        cluster = central_cluster(item)
        if cluster is False:
            no_face += 1
            continue
        truth.append(truth_of[uri])
        predicted.append(cluster)
    if not truth:
        raise ValueError(
            "no labeled face came back; index and cluster the folder first (see the README's tour)"
        )
    return ApiScores(score(truth, predicted), len(uris), missing, not_indexed, no_face, people, read_seconds)


def measure_or_exit(
    folder: Path, project: str, dataset: str, data_dir: Path | None, endpoint: str | None, label: str = ""
) -> ApiScores:
    """``measure`` with the server's saved key in ``data_dir`` (default IMMRAY_DATA_DIR); a refusal or an
    empty dataset ends the benchmark with its message."""
    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    try:
        return measure(folder, project, dataset, settings, endpoint)
    except (ClientError, ValueError) as exc:
        sys.exit(f"error: {label}{exc}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="an evaluation folder with manifest.csv and images/")
    parser.add_argument("--project", default="immray")
    parser.add_argument("--dataset", default="photos")
    parser.add_argument(
        "--data-dir", type=Path, help="where the server saved its key (default IMMRAY_DATA_DIR)"
    )
    parser.add_argument("--endpoint", help="HOST:PORT (default: the one the saved key is for)")
    args = parser.parse_args()

    got = measure_or_exit(args.folder, args.project, args.dataset, args.data_dir, args.endpoint)
    scores = got.scores
    print(
        f"photos in manifest: {got.photos}; not in the dataset: {got.missing}; not indexed: {got.not_indexed}; "
        f"no face: {got.no_face}"
    )
    print(f"people (clusters) in the dataset: {got.people}; read through the API in {got.read_seconds:.1f} s")
    print(f"labeled faces scored: {scores.n_faces}")
    print(
        f"pairwise  P {scores.pairwise_precision:.4f}  R {scores.pairwise_recall:.4f}  F1 {scores.pairwise_f1:.4f}"
    )
    print(
        f"BCubed    P {scores.bcubed_precision:.4f}  R {scores.bcubed_recall:.4f}  F1 {scores.bcubed_f1:.4f}"
    )
    print(
        f"clusters of 2+ labeled faces: {scores.n_clusters}; faces alone: {scores.n_independent}; "
        f"one-photo people left alone: {scores.singleton_people_alone:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
