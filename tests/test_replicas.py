"""Two replicas sharing PostgreSQL (answers and feedback) and Redis (rate limits): real servers, no mocks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest

from rag.config import Settings
from rag.http import create_app

from .servers import running

pytestmark = pytest.mark.slow
SOLDE = "Comment déposer une demande de solde ?"


def _replica(segur_index: Path, folder: Path, **shared) -> Settings:
    index_dir = folder / "idx"
    shutil.copytree(segur_index, index_dir, symlinks=True)  # each replica its own local folder
    # replicas on several machines share the key that signs answer ids, as the operator configures it
    return Settings(
        index_dir=index_dir, feedback_db=folder / "local.sqlite3", admin_token="adm", secret_key="shared-k", **shared
    )


def test_an_answer_from_one_replica_is_rated_on_the_other(segur_index, tmp_path, postgres_url) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS feedback, answers, schema_version")
    a = _replica(segur_index, tmp_path / "a", database_url=postgres_url)
    b = _replica(segur_index, tmp_path / "b", database_url=postgres_url)
    with running(create_app(a), ready_path="/ready") as base_a, running(create_app(b), ready_path="/ready") as base_b:
        answer = httpx.post(f"{base_a}/ask", json={"query": SOLDE}).json()
        rated = httpx.post(f"{base_b}/feedback", json={"answer_id": answer["answer_id"], "helpful": False})
        assert rated.status_code == 200, rated.text
        admin = {"Authorization": "Bearer adm"}
        for base in (base_a, base_b):
            stats = httpx.get(f"{base}/admin/feedback", headers=admin).json()["stats"]
            assert stats["answers"] == 1 and stats["ratings"] == 1
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT a.query, f.helpful FROM feedback f JOIN answers a ON a.id = f.answer_id").fetchall()
    assert rows == [(SOLDE, 0)]
    env = {**os.environ, "RAG_DATABASE_URL": postgres_url}
    for command in (["stats", "--json"], ["export"]):
        done = subprocess.run([sys.executable, "-m", "rag.cli", "feedback", *command], env=env, capture_output=True)
        assert done.returncode == 0, done.stderr
        if command[0] == "stats":
            assert json.loads(done.stdout)["ratings"] == 1
        else:
            assert json.loads(done.stdout.splitlines()[0])["query"] == SOLDE
    assert not (tmp_path / "a" / "local.sqlite3").exists()  # nothing went to the local file


def test_a_rate_limit_holds_across_replicas(segur_index, tmp_path, redis_url) -> None:
    a = _replica(segur_index, tmp_path / "a", redis_url=redis_url, rate_limit_per_minute=6)
    b = _replica(segur_index, tmp_path / "b", redis_url=redis_url, rate_limit_per_minute=6)
    with running(create_app(a), ready_path="/ready") as base_a, running(create_app(b), ready_path="/ready") as base_b:
        statuses = [httpx.post(f"{base}/search", json={"query": SOLDE}).status_code for base in (base_a, base_b) * 6]
    assert statuses.count(200) == 6 and statuses[6:] == [429] * 6
