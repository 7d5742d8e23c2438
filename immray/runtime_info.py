"""What this installation runs: the dlib build and the configured face pipeline.

`immray info` prints it so an operator can tell at a glance whether the fast OpenBLAS build of dlib is in
use (descriptors about 5x faster than the prebuilt dlib-bin wheel) or the fallback.
"""

from __future__ import annotations

import importlib.metadata

from immray import __version__
from immray.faces import AnalyzerConfig, get_analyzer


def _dlib_distribution() -> str:
    for name in ("dlib", "dlib-bin"):
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def runtime_info(config: AnalyzerConfig) -> dict[str, object]:
    """Facts about the dlib build and the pipeline ``config`` selects (loads the models once)."""
    import dlib

    analyzer = get_analyzer(config)
    blas = bool(dlib.DLIB_USE_BLAS)
    return {
        "immray": __version__,
        "dlib": f"{dlib.__version__} ({_dlib_distribution()})",
        "dlib_blas": blas,
        "dlib_lapack": bool(dlib.DLIB_USE_LAPACK),
        "dlib_avx": bool(dlib.USE_AVX_INSTRUCTIONS),
        "dlib_cuda": bool(dlib.DLIB_USE_CUDA),
        "dlib_build": "source build with BLAS (fast)" if blas else "no BLAS (slow descriptors: dlib-bin?)",
        "detector": config.detector,
        "embedder": f"{analyzer.embedder.name} ({analyzer.embedder.dimension}-d)",
        "detect_max_side": config.detect_max_side,
        "min_face_px": config.min_face_px,
    }
