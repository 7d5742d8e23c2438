"""`facegroup info` tells which dlib build runs; CI insists on the fast OpenBLAS build."""

import json
import os

import dlib
import pytest
from click.testing import CliRunner

from facegroup.cli import main


def test_info_reports_the_running_dlib_and_pipeline():
    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    assert facts["dlib"].startswith(dlib.__version__)
    assert facts["dlib_blas"] is bool(dlib.DLIB_USE_BLAS)
    assert facts["embedder"].endswith("(128-d)")
    assert facts["detector"]


@pytest.mark.skipif(
    os.environ.get("FACEGROUP_REQUIRE_FAST_DLIB") != "1", reason="only where the fast build is required"
)
def test_the_fast_dlib_build_is_installed():
    assert dlib.DLIB_USE_BLAS, (
        "scripts/install_dlib.sh fell back to dlib-bin: see its warning in the setup output"
    )
