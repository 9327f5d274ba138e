"""Feedback: storage, API, concurrency, durability across SIGKILL, export and stats."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from rag.config import Settings
from rag.errors import UnknownAnswer
from rag.http import create_app
from rag.models import Answer, Citation, Hit
from rag.store import sqlite_store as SqliteStore
from rag.store.answers import answer_row
from rag.store.schema import SCHEMA_VERSION

from .servers import free_port, running, wait_until

SOLDE = "Comment déposer une demande de solde ?"


def _answer(query: str, cited: list[str], abstained: bool = False) -> Answer:
    hits = [Hit(id=i, text="t", score=1.0, url=f"/entries/{i}") for i in cited]
    citations = [Citation(n=n, id=i, url=f"/entries/{i}") for n, i in enumerate(cited, start=1)]
    return Answer(query=query, answer="a", abstained=abstained, citations=citations, passages=hits)


def test_store_records_updates_exports_and_counts(store) -> None:
    store.answers.insert(answer_row("a1", _answer("q1", ["e1"])))
    store.answers.insert(answer_row("a2", _answer("q2", ["e2", "e1"])))
    store.answers.insert(answer_row("a3", _answer("q3", [], abstained=True)))
    assert store.votes.add("a1", True, None) is False
    assert store.votes.add("a2", True, "bien") is False
    assert store.votes.add("a2", False, "en fait non") is True  # updated, not duplicated
    with pytest.raises(UnknownAnswer):
        store.votes.add("nope", True, None)
    rows = store.votes.all()
    assert [(r["answer_id"], r["helpful"], r["comment"]) for r in rows] == [
        ("a1", True, None),
        ("a2", False, "en fait non"),
    ]
    exported = store.votes.to_label()
    assert [(e["query"], e["reason"]) for e in exported] == [("q2", "unhelpful"), ("q3", "unanswered")]
    assert exported[0]["relevant"] == [] and exported[0]["cited"] == ["e2", "e1"]
    stats = store.votes.stats()
    assert stats["answers"] == 3 and stats["ratings"] == 2
    assert stats["per_day"][0]["helpful_rate"] == 0.5
    assert stats["least_helpful_entries"][0] == {"id": "e2", "ratings": 1, "helpful_rate": 0.0}
    assert store.db.run("SELECT MAX(version) FROM schema_version") == [(SCHEMA_VERSION,)]


def test_sqlite_store_writes_ahead(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "fb.sqlite3").open().close()
    mode = sqlite3.connect(tmp_path / "fb.sqlite3").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_a_lease_is_taken_by_one_holder_per_period(store) -> None:
    assert store.leases.claim("sync", "replica-a", 0.5)
    assert not store.leases.claim("sync", "replica-b", 0.5)  # another holder, while it runs
    assert not store.leases.claim("sync", "replica-a", 0.5)  # nor again by the same holder: once per period
    wait_until(lambda: store.leases.claim("sync", "replica-b", 30), timeout=5, interval=0.1)
    assert not store.leases.claim("sync", "replica-a", 30)


@pytest.fixture(scope="module")
def built_dir(segur_index: Path) -> Path:
    return segur_index


@pytest.mark.slow
def test_feedback_api_and_concurrent_clients(built_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "fb.sqlite3"
    settings = Settings(index_dir=built_dir, feedback_db=db, admin_token="adm", max_comment_chars=50)
    with running(create_app(settings), ready_path="/ready") as base:
        first = httpx.post(f"{base}/ask", json={"query": SOLDE}).json()["answer_id"]
        ok = httpx.post(f"{base}/feedback", json={"answer_id": first, "helpful": True})
        assert ok.status_code == 200 and ok.json()["updated"] is False
        again = httpx.post(f"{base}/feedback", json={"answer_id": first, "helpful": False, "comment": "incomplet"})
        assert again.json()["updated"] is True
        too_long = httpx.post(f"{base}/feedback", json={"answer_id": first, "helpful": False, "comment": "x" * 51})
        assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "comment_too_long"

        def one_client(i: int) -> str:
            with httpx.Client(base_url=base, timeout=60) as client:
                answer_id = client.post("/ask", json={"query": f"{SOLDE} ({i})"}).json()["answer_id"]
                response = client.post(
                    "/feedback", json={"answer_id": answer_id, "helpful": i % 2 == 0, "comment": f"client {i}"}
                )
                assert response.status_code == 200
                return answer_id

        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(one_client, range(60)))
        admin = httpx.get(f"{base}/admin/feedback", headers={"Authorization": "Bearer adm"}).json()
        assert admin["stats"]["ratings"] == 61
        assert httpx.get(f"{base}/admin/feedback").status_code == 401
    rows = {r["answer_id"]: r for r in SqliteStore(db).open().votes.all()}
    assert set(ids) | {first} == set(rows)
    for i, answer_id in enumerate(ids):
        assert rows[answer_id]["helpful"] is (i % 2 == 0) and rows[answer_id]["comment"] == f"client {i}"
    assert rows[first]["comment"] == "incomplet"


def _start_server(built_dir: Path, db: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "RAG_INDEX_DIR": str(built_dir), "RAG_FEEDBACK_DB": str(db), "RAG_ADMIN_TOKEN": "adm"}
    return subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "serve", "--port", str(port), "--no-build"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_acknowledged_feedback_survives_sigkill(built_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "fb.sqlite3"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = _start_server(built_dir, db, port)
    try:
        wait_until(lambda: _ready(base), timeout=120)
        answer_ids = [httpx.post(f"{base}/ask", json={"query": f"{SOLDE} {i}"}).json()["answer_id"] for i in range(40)]
        acknowledged: list[str] = []
        lock = threading.Lock()

        def writer(chunk: list[str]) -> None:
            with httpx.Client(base_url=base, timeout=10) as client:
                for answer_id in chunk:
                    try:
                        response = client.post("/feedback", json={"answer_id": answer_id, "helpful": False})
                    except httpx.HTTPError:
                        return  # the server is gone
                    if response.status_code == 200:
                        with lock:
                            acknowledged.append(answer_id)

        threads = [threading.Thread(target=writer, args=(answer_ids[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: len(acknowledged) >= 10, timeout=60, interval=0.001)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        for t in threads:
            t.join(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert len(acknowledged) >= 10
    stored = {row[0] for row in sqlite3.connect(db).execute("SELECT answer_id FROM feedback")}
    assert set(acknowledged) <= stored
    # the restarted service sees every acknowledged feedback
    restarted = _start_server(built_dir, db, port)
    try:
        wait_until(lambda: _ready(base), timeout=120)
        admin = httpx.get(f"{base}/admin/feedback", headers={"Authorization": "Bearer adm"}).json()
        assert admin["stats"]["ratings"] >= len(acknowledged)
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)
    out = tmp_path / "to-label.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "rag.cli", "feedback", "export", "--db", str(db), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(exported) >= len(acknowledged) and all(e["relevant"] == [] for e in exported)
    stats = subprocess.run(
        [sys.executable, "-m", "rag.cli", "feedback", "stats", "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(stats.stdout)["ratings"] == len(stored)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
