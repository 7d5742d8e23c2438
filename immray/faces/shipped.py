"""Where the weights that ship inside installed packages are: dlib's models in ``face_recognition_models``.

The package is located, not imported: its ``__init__`` imports ``pkg_resources``, which recent setuptools no
longer ship.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def face_recognition_model(name: str) -> Path:
    """The path of ``models/<name>`` in the installed ``face_recognition_models`` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the face_recognition_models package is not installed")
    for location in spec.submodule_search_locations:
        path = Path(location) / "models" / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name} is missing from the face_recognition_models package")
