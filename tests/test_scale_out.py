"""Two `rag serve` replicas behind nginx, sharing PostgreSQL, Redis and one published index folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psycopg
import pytest

from .servers import free_port, wait_until
from .services import nginx

pytestmark = pytest.mark.slow
SOLDE = "Comment déposer une demande de solde ?"


def _replica(port: int, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "rag.cli", "serve", "--port", str(port), "--no-build"]
    return subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _ready(base: str) -> dict:
    try:
        return httpx.get(f"{base}/ready", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return {}


@pytest.fixture
def cluster(tmp_path: Path, segur_index: Path, postgres_url: str, redis_url: str):
    import shutil

    shared = tmp_path / "shared-index"  # a volume every replica mounts
    shutil.copytree(segur_index, shared, symlinks=True)
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS feedback, answers, schema_version")
    env = {
        "RAG_INDEX_DIR": str(shared),
        "RAG_DATABASE_URL": postgres_url,
        "RAG_REDIS_URL": redis_url,
        "RAG_INDEX_POLL_SECONDS": "0.5",
        "RAG_FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    ports = [free_port(), free_port()]
    replicas = [_replica(port, {**env, "RAG_FEEDBACK_DB": str(tmp_path / f"r{port}.db")}) for port in ports]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        wait_until(lambda: all(_ready(base).get("status") == "ready" for base in bases), timeout=120)
        with nginx([f"127.0.0.1:{port}" for port in ports]) as front:
            yield {"front": front, "bases": bases, "replicas": replicas, "shared": shared, "db": postgres_url}
    finally:
        for replica in replicas:
            replica.kill()
            replica.wait(timeout=30)


def _load(front: str, stop: threading.Event, statuses: list[int], answer_ids: list[str]) -> None:
    with httpx.Client(base_url=front, timeout=30) as client:
        while not stop.is_set():
            try:
                body = client.post("/ask", json={"query": SOLDE})
                statuses.append(body.status_code)
                if body.status_code == 200:
                    rated = client.post("/feedback", json={"answer_id": body.json()["answer_id"], "helpful": True})
                    statuses.append(rated.status_code)
                    if rated.status_code == 200:
                        answer_ids.append(body.json()["answer_id"])  # acknowledged
            except httpx.HTTPError:
                statuses.append(-1)


def test_publishing_a_new_index_under_load(cluster) -> None:
    old = _ready(cluster["bases"][0])["index_version"]
    stop, statuses, acknowledged = threading.Event(), [], []
    clients = [threading.Thread(target=_load, args=(cluster["front"], stop, statuses, acknowledged)) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        published = subprocess.run(
            [sys.executable, "-m", "rag.cli", "index", "--index-dir", str(cluster["shared"])],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert published.returncode == 0, published.stderr
        versions = lambda: {_ready(base).get("index_version") for base in cluster["bases"]}  # noqa: E731
        wait_until(lambda: len(versions()) == 1 and old not in versions(), timeout=30)
    finally:
        stop.set()
        for client in clients:
            client.join()
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}


def test_kill_9_of_a_replica_under_load(cluster) -> None:
    stop, statuses, acknowledged = threading.Event(), [], []
    clients = [threading.Thread(target=_load, args=(cluster["front"], stop, statuses, acknowledged)) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        wait_until(lambda: len(acknowledged) >= 10, timeout=60)
        cluster["replicas"][0].send_signal(signal.SIGKILL)
        at_kill = len(statuses)
        wait_until(lambda: len(statuses) >= at_kill + 40, timeout=60)  # the other replica keeps answering
    finally:
        stop.set()
        for client in clients:
            client.join()
    after = statuses[at_kill + 8 :]  # requests already on their way when it died may fail
    assert after and set(after) == {200}, {s: after.count(s) for s in set(after)}
    with psycopg.connect(cluster["db"]) as db:
        stored = {row[0] for row in db.execute("SELECT answer_id FROM feedback WHERE helpful = 1")}
    assert set(acknowledged) <= stored  # no acknowledged feedback is lost
