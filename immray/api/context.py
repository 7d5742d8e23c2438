"""What handlers are built with: the settings, the database and access control of one server.

Handler modules receive this in their ``actions(context)`` factory and close over it, so a handler is a
plain ``Call -> fields`` function with its collaborators fixed at start-up. A feature that needs another
collaborator (a task pool, a source reader) adds a field here and fills it in ``api.bootstrap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from immray.api.access import AccessControl
from immray.services.database import Database
from immray.settings import Settings


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    db: Database
    access: AccessControl
    # Where the image actions (DetectImageFaces, CompareImageFaces, SearchImageFigureCluster) analyse a
    # photo: an Analyzer-shaped object (``analyze(data)``, ``embedder``); None: the models in this process.
    analyzer: Any = None

    def image_analyzer(self) -> Any:
        if self.analyzer is not None:
            return self.analyzer
        from immray.services.analysis import analyzer_for

        return analyzer_for(self.settings)
