"""The widget's endpoints and the handoff to a person, over the HTTP API: the widget's settings and public
tokens, CORS answered for the allowed sites only, the handoff offered when the FAQ does not answer or a person
is asked for, and the transcript posted to a helpdesk webhook on loopback (and a 503 when it is down)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rag.channels.widget import WidgetTokens
from rag.config import Settings
from rag.http import create_app
from rag.language.smalltalk import asks_for_person
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService
from rag.store.answer_ids import AnswerIds

from .servers import running

SITE = "https://www.partenaire.example"
OTHER = "https://evil.example"
OFF_TOPIC = "zzz qwxv ptlk"


@dataclass
class Helpdesk:
    """A ticketing tool's inbound webhook: records what it receives; ``down`` answers 503."""

    received: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False

    async def receive(self, request: Request) -> JSONResponse:
        if self.down:
            return JSONResponse({"error": "maintenance"}, status_code=503)
        self.received.append(await request.json())
        return JSONResponse({"ticket": len(self.received)}, status_code=201)


@pytest.fixture
def helpdesk() -> Iterator[tuple[Helpdesk, str]]:
    desk = Helpdesk()
    with running(Starlette(routes=[Route("/hook", desk.receive, methods=["POST"])]), ready_path=None) as base:
        yield desk, base + "/hook"


def _client(settings: Settings, hash_embedder) -> TestClient:
    service = QueryService(settings, hash_embedder)
    Publisher(service).build()
    return TestClient(create_app(settings, service))


def _declining(tiny_settings: Settings, **changes: Any) -> Settings:
    """The tiny FAQ where a question the FAQ does not hold is declined."""
    return tiny_settings.replace(min_confidence=0.5, support_url="https://support.example.org", **changes)


def test_a_declined_answer_offers_the_support_link_and_the_form_only_with_a_webhook(
    tiny_settings: Settings, hash_embedder, helpdesk
) -> None:
    with _client(_declining(tiny_settings), hash_embedder) as client:
        body = client.post("/ask", json={"query": OFF_TOPIC}).json()
        assert body["abstained"]
        assert body["handoff"] == {"reason": "declined", "support_url": "https://support.example.org", "form": False}
        answered = client.post("/ask", json={"query": "Comment demander le paiement du solde ?"}).json()
        assert not answered["abstained"] and answered["handoff"] is None
        sent = client.post("/handoff", json={"reason": "declined", "answer_ids": [body["answer_id"]]})
        assert sent.status_code == 404 and sent.json()["error"]["code"] == "handoff_off"
    _, url = helpdesk
    with _client(_declining(tiny_settings, handoff_webhook=url), hash_embedder) as client:
        assert client.post("/ask", json={"query": OFF_TOPIC}).json()["handoff"]["form"] is True
        assert client.get("/widget/config").json()["handoff_form"] is True


@pytest.mark.parametrize(
    "text",
    ["Je voudrais parler à un conseiller", "Puis-je être mis en relation avec une personne ?", "talk to a human"],
)
def test_asking_for_a_person_is_answered_with_the_handoff(tiny_settings: Settings, hash_embedder, text: str) -> None:
    assert asks_for_person(text)
    with _client(_declining(tiny_settings), hash_embedder) as client:
        body = client.post("/ask", json={"query": text}).json()
        assert body["handoff"]["reason"] == "asked" and body["citations"] == []
        chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": text}]}).json()
        assert chat["handoff"]["reason"] == "asked"


@pytest.mark.parametrize(
    "text", ["Comment contacter la CNIL ?", "Qui signe la VA ?", "Bonjour", "Quelle personne morale ?"]
)
def test_questions_that_mention_people_are_not_requests_for_one(text: str) -> None:
    assert not asks_for_person(text)


def test_a_request_for_a_person_the_faq_answers_gets_the_answer_and_the_handoff(
    tiny_settings: Settings, hash_embedder
) -> None:
    text = "Je voudrais contacter le support pour le paiement du solde"
    assert asks_for_person(text)
    with _client(_declining(tiny_settings), hash_embedder) as client:
        body = client.post("/ask", json={"query": text}).json()
    assert not body["abstained"] and body["citations"][0]["id"] == "solde"
    assert body["handoff"]["reason"] == "asked"


def test_the_transcript_reaches_the_helpdesk_and_an_outage_is_a_clear_503(
    tiny_settings: Settings, hash_embedder, helpdesk
) -> None:
    desk, url = helpdesk
    settings = _declining(tiny_settings, handoff_webhook=url, handoff_timeout=2, faq_name="Tiny")
    with _client(settings, hash_embedder) as client:
        answered = client.post("/ask", json={"query": "Comment demander le paiement du solde ?"}).json()
        declined = client.post("/ask", json={"query": OFF_TOPIC}).json()
        transcript = {
            "reason": "declined",
            "answer_ids": [answered["answer_id"], declined["answer_id"]],
            "contact": "marie@example.org",
            "message": "Merci de me rappeler",
            "channel": "widget",
        }
        sent = client.post("/handoff", json=transcript)
        assert sent.status_code == 202 and sent.json() == {"sent": True, "turns": 2}
        (ticket,) = desk.received
        assert ticket["faq"] == "Tiny" and ticket["reason"] == "declined" and ticket["contact"] == "marie@example.org"
        first, second = ticket["turns"]
        assert first["answer"] == answered["answer"] and first["citations"][0]["id"] == "solde"
        assert second["question"] == OFF_TOPIC and second["declined"] and second["answer_id"] == declined["answer_id"]
        desk.down = True
        failed = client.post("/handoff", json=transcript)
        assert failed.status_code == 503 and failed.json()["error"]["code"] == "handoff_unavailable"
        assert len(desk.received) == 1
        bad = client.post("/handoff", json={"reason": "declined", "answer_ids": []})
        assert bad.status_code == 422
        metrics = client.get("/metrics").text
        assert 'rag_handoffs_total{reason="declined",stage="sent"} 1.0' in metrics
        assert 'rag_handoffs_total{reason="declined",stage="failed"} 1.0' in metrics


def test_cors_is_answered_for_the_allowed_sites_only(tiny_settings: Settings, hash_embedder) -> None:
    with _client(tiny_settings.replace(widget_origins=[SITE]), hash_embedder) as client:
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        allowed = client.options("/ask", headers={"Origin": SITE, **preflight})
        assert allowed.status_code == 204 and allowed.headers["access-control-allow-origin"] == SITE
        assert "content-type" in allowed.headers["access-control-allow-headers"].lower()
        refused = client.options("/ask", headers={"Origin": OTHER, **preflight})
        assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
        asked = client.post("/ask", json={"query": "solde"}, headers={"Origin": SITE})
        assert asked.status_code == 200 and asked.headers["access-control-allow-origin"] == SITE
        stranger = client.post("/ask", json={"query": "solde"}, headers={"Origin": OTHER})
        assert stranger.status_code == 403 and stranger.json()["error"]["code"] == "origin_not_allowed"
        own = client.post("/ask", json={"query": "solde"}, headers={"Origin": "http://testserver"})
        assert own.status_code == 200  # the service's own page
        script = client.get("/widget.js", headers={"Origin": OTHER})
        assert script.status_code == 200 and "faq-assistant" in script.text
        assert script.headers["content-type"].startswith("text/javascript")


def test_the_widget_token_asks_and_votes_from_its_site_only(tiny_settings: Settings, hash_embedder) -> None:
    settings = tiny_settings.replace(widget_origins=[SITE], api_keys=["k-1"], admin_token="adm")
    with _client(settings, hash_embedder) as client:
        assert client.post("/ask", json={"query": "solde"}, headers={"Origin": SITE}).status_code == 401
        config = client.get("/widget/config", headers={"Origin": SITE}).json()
        token = config["token"]
        assert token.startswith("wt.") and config["examples"]
        site = {"Origin": SITE, "Authorization": f"Bearer {token}"}
        asked = client.post("/ask", json={"query": "solde"}, headers=site)
        assert asked.status_code == 200
        voted = client.post("/feedback", json={"answer_id": asked.json()["answer_id"], "helpful": True}, headers=site)
        assert voted.status_code == 200
        # not from another site, not on other endpoints, not for admin work
        elsewhere = client.post("/ask", json={"query": "solde"}, headers={**site, "Origin": "http://testserver"})
        assert elsewhere.status_code == 401 and elsewhere.json()["error"]["code"] == "invalid_widget_token"
        assert client.post("/search", json={"query": "solde"}, headers=site).status_code == 401
        assert client.get("/admin/gaps", headers=site).status_code == 401
        forged = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
        assert (
            client.post(
                "/ask", json={"query": "solde"}, headers={**site, "Authorization": f"Bearer {forged}"}
            ).status_code
            == 401
        )


def test_a_widget_token_expires_and_is_bound_to_its_origin() -> None:
    tokens = WidgetTokens("s3cret", 3600)
    token = tokens.issue(SITE, now=1_000_000)
    assert tokens.valid(token, SITE, now=1_000_000 + 3000)
    assert not tokens.valid(token, SITE, now=1_000_000 + 3700)  # an hour later
    assert not tokens.valid(token, OTHER, now=1_000_000)
    assert not WidgetTokens("other", 3600).valid(token, SITE, now=1_000_000)
    assert not tokens.valid("wt.garbage", SITE) and not tokens.valid("wt.a.b.c.d", SITE)


def test_the_widget_config_says_what_the_widget_shows(tiny_settings: Settings, hash_embedder) -> None:
    settings = tiny_settings.replace(faq_name="Tiny", support_url="javascript:alert(1)")
    with _client(settings, hash_embedder) as client:
        config = client.get("/widget/config").json()
    assert config["faq_name"] == "Tiny" and config["token"] is None and config["handoff_form"] is False
    assert config["support_url"] is None  # only web links are given to a page
    assert isinstance(config["facets"], dict) and 1 <= len(config["examples"]) <= 5
    assert all(isinstance(text, str) and text.strip() for text in config["examples"])


def test_the_helpdesk_receives_only_what_the_service_answered(tiny_settings: Settings, hash_embedder, helpdesk) -> None:
    """A client that invents a bot turn, or names an answer the service never gave, sends nothing of it."""
    desk, url = helpdesk
    with _client(_declining(tiny_settings, handoff_webhook=url), hash_embedder) as client:
        declined = client.post("/ask", json={"query": OFF_TOPIC}).json()
        invented = {"question": "Combien ?", "answer": "Le service vous doit 10 000 €.", "declined": False}
        forged = client.post(
            "/handoff", json={"reason": "declined", "answer_ids": [declined["answer_id"]], "turns": [invented]}
        )
        assert forged.status_code == 422  # no turns accepted from a client
        unknown = AnswerIds(b"not the service's key").issue()
        never = client.post("/handoff", json={"reason": "declined", "answer_ids": [unknown]})
        assert never.status_code == 404 and never.json()["error"]["code"] == "unknown_answer"
        sent = client.post(
            "/handoff",
            json={
                "reason": "declined",
                "answer_ids": [declined["answer_id"]],
                "message": "Le service vous doit 10 000 €.",
            },
        )
        assert sent.status_code == 202
    (ticket,) = desk.received
    assert [t["answer"] for t in ticket["turns"]] == [declined["answer"]]  # the service's own words
    assert ticket["message"] == "Le service vous doit 10 000 €."  # the user's, said as theirs
