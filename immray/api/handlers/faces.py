"""DetectImageFaces and CompareImageFaces: faces of photos outside any dataset.

SearchImageFigureCluster, which needs a dataset's clusters, lives with the clusters' handlers.
"""

from __future__ import annotations

import uuid
from typing import Any

from immray.api.actions import Action, Call, Scope
from immray.api.context import ApiContext
from immray.api.handlers.common import without_none
from immray.faces import Face
from immray.protocol.errors import ImmError
from immray.protocol.params import Json, Str
from immray.services import image_faces
from immray.sources import sources_for

SOURCE_URI = Str("SourceURI", required=True, min_length=1, max_length=2048)
CREDENTIAL_CONFIG = Json("CredentialConfig", dict)  # IMM's role chain; nothing to assume when self-hosted


def face_figure(face: Face) -> dict[str, Any]:
    """A detected face as an IMM Figure (a FigureId of its own; no cluster: it belongs to no dataset)."""
    return without_none({"FigureId": str(uuid.uuid4()), **face.to_figure()})


def actions(context: ApiContext) -> list[Action]:
    db, settings = context.db, context.settings

    def detect_image_faces(call: Call) -> dict[str, Any]:
        image = image_faces.detect_faces(
            db,
            sources_for(settings),
            context.image_analyzer(),
            call.params["ProjectName"],
            call.params["SourceURI"],
        )
        return {"Faces": [face_figure(face) for face in image.faces]}

    def compare_image_faces(call: Call) -> dict[str, Any]:
        source = call.params["Source"]
        uris = []
        for name in ("URI1", "URI2"):
            value = source.get(name)
            if not isinstance(value, str) or not value:
                raise ImmError.invalid_argument(f"The parameter Source.{name} is required but not provided.")
            uris.append(value)
        result = image_faces.compare_faces(
            db, sources_for(settings), context.image_analyzer(), call.params["ProjectName"], *uris
        )
        return {"Similarity": round(result.similarity, 4)}

    return [
        Action("DetectImageFaces", Scope.PROJECT, (SOURCE_URI, CREDENTIAL_CONFIG), detect_image_faces),
        Action(
            "CompareImageFaces",
            Scope.PROJECT,
            (Json("Source", dict, required=True), CREDENTIAL_CONFIG),
            compare_image_faces,
        ),
    ]
