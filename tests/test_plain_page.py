"""The page without JavaScript, over HTTP: the plain form's question answered by a page rendered on the server,
its vote stored, bad input a 4xx page that changes nothing, and what users wrote always escaped."""

from __future__ import annotations

import re
import sqlite3

from fastapi.testclient import TestClient

from rag.config import Settings
from rag.http import create_app
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

from .servers import wait_until

SOLDE = "Comment demander le paiement du solde ?"


def _client(settings: Settings, hash_embedder) -> TestClient:
    service = QueryService(settings, hash_embedder)
    Publisher(service).build()
    return TestClient(create_app(settings, service))


def _votes(settings: Settings) -> int:
    if not settings.feedback_path.exists():
        return 0
    with sqlite3.connect(settings.feedback_path) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_a_posted_question_gets_a_cited_answer_and_its_vote_is_stored(tiny_settings: Settings, hash_embedder) -> None:
    with _client(tiny_settings, hash_embedder) as client:
        page = client.get("/")
        assert page.status_code == 200 and 'action="./"' in page.text and "data-plain" in page.text
        answered = client.post("/", data={"q": SOLDE})
        assert answered.status_code == 200 and "Content-Security-Policy" in answered.headers
        assert '<a class="cite" href="#source-1"' in answered.text and 'id="source-1"' in answered.text
        assert "/entries/solde" in answered.text
        answer_id = re.search(r'name="answer_id" value="([^"]+)"', answered.text).group(1)
        voted = client.post("/page/vote", data={"answer_id": answer_id, "helpful": "non"}, follow_redirects=False)
        assert voted.status_code == 303 and voted.headers["location"] == "/?avis=merci"
        assert "Merci pour votre avis" in client.get("/?avis=merci").text
    wait_until(lambda: _votes(tiny_settings) == 1)


def test_bad_input_is_a_page_that_says_so_and_changes_nothing(tiny_settings: Settings, hash_embedder) -> None:
    with _client(tiny_settings, hash_embedder) as client:
        empty = client.post("/", data={"q": "   "})
        assert empty.status_code == 422 and "Écrivez une question" in empty.text
        hostile = client.post("/", data={"q": "<script>alert(1)</script> {plain} solde"})
        assert hostile.status_code == 200 and "<script>alert" not in hostile.text and "&lt;script&gt;" in hostile.text
        forged = client.post("/page/vote", data={"answer_id": "f" * 40, "helpful": "oui"})
        assert forged.status_code == 404 and "posez la question à nouveau" in forged.text
        odd = client.post("/page/vote", data={"answer_id": "x", "helpful": "peut-être"})
        assert odd.status_code == 404
        as_json = client.post("/", json={"q": SOLDE})
        assert as_json.status_code == 415 and as_json.json()["error"]["code"] == "unsupported_media_type"
    assert _votes(tiny_settings) == 0


def test_a_question_the_faq_does_not_answer_says_so(tiny_settings: Settings, hash_embedder) -> None:
    settings = tiny_settings.replace(min_confidence=0.999999, suggest_confidence=0.999998)
    with _client(settings, hash_embedder) as client:
        declined = client.post("/", data={"q": "zzz qwxv ptlk"})
    assert declined.status_code == 200 and "La FAQ ne répond pas à cette question" in declined.text
    assert 'class="sources"' not in declined.text
