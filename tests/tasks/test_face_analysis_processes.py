"""The embedded pool's face analysis in child processes (jobs.face_analysis): the same faces as in this
process, bad images failing with their own ImageError, and a child that dies failing its photo alone."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from immray.faces import ImageError
from immray.jobs.face_analysis import ChildProcessAnalysis, InProcessAnalysis
from immray.settings import Settings
from photo_testkit import TEST_DETECTOR


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, detector=TEST_DETECTOR)


def child_pids() -> set[int]:
    return {child.pid for child in multiprocessing.active_children()}


@pytest.fixture
def others() -> set[int]:
    """Child processes this test did not start (another module's server may have some): not ours to kill."""
    return child_pids()


@pytest.fixture
def children(settings: Settings, others: set[int]):
    analysis = ChildProcessAnalysis(settings, processes=2)
    yield analysis
    analysis.close()


def test_children_find_the_faces_this_process_finds(children, others, settings, sample_photo):
    assert not child_pids() - others, "no child before the first photo"
    data = sample_photo("group").read_bytes()
    here = InProcessAnalysis(settings)
    for mode in (None, "fast"):
        theirs, ours = children.analyze(mode, data), here.analyze(mode, data)
        assert len(theirs.faces) == len(ours.faces) == 6
        assert [f.boundary for f in theirs.faces] == [f.boundary for f in ours.faces]
        for a, b in zip(theirs.faces, ours.faces, strict=True):
            np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-5)
        assert children.embedder_name(mode) == here.embedder_name(mode) == "dlib-resnet-v1+mirror"
    assert 1 <= len(child_pids() - others) <= 2, "the analysis ran in at most two children"


def test_a_bad_image_fails_with_its_own_error(children):
    with pytest.raises(ImageError) as caught:
        children.analyze(None, b"this is not a photo")
    assert caught.value.code == "InvalidImage"
    assert caught.value.reason.startswith("[InvalidImage] ")


def test_threads_share_the_children(children, sample_photo):
    data = sample_photo("portrait").read_bytes()
    found: list[int] = []

    def analyse() -> None:
        found.append(len(children.analyze(None, data).faces))

    threads = [threading.Thread(target=analyse) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert found == [1, 1, 1, 1]


def test_children_leave_ctrl_c_to_the_server(children, others, sample_photo):
    data = sample_photo("portrait").read_bytes()
    assert len(children.analyze(None, data).faces) == 1
    ours = child_pids() - others
    for pid in ours:
        os.kill(pid, signal.SIGINT)  # what a terminal's Ctrl-C sends to the whole process group
    assert len(children.analyze(None, data).faces) == 1
    assert child_pids() - others == ours


def test_a_child_that_dies_fails_its_photo_alone(children, others, sample_photo):
    data = sample_photo("portrait").read_bytes()
    assert len(children.analyze(None, data).faces) == 1
    for pid in child_pids() - others:
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(BrokenProcessPool):
        children.analyze(None, data)
    assert len(children.analyze(None, data).faces) == 1  # new children took over


def _blas_threads_after_share_cores(processes: int, env: dict[str, str]) -> int:
    script = (
        "import dlib, threadpoolctl\n"
        "from immray.jobs.face_analysis import share_cores\n"
        f"share_cores({processes})\n"
        "print(min(i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def test_each_analysing_process_gets_its_share_of_the_cores():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    cores = os.cpu_count() or 1
    assert _blas_threads_after_share_cores(1, env) == cores
    assert _blas_threads_after_share_cores(cores, env) == 1
    # An operator's own OPENBLAS_NUM_THREADS is kept.
    assert _blas_threads_after_share_cores(1, {**env, "OPENBLAS_NUM_THREADS": "1"}) == 1
