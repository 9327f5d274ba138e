"""The index folder through builds that are killed: there is always a complete index to load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.indexing.faq_index import FaqIndex
from rag.indexing.versions import version_dir

pytestmark = pytest.mark.slow


def _index(index_dir: Path, max_tokens: int) -> subprocess.Popen:
    env = {**os.environ, "RAG_CHUNK_MAX_TOKENS": str(max_tokens)}
    return subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "index", "--index-dir", str(index_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_kill_9_at_any_point_of_a_build_leaves_a_loadable_index(tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    assert _index(index_dir, 400).wait(timeout=300) == 0
    first = version_dir(index_dir).name
    # a build of this FAQ takes about 3 s: kills spread over it, each during another rebuild
    for n, delay in enumerate((0.3, 0.8, 1.3, 1.8, 2.3, 2.8, 3.3)):
        build = _index(index_dir, 390 + n % 2)
        time.sleep(delay)  # the point of the build at which it is killed
        build.send_signal(signal.SIGKILL)
        build.wait(timeout=30)
        assert FaqIndex.load(index_dir).entries, f"no loadable index after a kill at {delay} s"
    assert _index(index_dir, 380).wait(timeout=300) == 0
    assert version_dir(index_dir).name != first and FaqIndex.load(index_dir).manifest.options["chunk_max_tokens"] == 380
    assert not list(index_dir.glob(".tmp-*")) and len(list((index_dir / "versions").iterdir())) == 2
