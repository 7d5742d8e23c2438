"""immray's benchmarks: each prints its figures and asserts nothing. Run one as ``python -m immray.bench.<name>``."""
