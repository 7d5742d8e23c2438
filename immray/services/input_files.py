"""IMM's InputFile (the ``File``/``Files`` of IndexFileMeta, BatchIndexFileMeta and UpdateFileMeta), checked.

The SDK always sends ``"Addresses":[]``, ``"Figures":[]`` and ``"Labels":[]``, so an empty list means "not
given". Fields immray does not compute itself (Title, LatLong, Labels, ...) are kept as given and shown
again by GetFileMeta; unknown keys are ignored, as a newer SDK may send fields this version does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from immray.protocol.errors import ImmError
from immray.protocol.times import parse_time
from immray.store import File

# InputFile fields kept as given and echoed by GetFileMeta, with their JSON type.
ECHOED_FIELDS: dict[str, type] = {
    "Title": str,
    "LatLong": str,
    "Album": str,
    "AlbumArtist": str,
    "Artist": str,
    "Composer": str,
    "Performer": str,
    "FileHash": str,
    "OSSURI": str,
    "Addresses": list,
    "Labels": list,
}
MEDIA_TYPES = ("image", "video", "audio", "document", "archive", "other")
MAX_CUSTOM_ID = 512
MAX_FIGURES = 100
# File.attributes also holds what the last index request asked for (its notification); never echoed.
INDEX_REQUEST_KEY = "__index_request__"


@dataclass(frozen=True)
class InputFile:
    uri: str
    custom_id: str | None = None
    custom_labels: dict[str, Any] | None = None
    media_type: str | None = None
    content_type: str | None = None
    produced_at: datetime | None = None
    echoed: dict[str, Any] = field(default_factory=dict)
    figures: tuple[dict[str, str], ...] = ()  # UpdateFileMeta only: {FigureId, FigureClusterId}

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> InputFile:
        """``raw`` checked; errors name the parameter as ``where`` (``File``, ``Files[3]``)."""

        def bad(name: str, why: str) -> ImmError:
            return ImmError.invalid_argument(f"The parameter {where}.{name} {why}")

        def text(name: str, limit: int) -> str | None:
            value = raw.get(name)
            if value is None:
                return None
            if not isinstance(value, str):
                raise bad(name, "must be a string.")
            if len(value) > limit:
                raise bad(name, f"must be at most {limit} characters long.")
            return value

        uri = raw.get("URI")
        if not isinstance(uri, str) or not uri:
            raise ImmError.invalid_argument(f"The parameter {where}.URI is required but not provided.")
        labels = raw.get("CustomLabels")
        if labels is not None and not isinstance(labels, dict):
            raise bad("CustomLabels", "must be a JSON object.")
        media_type = text("MediaType", 32)
        if media_type is not None and media_type not in MEDIA_TYPES:
            raise bad("MediaType", f"must be one of {', '.join(MEDIA_TYPES)}.")
        produce_time = text("ProduceTime", 64)
        echoed: dict[str, Any] = {}
        for name, kind in ECHOED_FIELDS.items():
            value = raw.get(name)
            if value is None or value == []:
                continue
            if not isinstance(value, kind):
                raise bad(name, f"must be a JSON {'string' if kind is str else 'array'}.")
            echoed[name] = value
        return cls(
            uri=uri,
            custom_id=text("CustomId", MAX_CUSTOM_ID),
            custom_labels=labels,
            media_type=media_type,
            content_type=text("ContentType", 256),
            produced_at=parse_time(produce_time, f"{where}.ProduceTime") if produce_time else None,
            echoed=echoed,
            figures=_figures(raw.get("Figures"), where),
        )

    def apply_metadata(self, row: File) -> None:
        """Write the metadata given (None = keep) onto ``row``; the face analysis fields are not touched."""
        if self.custom_id is not None:
            row.custom_id = self.custom_id
        if self.custom_labels is not None:
            row.custom_labels = dict(self.custom_labels)
        if self.media_type is not None:
            row.media_type = self.media_type
        if self.content_type is not None:
            row.content_type = self.content_type
        if self.produced_at is not None:
            row.produced_at = self.produced_at
        if self.echoed:
            row.attributes = {**(row.attributes or {}), **self.echoed}


def _figures(raw: Any, where: str) -> tuple[dict[str, str], ...]:
    if raw is None or raw == []:
        return ()
    if not isinstance(raw, list):
        raise ImmError.invalid_argument(f"The parameter {where}.Figures must be a JSON array.")
    if len(raw) > MAX_FIGURES:
        raise ImmError.limit_exceeded(f"{where}.Figures holds {len(raw)} items; at most {MAX_FIGURES}.")
    moves: dict[str, dict[str, str]] = {}
    for index, item in enumerate(raw):
        name = f"{where}.Figures[{index}]"
        if not isinstance(item, dict):
            raise ImmError.invalid_argument(f"The parameter {name} must be a JSON object.")
        figure_id, cluster_id = item.get("FigureId"), item.get("FigureClusterId")
        if not isinstance(figure_id, str) or not figure_id:
            raise ImmError.invalid_argument(f"The parameter {name}.FigureId is required but not provided.")
        if not isinstance(cluster_id, str) or not cluster_id:
            raise ImmError.invalid_argument(
                f"The parameter {name}.FigureClusterId is required: a cluster's ObjectId, or "
                "figure-cluster-id-independent to take the face out of its cluster."
            )
        if item.get("FigureType") not in (None, "", "face"):
            raise ImmError.invalid_argument(f"The parameter {name}.FigureType must be face.")
        moves[figure_id] = {"FigureId": figure_id, "FigureClusterId": cluster_id}  # the last one wins
    return tuple(moves.values())
