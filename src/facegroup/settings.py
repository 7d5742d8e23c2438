"""One Settings object for the whole process.

Nothing else in facegroup reads the environment: every knob is a field here, set by a ``FACEGROUP_*``
variable or by an optional ``facegroup.env`` file in the working directory.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "facegroup"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGROUP_", env_file="facegroup.env", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir, description="database, keys, indexes, thumbnails")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite in data_dir")

    # The API server (`facegroup serve`).
    host: str = Field(default="127.0.0.1", description="address the API server listens on")
    port: int = Field(default=8400, ge=0, le=65535, description="port the API server listens on")
    allowed_roots: list[Path] = Field(
        default_factory=list, description="folders whose files file:// URIs may name (serve --root)"
    )

    # Face analysis (mapped onto facegroup.faces.AnalyzerConfig by faces_config()).
    detector: str = Field(default="hog", description="hog | cnn")
    max_image_pixels: int = Field(default=100_000_000, description="larger images are refused as bombs")
    detect_max_side: int = Field(default=2048, description="images are downscaled to this for detection")
    min_face_px: int = Field(default=40, description="smallest face side (original pixels) to look for")

    @property
    def credentials_path(self) -> Path:
        """Where `serve` saves the admin key on first start and the CLI finds it (mode 0600)."""
        return self.data_dir / "credentials.json"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'facegroup.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
