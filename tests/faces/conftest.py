"""Real models and real photos, loaded once per test session (a dlib descriptor costs ~100 ms)."""

from __future__ import annotations

import pytest

from immray.faces import AnalyzedImage, Analyzer, AnalyzerConfig, get_analyzer


@pytest.fixture(scope="session")
def analyzer() -> Analyzer:
    return get_analyzer(AnalyzerConfig())


@pytest.fixture(scope="session")
def group_bytes(sample_photo) -> bytes:
    return sample_photo("group").read_bytes()


@pytest.fixture(scope="session")
def portrait_bytes(sample_photo) -> bytes:
    return sample_photo("portrait").read_bytes()


@pytest.fixture(scope="session")
def astronaut_bytes(sample_photo) -> bytes:
    return sample_photo("astronaut").read_bytes()


@pytest.fixture(scope="session")
def group(analyzer, group_bytes) -> AnalyzedImage:
    return analyzer.analyze(group_bytes)


@pytest.fixture(scope="session")
def astronaut(analyzer, astronaut_bytes) -> AnalyzedImage:
    return analyzer.analyze(astronaut_bytes)
