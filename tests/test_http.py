"""The HTTP contract in process (FastAPI's TestClient), with the tiny FAQ and the deterministic embedder."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from rag.config import Settings
from rag.http import create_app
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

from .servers import wait_until

SOLDE = "Comment demander le paiement du solde ?"


@pytest.fixture
def client_for(tiny_settings: Settings, hash_embedder) -> Iterator:
    """``client_for(**settings)``: a TestClient on an app over the built tiny FAQ."""

    @contextmanager
    def make(peer: str = "testclient", **changes: object) -> Iterator[TestClient]:
        settings = tiny_settings.replace(**changes)
        service = QueryService(settings, hash_embedder)
        Publisher(service).build()
        with TestClient(create_app(settings, service), client=(peer, 50000)) as client:
            yield client

    return make


@pytest.fixture
def client(client_for) -> Iterator[TestClient]:
    with client_for(max_k=20) as c:
        yield c


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
        (
            "POST",
            "/v1/chat/completions",
            {"json": {"messages": [{"role": "system", "content": "x"}]}},
            422,
            "no_user_message",
        ),
    ],
)
def test_errors_are_json_with_the_right_status(client: TestClient, method, path, kwargs, status, code) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "Traceback" not in response.text


def test_search_ask_entries_feedback_and_chat(client: TestClient) -> None:
    found = client.post("/search", json={"query": SOLDE, "k": 2}).json()
    assert not found["abstained"] and 0.0 <= found["confidence"] <= 1.0 and found["took_ms"] >= 0
    assert found["results"][0]["url"] == "http://testserver/entries/solde"  # absolute, from the request
    answer = client.post("/ask", json={"query": SOLDE}).json()
    assert answer["citations"] and answer["answer_id"] and 0.0 <= answer["confidence"] <= 1.0
    entry = client.get(answer["citations"][0]["url"]).json()
    assert entry["id"] == answer["citations"][0]["id"] and entry["url"] == "http://testserver/entries/solde"
    rated = client.post("/feedback", json={"answer_id": answer["answer_id"], "helpful": True})
    assert rated.json() == {"answer_id": answer["answer_id"], "helpful": True, "updated": False, "spooled": False}
    chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": SOLDE}]}).json()
    assert chat["choices"][0]["message"]["content"].startswith(answer["answer"].split(" [")[0][:20])
    assert chat["citations"] and 0.0 <= chat["confidence"] <= 1.0


def test_small_talk_gets_a_polite_reply(client: TestClient) -> None:
    body = client.post("/ask", json={"query": "Bonjour !"}).json()
    assert body["abstained"] and body["citations"] == [] and "FAQ" in body["answer"]


def test_api_keys_protect_everything_but_health_ready_and_page(client_for) -> None:
    with client_for(api_keys=["k-one", "k-two"]) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        assert client.get("/").status_code == 200
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 401
        assert client.get("/openapi.json", headers={"Authorization": "Bearer k-one"}).json()["paths"]["/search"]
        missing = client.post("/search", json={"query": SOLDE})
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
        wrong = client.post("/search", json={"query": SOLDE}, headers={"Authorization": "Bearer k-three"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert client.get("/metrics").status_code == 401
        for key in ("k-one", "k-two"):
            ok = client.post("/search", json={"query": SOLDE}, headers={"Authorization": f"Bearer {key}"})
            assert ok.status_code == 200


def test_rate_limit_answers_429_with_retry_after(client_for) -> None:
    with client_for(rate_limit_per_minute=3) as client:
        # a made-up bearer token per request (keys are off) does not buy a fresh allowance
        statuses = [
            client.post("/search", json={"query": SOLDE}, headers={"Authorization": f"Bearer {n}"}).status_code
            for n in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        limited = client.post("/search", json={"query": SOLDE})
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_cors_origins_are_a_setting(client_for) -> None:
    with client_for(cors_origins=["https://helpdesk.example.org"]) as client:
        headers = {"Origin": "https://helpdesk.example.org", "Access-Control-Request-Method": "POST"}
        allowed = client.options("/search", headers=headers)
        assert allowed.headers.get("access-control-allow-origin") == "https://helpdesk.example.org"
        other = client.options("/search", headers={**headers, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


class SlowService(QueryService):
    """Holds its index load until released, to observe /ready before the index is there."""

    def __init__(self, settings: Settings, embedder) -> None:
        super().__init__(settings, embedder)
        self.release = threading.Event()

    def install(self, index):  # a loaded or a built version alike
        self.release.wait(30)
        return super().install(index)


def test_ready_is_503_until_the_index_is_loaded(tiny_settings: Settings, hash_embedder) -> None:
    service = SlowService(tiny_settings, hash_embedder)
    with TestClient(create_app(tiny_settings, service)) as client:
        before = client.get("/ready")
        assert before.status_code == 503 and before.json()["status"] == "loading"
        assert client.post("/search", json={"query": SOLDE}).status_code == 503
        service.release.set()
        wait_until(lambda: client.get("/ready").status_code == 200)
        assert client.post("/search", json={"query": SOLDE}).status_code == 200


def test_one_json_access_log_line_per_request(client_for, caplog) -> None:
    for log_questions in (False, True):
        with client_for(log_questions=log_questions) as client:
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="rag.access"):
                client.post("/search", json={"query": "Quelle est la recette de la tarte tatin ?"})
        line = json.loads(next(r.getMessage() for r in caplog.records if '"/search"' in r.getMessage()))
        assert {"method", "path", "status", "latency_ms", "abstained"} <= set(line)
        assert line["status"] == 200 and line["method"] == "POST"
        assert ("query" in line) is log_questions


def test_filters_match_entry_metadata(client: TestClient) -> None:
    body = client.post("/search", json={"query": "paiement du solde", "filters": {"theme": "messagerie"}})
    assert [r["id"] for r in body.json()["results"]] == ["mss"]
    both = client.post("/search", json={"query": "solde", "filters": {"theme": ["financement", "identité"]}})
    assert {r["id"] for r in both.json()["results"]} <= {"solde", "psc"}
    assert both.json()["results"][0]["id"] == "solde"
    entry = client.get("/entries/psc").json()
    assert entry["metadata"] == {"theme": "identité"} and entry["url"] == "https://example.org/faq/psc"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/search", {"query": "solde \ud800"}),
        ("/ask", {"query": "\udfff"}),
        ("/search", {"query": "solde", "filters": {"theme": "\ud800"}}),
        ("/feedback", {"answer_id": "x", "helpful": True, "comment": "\ud800"}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "\ud800"}]}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"text": "solde"}]}]}),
        ("/v1/chat/completions", {"messages": [{"role": 5, "content": "solde"}]}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "solde"}], "stream": "yes"}),
    ],
)
def test_bad_text_and_wrong_types_are_422_never_500(client: TestClient, path: str, body: dict) -> None:
    raw = json.dumps(body)  # lone surrogates travel as \\uXXXX escapes, which are valid JSON
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"]


def test_an_unexpected_fault_is_a_json_500(client: TestClient, monkeypatch) -> None:
    def broken(*_, **__):
        raise RuntimeError("boom")

    monkeypatch.setattr(client.app.state.services.query, "search", broken)
    response = client.post("/search", json={"query": SOLDE})
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert "boom" not in response.text and client.get("/health").status_code == 200


def test_a_broken_feedback_store_never_takes_answers_down(tiny_settings: Settings, hash_embedder, tmp_path) -> None:
    unwritable = tmp_path / "a-folder"  # SQLite cannot open a folder: the store fails as on a full disk
    unwritable.mkdir()
    settings = tiny_settings.replace(feedback_db=unwritable, spool_dir=tmp_path / "spool")
    service = QueryService(settings, hash_embedder)
    Publisher(service).build()
    with TestClient(create_app(settings, service)) as client:
        answer = client.post("/ask", json={"query": SOLDE})
        assert answer.status_code == 200 and answer.json()["citations"]
        with client.stream("POST", "/ask", json={"query": SOLDE, "stream": True}) as response:
            names = [line[7:] for line in response.iter_lines() if line.startswith("event: ")]
        assert names[0] == "passages" and names[-1] == "done"
        # the vote is kept in the local spool, on disk before it is acknowledged
        feedback = client.post("/feedback", json={"answer_id": answer.json()["answer_id"], "helpful": True})
        assert feedback.status_code == 200 and feedback.json()["spooled"] is True
        ready = client.get("/ready").json()
        assert ready["status"] == "degraded" and ready["dependencies"]["index"] == "ok"
        assert ready["store"] in {"unavailable", "spooling"} and "a-folder" in ready["store_error"]
        wait_until(lambda: "rag_store_spooled_total 3.0" in client.get("/metrics").text)
        spooled = [
            json.loads(line) for f in (tmp_path / "spool").glob("*.jsonl") for line in f.read_text().splitlines()
        ]
        assert [r["kind"] for r in spooled].count("answer") == 2 and spooled[-1]["kind"] == "vote"


def test_what_can_be_kept_nowhere_is_a_retryable_503(tiny_settings: Settings, hash_embedder, tmp_path) -> None:
    for name in ("a-folder", "spool-file"):
        (tmp_path / name).mkdir() if name == "a-folder" else (tmp_path / name).write_text("not a folder")
    settings = tiny_settings.replace(feedback_db=tmp_path / "a-folder", spool_dir=tmp_path / "spool-file")
    service = QueryService(settings, hash_embedder)
    Publisher(service).build()
    with TestClient(create_app(settings, service)) as client:
        answer = client.post("/ask", json={"query": SOLDE})
        assert answer.status_code == 200
        feedback = client.post("/feedback", json={"answer_id": answer.json()["answer_id"], "helpful": True})
        assert feedback.status_code == 503 and feedback.json()["error"]["code"] == "store_unavailable"
        assert feedback.headers["retry-after"] == "5"


def test_a_stream_that_fails_ends_with_an_error_event(client: TestClient, monkeypatch) -> None:
    def failing(result):
        yield "Début "
        raise RuntimeError("boom")

    monkeypatch.setattr(client.app.state.services.query, "ask_stream", failing)
    with client.stream("POST", "/ask", json={"query": SOLDE, "stream": True}) as response:
        lines = list(response.iter_lines())
    names = [line[7:] for line in lines if line.startswith("event: ")]
    assert names == ["passages", "delta", "error"]
    assert "boom" not in "\n".join(lines)
    body = {"messages": [{"role": "user", "content": SOLDE}], "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    # the chat stream ends with an error object as OpenAI's API sends one, never with a silent stop or [DONE]
    assert json.loads(data[-1])["error"]["code"] == "internal_error" and "[DONE]" not in data
    assert not any(choice.get("finish_reason") == "stop" for d in data[:-1] for choice in json.loads(d)["choices"])


def test_pages_forbid_foreign_scripts(client: TestClient) -> None:
    for response in (client.get("/"), client.get("/entries/solde", headers={"Accept": "text/html"})):
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_each_verified_key_has_its_own_allowance(client_for) -> None:
    with client_for(api_keys=["k-one", "k-two"], rate_limit_per_minute=2) as client:
        for key in ("k-one", "k-two"):
            statuses = [
                client.post("/search", json={"query": SOLDE}, headers={"Authorization": f"Bearer {key}"}).status_code
                for _ in range(3)
            ]
            assert statuses == [200, 200, 429]


@pytest.mark.parametrize(
    ("path", "setting"), [("/search", {"api_keys": ["right"]}), ("/admin/reindex", {"admin_token": "right"})]
)
def test_failed_authentications_are_limited_per_address(client_for, path: str, setting: dict) -> None:
    with client_for(auth_failures_per_minute=3, **setting) as client:
        wrong = [
            client.post(path, json={"query": SOLDE}, headers={"Authorization": f"Bearer guess-{n}"}) for n in range(3)
        ]
        assert [r.status_code for r in wrong] == [401, 401, 401]
        blocked = client.post(path, json={"query": SOLDE}, headers={"Authorization": "Bearer right"})
        assert blocked.status_code == 429 and blocked.json()["error"]["code"] == "too_many_failures"
        assert int(blocked.headers["Retry-After"]) >= 1


def test_forwarded_headers_count_only_from_trusted_proxies(client_for) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "faq.example.org"}
    with client_for(peer="127.0.0.1", forwarded_allow_ips=["127.0.0.1"], rate_limit_per_minute=1) as client:
        body = client.post("/search", json={"query": SOLDE}, headers=forwarded).json()
        assert body["results"][0]["url"] == "https://faq.example.org/entries/solde"
        other = {**forwarded, "X-Forwarded-For": "203.0.113.10"}  # another client behind the same proxy
        assert client.post("/search", json={"query": SOLDE}, headers=other).status_code == 200
        assert client.post("/search", json={"query": SOLDE}, headers=other).status_code == 429
    with client_for(peer="198.51.100.7", forwarded_allow_ips=["127.0.0.1"], rate_limit_per_minute=1) as client:
        body = client.post("/search", json={"query": SOLDE}, headers=forwarded).json()
        assert body["results"][0]["url"].startswith("http://testserver/")  # not a trusted proxy: ignored
        spoofed = {**forwarded, "X-Forwarded-For": "192.0.2.1"}
        assert client.post("/search", json={"query": SOLDE}, headers=spoofed).status_code == 429


def test_docs_are_served_without_any_other_host(client: TestClient) -> None:
    import re

    for path in ("/docs", "/redoc"):
        page = client.get(path).text
        hosts = {h for h in re.findall(r"https?://([^/\"'\s]+)", page) if h not in {"testserver"}}
        assert hosts == set(), hosts
        for asset in re.findall(r'(?:src|href)="(/docs-static/[^"]+)"', page):
            assert client.get(asset).status_code == 200
    assert "/search" in client.get("/openapi.json").json()["paths"]


def test_a_newly_published_index_is_picked_up(client_for, tiny_settings: Settings, hash_embedder) -> None:
    with client_for(index_poll_seconds=0.05) as client:
        before = client.get("/ready").json()["index_version"]
        source = tiny_settings.index.sources[0]
        rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
        rows.append({"id": "new", "question": "Où trouver le calendrier ?", "answer": "Le calendrier est en ligne."})
        source.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
        publisher = Publisher(QueryService(tiny_settings, hash_embedder))  # as another process would: rag index
        published = publisher.build().version
        wait_until(lambda: client.get("/ready").json()["index_version"] == published)
        assert published != before and client.get("/entries/new").status_code == 200


def test_facets_list_the_fields_to_filter_on(client: TestClient) -> None:
    facets = client.get("/facets").json()
    assert facets["theme"] == {"financement": 1, "identité": 1, "messagerie": 1}
    assert facets["source"] == {"tiny.jsonl": 3}


def test_conversations_over_ask_and_chat(client: TestClient) -> None:
    body = client.post("/ask", json={"query": "Et ensuite ?", "history": ["Comment demander le paiement du solde ?"]})
    assert body.json()["resolved"] == "Comment demander le paiement du solde ? Et ensuite ?"
    messages = [
        {"role": "system", "content": "Tu es l'assistant du support. Réponds poliment."},
        {"role": "user", "content": "Comment demander le paiement du solde ?"},
        {"role": "assistant", "content": "La demande de solde se dépose auprès de l'ASP [1]."},
        {"role": "user", "content": "Et ensuite ?"},
    ]
    chat = client.post("/v1/chat/completions", json={"messages": messages}).json()
    assert chat["resolved"] == "Comment demander le paiement du solde ? Et ensuite ?"
    usage = chat["usage"]
    assert usage["prompt_tokens"] > 10 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    refused = client.post("/v1/chat/completions", json={"messages": messages, "n": 2})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "unsupported_n"
