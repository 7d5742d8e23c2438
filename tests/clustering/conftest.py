from __future__ import annotations

import pytest
from clustering_helpers import People

from immray.clustering import Engine


@pytest.fixture
def people() -> People:
    return People()


@pytest.fixture
def engine() -> Engine:
    return Engine()
