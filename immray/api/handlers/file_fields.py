"""File and Figure as the SDK's models name their fields (``models/_file.py``, ``models/_figure.py``).

Shared by every answer that carries files or faces: SimpleQuery's Files, a FigureCluster's Cover. Fields
immray does not know are left out (the SDK reads a missing field as None), never invented.
"""

from __future__ import annotations

from typing import Any

from immray.api.handlers.common import without_none
from immray.protocol.times import format_time
from immray.services.file_views import FigureView, FileView


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def figure_fields(figure: FigureView) -> dict[str, Any]:
    """One Figure: identity, box, detection and quality scores, head pose, cluster."""
    pose = None
    if figure.yaw is not None and figure.pitch is not None and figure.roll is not None:
        pose = {"Pitch": round(figure.pitch, 2), "Roll": round(figure.roll, 2), "Yaw": round(figure.yaw, 2)}
    fields = {
        "FigureId": figure.figure_id,
        "FigureType": figure.figure_type,
        "FigureClusterId": figure.figure_cluster_id,
        "FigureClusterConfidence": _rounded(figure.cluster_confidence),
        "FigureConfidence": _rounded(figure.confidence),
        "Boundary": {"Left": figure.left, "Top": figure.top, "Width": figure.width, "Height": figure.height},
        "FaceQuality": _rounded(figure.quality),
        "Sharpness": _rounded(figure.sharpness),
        "HeadPose": pose,
    }
    for key, value in (figure.attributes or {}).items():  # what a model really estimated (Age, ...)
        if key[:1].isupper():
            fields.setdefault(key, value)
    return without_none(fields)


def file_fields(file: FileView) -> dict[str, Any]:
    """One File with its Figures; the InputFile fields kept as given (Title, Labels, ...) come back too."""
    fields: dict[str, Any] = {
        "URI": file.uri,
        "ObjectId": file.object_id,
        "ObjectType": "file",
        "ProjectName": file.project_name,
        "DatasetName": file.dataset_name,
        "CustomId": file.custom_id,
        "CustomLabels": file.custom_labels,
        "MediaType": file.media_type,
        "ContentType": file.content_type,
        "Filename": file.filename,
        "Size": file.size,
        "ETag": file.etag,
        "ImageWidth": file.image_width,
        "ImageHeight": file.image_height,
        "Orientation": file.orientation,
        "ObjectStatus": file.object_status,
        "Reason": file.reason,
        "FigureCount": file.figure_count,
        "Figures": [figure_fields(f) for f in file.figures],
        "FileModifiedTime": format_time(file.file_modified_at) if file.file_modified_at else None,
        "ProduceTime": format_time(file.produced_at) if file.produced_at else None,
        "CreateTime": format_time(file.created_at),
        "UpdateTime": format_time(file.updated_at),
    }
    for key, value in (file.attributes or {}).items():
        if key[:1].isupper():
            fields.setdefault(key, value)
    return without_none(fields)
