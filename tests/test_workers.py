"""``rag serve --workers 2``: two processes share one built index, and follow a rebuild made by either."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from .servers import free_port, wait_until

pytestmark = pytest.mark.slow


def test_two_workers_share_the_index_and_follow_a_rebuild(tmp_path: Path, segur_index: Path) -> None:
    import shutil

    index_dir = tmp_path / "idx"
    shutil.copytree(segur_index, index_dir, symlinks=True)
    port = free_port()
    env = {
        **os.environ,
        "RAG_ADMIN_TOKEN": "adm",
        "RAG_INDEX_POLL_SECONDS": "0.2",
        "RAG_FEEDBACK_DB": str(tmp_path / "fb"),
    }
    command = [
        sys.executable,
        "-m",
        "rag.cli",
        "serve",
        "--workers",
        "2",
        "--port",
        str(port),
        "--index-dir",
        str(index_dir),
    ]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        workers: dict[int, str] = {}

        def both_ready() -> bool:
            try:
                body = httpx.get(f"{base}/ready", timeout=2).json()  # a new connection each time
            except (httpx.HTTPError, ValueError):
                return False
            if body.get("status") == "ready":
                workers[body["worker"]] = body["index_version"]
            return len(workers) == 2

        wait_until(both_ready, timeout=120)
        assert len(set(workers.values())) == 1
        for _ in range(3):  # a burst of connections opened at once, as a load generator opens them
            served = Counter(_burst(port, 32))
            assert len(served) == 2 and min(served.values()) >= 4, served
        answer = httpx.post(f"{base}/ask", json={"query": "Comment déposer une demande de solde ?"}).json()
        for _ in range(4):  # feedback reaches whichever worker: the answers are in one shared store
            rated = httpx.post(f"{base}/feedback", json={"answer_id": answer["answer_id"], "helpful": True})
            assert rated.status_code == 200
        assert httpx.post(f"{base}/admin/reindex", headers={"Authorization": "Bearer adm"}).status_code == 202
        old = next(iter(workers.values()))
        workers.clear()

        def both_moved() -> bool:
            body = httpx.get(f"{base}/ready", timeout=2).json()
            if body["index_version"] != old:
                workers[body["worker"]] = body["index_version"]
            return len(workers) == 2 and len(set(workers.values())) == 1

        wait_until(both_moved, timeout=120)
        # a worker that dies is replaced; the service goes on answering meanwhile
        os.kill(next(iter(workers)), signal.SIGKILL)
        workers.clear()
        wait_until(both_ready, timeout=120)
        assert len(workers) == 2
    finally:
        server.terminate()
        assert server.wait(timeout=60) == 0  # SIGTERM stops every worker, then the service


def _burst(port: int, count: int) -> list[int]:
    """Open ``count`` connections in one go, then ask each which worker it reached."""
    socks = [socket.socket() for _ in range(count)]
    for sock in socks:
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
    workers = []
    for sock in socks:
        sock.setblocking(True)
        sock.settimeout(30)
        sock.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        workers.append(json.loads(data.split(b"\r\n\r\n", 1)[1])["worker"])
    return workers
