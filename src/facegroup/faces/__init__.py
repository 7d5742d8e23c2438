"""Image bytes in, faces out: the pure face core of facegroup (no HTTP, no database).

``get_analyzer(AnalyzerConfig(...)).analyze(data)`` decodes an image (EXIF rotation, size limits, any pixel
mode), detects faces with dlib, aligns them on five landmarks, embeds them through an ``Embedder`` and
scores their quality. Bad input raises ``ImageError`` with a code and a clear message.
"""

from facegroup.faces.analyzer import Analyzer, get_analyzer
from facegroup.faces.config import AnalyzerConfig
from facegroup.faces.decode import DecodedImage, decode_image
from facegroup.faces.embed import DlibResNetEmbedder, Embedder
from facegroup.faces.errors import ImageError
from facegroup.faces.results import AnalyzedImage, Boundary, Face, HeadPose

__all__ = [
    "AnalyzedImage",
    "Analyzer",
    "AnalyzerConfig",
    "Boundary",
    "DecodedImage",
    "DlibResNetEmbedder",
    "Embedder",
    "Face",
    "HeadPose",
    "ImageError",
    "decode_image",
    "get_analyzer",
]
