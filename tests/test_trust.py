"""The trust boundary, from outside: nothing forged is kept, a malformed id, token, timestamp or secret is a 4xx
(never a 500), and what is written to logs is scrubbed like what is stored."""

from __future__ import annotations

import json
import logging
import time

import pytest
from fastapi.testclient import TestClient

from rag.channels.chatwoot import authentic
from rag.channels.widget import TOKEN_PREFIX, WidgetTokens
from rag.config import Settings
from rag.http import create_app
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService
from rag.store.answer_ids import AnswerIds

SOLDE = "Comment demander le paiement du solde ?"
SITE = "https://partenaire.example.fr"


@pytest.fixture
def client(tiny_settings: Settings, hash_embedder):
    settings = tiny_settings.replace(api_keys=["k-1"], widget_origins=[SITE], log_questions=True)
    service = QueryService(settings, hash_embedder)
    Publisher(service).build()
    with TestClient(create_app(settings, service), headers={"Authorization": "Bearer k-1"}) as made:
        yield made


def test_a_vote_on_an_id_never_issued_is_refused_and_kept_nowhere(client: TestClient) -> None:
    """An id that encodes the current time, as the service's do, but that the service never signed."""
    made_up = f"{int(time.time() * 1000):012x}" + "0" * 28
    before = client.get("/ready").json()
    voted = client.post("/feedback", json={"answer_id": made_up, "helpful": False})
    assert voted.status_code == 404 and voted.json()["error"]["code"] == "unknown_answer"
    other_key = AnswerIds(b"someone else's key").issue()
    assert client.post("/feedback", json={"answer_id": other_key, "helpful": True}).status_code == 404
    after = client.get("/ready").json()
    assert after["spooled"] == before["spooled"] == 0 and after["status"] == before["status"] == "ready"
    given = client.post("/ask", json={"query": SOLDE}).json()["answer_id"]
    assert AnswerIds(b"x").issued_at(given) is not None
    assert client.post("/feedback", json={"answer_id": given, "helpful": True}).status_code == 200


@pytest.mark.parametrize("expiry", ["²⁰⁰⁰⁰⁰⁰⁰⁰⁰", "١٢٣٤٥٦٧٨٩٠", "12é", "-1", ""])
def test_a_widget_token_with_a_strange_expiry_is_a_401(client: TestClient, expiry: str) -> None:
    tokens = WidgetTokens("s", 3600)
    real = tokens.issue(SITE)
    encoded, _, signature = real[len(TOKEN_PREFIX) :].split(".")
    forged = f"{TOKEN_PREFIX}{encoded}.{expiry}.{signature}"
    assert not tokens.valid(forged, SITE)
    # raw UTF-8 bytes, as any client may send them (a header is read as Latin-1)
    headers = {"Authorization": f"Bearer {forged}".encode(), "Origin": SITE}
    asked = client.post("/ask", json={"query": SOLDE}, headers=headers)
    assert asked.status_code == 401


def test_non_ascii_secrets_and_keys_are_refused_not_crashed(client: TestClient) -> None:
    for key in ("clé-é", "k-1²", "\u00ff" * 40):
        headers = {"Authorization": f"Bearer {key}".encode()}
        assert client.post("/ask", json={"query": SOLDE}, headers=headers).status_code == 401
    forged_signature = "sha256=é" + "0" * 63
    headers = {"x-chatwoot-signature": forged_signature, "x-chatwoot-timestamp": str(int(time.time()))}
    assert not authentic("secret", None, b"{}", headers, {})
    superscript = {"x-chatwoot-signature": "sha256=00", "x-chatwoot-timestamp": "¹²³"}
    assert not authentic("secret", None, b"{}", superscript, {})
    long = {"x-chatwoot-signature": "sha256=00", "x-chatwoot-timestamp": "9" * 400}  # overflows a float
    assert not authentic("secret", None, b"{}", long, {})
    assert not authentic("secret", "sécret", b"{}", {}, {"secret": "sécret-é"})
    assert authentic("secret", "sécret", b"{}", {}, {"token": "sécret"})
    assert not authentic("sécret", None, b"{}", {}, {"secret": "sécret"})  # the signing secret is never a URL token


def test_the_access_log_never_holds_what_the_store_would_not(client: TestClient, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="rag.access"):
        client.post("/ask", json={"query": "Mon NIR est 1 84 12 76 451 089 46, mail jean.dupont@hopital.fr : solde ?"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "rag.access"]
    logged = " ".join(line.get("query", "") for line in lines)
    assert "[NIR]" in logged and "[EMAIL]" in logged
    assert "1 84 12 76 451 089 46" not in logged and "jean.dupont" not in logged
