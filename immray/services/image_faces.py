"""Faces of a photo outside any dataset: DetectImageFaces and CompareImageFaces.

Synchronous: the photo is read through ``sources`` (the same roots and buckets as indexing) and analysed
in the request. A URI that is refused, an object that cannot be read and an image that cannot be decoded
are all the client's to fix, so all are InvalidArgument naming the URI.
"""

from __future__ import annotations

from dataclasses import dataclass

from immray.faces import AnalyzedImage, Analyzer, Face, ImageError
from immray.faces.similarity import embedding_similarity, same_person_distance
from immray.protocol.errors import ImmError
from immray.services.database import Database
from immray.services.projects import find_project
from immray.sources import SourceRefused, Sources, SourceUnreadable


@dataclass(frozen=True)
class Comparison:
    similarity: float
    distance: float
    face1: Face
    face2: Face


def analyze_uri(sources: Sources, analyzer: Analyzer, uri: str, name: str = "SourceURI") -> AnalyzedImage:
    """The faces of the image at ``uri``; InvalidArgument (naming ``name`` and the URI) when it cannot be."""
    try:
        source = sources.read(sources.check(uri))
    except SourceRefused as exc:
        raise ImmError.invalid_argument(
            f"The parameter {name} {uri[:512]!r} is refused: {exc.message}."
        ) from None
    except SourceUnreadable as exc:
        raise ImmError.invalid_argument(
            f"The parameter {name} {uri[:512]!r} cannot be read: {exc.reason}"
        ) from None
    try:
        return analyzer.analyze(source.data)
    except ImageError as exc:
        raise ImmError.invalid_argument(
            f"The parameter {name} {uri[:512]!r} is not a usable image: {exc.reason}"
        ) from None


def detect_faces(db: Database, sources: Sources, analyzer: Analyzer, project: str, uri: str) -> AnalyzedImage:
    """DetectImageFaces: every face of the image (an image without faces gives an empty list)."""
    _check_project(db, project)
    return analyze_uri(sources, analyzer, uri)


def compare_faces(
    db: Database, sources: Sources, analyzer: Analyzer, project: str, uri1: str, uri2: str
) -> Comparison:
    """CompareImageFaces: the Similarity of the largest face of each image (0.5 = same-person boundary)."""
    _check_project(db, project)
    faces = []
    for name, uri in (("Source.URI1", uri1), ("Source.URI2", uri2)):
        image = analyze_uri(sources, analyzer, uri, name)
        if not image.faces:
            raise ImmError.invalid_argument(
                f"The parameter {name} {uri[:512]!r}: no face was found in the image."
            )
        faces.append(max(image.faces, key=lambda face: face.boundary.width * face.boundary.height))
    threshold = same_person_distance(analyzer.embedder)
    distance = float(((faces[0].embedding - faces[1].embedding) ** 2).sum() ** 0.5)
    return Comparison(
        embedding_similarity(faces[0].embedding, faces[1].embedding, threshold), distance, *faces
    )


def _check_project(db: Database, project: str) -> None:
    with db.read() as session:
        find_project(session, project)
