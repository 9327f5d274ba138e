"""One question object for every interface: the default ``k`` is the setting and filters are checked for every
question, over HTTP, the chat endpoint and MCP alike (the CLI: test_cli.py)."""

from __future__ import annotations

import anyio
import pytest
from fastapi.testclient import TestClient
from mcp import Client

from rag.channels.mcp import make_server
from rag.channels.respond import Responder
from rag.http import create_app
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService
from rag.store.answer_ids import AnswerIds

from .conftest import Q, Recorded

SOLDE = "Comment demander le paiement du solde ?"


@pytest.fixture
def service(tiny_settings, hash_embedder) -> QueryService:
    built = QueryService(tiny_settings.replace(default_k=2), hash_embedder)  # the tiny FAQ has 3 entries
    Publisher(built).build()
    return built


def test_the_default_k_is_the_setting_over_http(service) -> None:
    with TestClient(create_app(service.settings, service)) as client:
        assert len(client.post("/search", json={"query": SOLDE}).json()["results"]) == 2
        assert len(client.post("/ask", json={"query": SOLDE}).json()["passages"]) == 2
        assert len(client.post("/search", json={"query": SOLDE, "k": 3}).json()["results"]) == 3


def test_the_default_k_is_the_setting_over_mcp(service) -> None:
    async def main() -> dict:
        async with Client(make_server(Responder(service, Recorded(), AnswerIds(b"test")))) as client:
            return (await client.call_tool("search_faq", {"question": SOLDE})).structured_content

    assert len(anyio.run(main)["results"]) == 2


@pytest.mark.parametrize("query", ["ok", "Bonjour", SOLDE])
def test_an_unknown_filter_is_refused_whatever_the_question(service, query) -> None:
    with TestClient(create_app(service.settings, service)) as client:
        for path in ("/search", "/ask"):
            response = client.post(path, json={"query": query, "filters": {"zzz": "y"}})
            assert response.status_code == 422 and response.json()["error"]["code"] == "unknown_filter", path
        known = client.post("/search", json={"query": query, "filters": {"theme": "financement"}})
        assert known.status_code == 200


def test_a_k_out_of_range_is_refused_by_the_service(service) -> None:
    from rag.errors import ApiError

    with pytest.raises(ApiError, match="k must be between"):
        service.search(Q(SOLDE, 0))


def test_a_short_new_question_the_faq_has_no_word_of_is_not_read_with_the_one_before(make_service) -> None:
    service = make_service()
    previous = ["Comment demander le paiement du solde ?"]
    unrelated = service.search(Q("Quelle est la recette de la tarte tatin ?", history=previous))
    assert unrelated.resolved is None and all(h.id != "solde" for h in unrelated.results[:1])
    follow_up = service.search(Q("Et pour la radiologie ?", history=previous))  # a connector: a follow-up
    assert follow_up.resolved == "Comment demander le paiement du solde ? Et pour la radiologie ?"
