"""Image bytes in, faces out: the pure face core of immray (no HTTP, no database).

``get_analyzer(AnalyzerConfig(...)).analyze(data)`` decodes an image (EXIF rotation, size limits, any pixel
mode), detects faces with dlib, aligns them on five landmarks, embeds them through an ``Embedder`` and
scores their quality; face-api's networks estimate each face's age, gender and emotion. Bad input raises ``ImageError`` with a code and a clear message.
"""

from immray.faces.analyzer import Analyzer, get_analyzer
from immray.faces.attributes import FaceAttributes
from immray.faces.config import AnalyzerConfig
from immray.faces.decode import DecodedImage, decode_image
from immray.faces.embed import DlibResNetEmbedder, Embedder
from immray.faces.errors import ImageError
from immray.faces.results import AnalyzedImage, Boundary, Face, HeadPose

__all__ = [
    "AnalyzedImage",
    "Analyzer",
    "AnalyzerConfig",
    "Boundary",
    "DecodedImage",
    "DlibResNetEmbedder",
    "Embedder",
    "Face",
    "FaceAttributes",
    "HeadPose",
    "ImageError",
    "decode_image",
    "get_analyzer",
]
