"""``python worker_process.py NAME [immray worker options]``: `immray worker`, as a process of its own,
with two test holds: a job stops (and waits) in the middle of a photo's analysis, or of a clustering task
once the engine has run and nothing is committed yet, while the file ``<holds>/<NAME>.<analysis|clustering>``
exists; it writes ``<NAME>.<stage>.holding`` (what it holds, as JSON) first, so a test knows when to kill.

The holds only pause the real code: the analysis and the clustering that follow are immray's own.
Settings come from IMMRAY_* variables, as in production; ``IMMRAY_TEST_HOLDS`` names the holds'
folder (this script reads it, immray never does).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from immray.cli import main
from immray.faces import Analyzer
from immray.jobs.context import JobContext

NAME = sys.argv[1]
HOLDS = Path(os.environ["IMMRAY_TEST_HOLDS"])


def hold(stage: str, detail: dict) -> None:
    flag = HOLDS / f"{NAME}.{stage}"
    if not flag.exists():
        return
    (HOLDS / f"{NAME}.{stage}.holding").write_text(json.dumps({**detail, "pid": os.getpid()}))
    while flag.exists():
        time.sleep(0.05)


_analyze = Analyzer.analyze
_progress = JobContext.progress


def analyze(self, data: bytes):
    hold("analysis", {"sha256": hashlib.sha256(data).hexdigest()})
    return _analyze(self, data)


def progress(self, percent: float) -> None:
    if self.job_name == "face-clustering" and percent >= 60:
        hold("clustering", {"task_id": self.task_id})
    _progress(self, percent)


Analyzer.analyze = analyze
JobContext.progress = progress

if __name__ == "__main__":
    main(["worker", "--name", f"{NAME}@scaleout-test", *sys.argv[2:]])
