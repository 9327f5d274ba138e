"""The code stays ruff-clean (lint and format), as the project's style asks."""

import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT

RUFF = shutil.which("ruff", path=str(ROOT / ".venv" / "bin")) or shutil.which("ruff")


@pytest.mark.skipif(RUFF is None, reason="ruff is a dev extra")
@pytest.mark.parametrize("args", [["check"], ["format", "--check"]])
def test_ruff(args: list[str]) -> None:
    done = subprocess.run(
        [RUFF or sys.executable, *args, "rag", "tests", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
