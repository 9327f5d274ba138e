"""``/v1/chat/completions`` as chat front ends call it: Open WebUI's and LibreChat's background prompts (a title,
tags, follow-ups) answered without being searched or recorded, ``null`` for optional fields, a long conversation."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from fastapi.testclient import TestClient

from rag.config import Settings
from rag.http import create_app
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

from .servers import wait_until

SOLDE = "Comment demander le paiement du solde ?"
HISTORY = f"<chat_history>\nUSER: {SOLDE}\nASSISTANT: La demande se dépose auprès de l'ASP [1].\n</chat_history>"
OPEN_WEBUI_TITLE = (
    "### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the chat history.\n"
    "### Guidelines:\n- Write the title in the chat's primary language.\n"
    '### Output:\nJSON format: { "title": "your concise title here" }\n'
    f"### Chat History:\n{HISTORY}"
)
OPEN_WEBUI_TAGS = (
    "### Task:\nGenerate 1-3 broad tags categorizing the main themes of the chat history.\n"
    '### Output:\nJSON format: { "tags": ["tag1", "tag2", "tag3"] }\n'
    f"### Chat History:\n{HISTORY}"
)
OPEN_WEBUI_FOLLOW_UPS = (
    "### Task:\nSuggest 3-5 relevant follow-up questions or prompts that the user might naturally ask next.\n"
    '### Output:\nJSON format: { "follow_ups": ["Question 1?", "Question 2?"] }\n'
    f"### Chat History:\n{HISTORY}"
)
LIBRECHAT_TITLE = (
    "Please generate a concise, 5-word-or-less title for the conversation, using its same language, with no "
    f"punctuation.\n\n||>User:\n{SOLDE}\n||>Response:\nLa demande se dépose auprès de l'ASP.\n\n||>Title:"
)


def _client(settings: Settings, hash_embedder) -> TestClient:
    service = QueryService(settings, hash_embedder)
    Publisher(service).build()
    return TestClient(create_app(settings, service))


def _recorded(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return [row[0] for row in conn.execute("SELECT query FROM answers")]
        except sqlite3.OperationalError:
            return []


def _ask(client: TestClient, text: str, **more) -> dict:
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": text}], **more})
    assert response.status_code == 200, response.text
    return response.json()


def test_front_ends_background_prompts_are_answered_and_never_recorded(tiny_settings: Settings, hash_embedder) -> None:
    with _client(tiny_settings, hash_embedder) as client:
        title = json.loads(_ask(client, OPEN_WEBUI_TITLE)["choices"][0]["message"]["content"])
        assert title == {"title": "Comment demander le paiement du solde"}
        assert json.loads(_ask(client, OPEN_WEBUI_TAGS)["choices"][0]["message"]["content"]) == {"tags": []}
        follow = _ask(client, OPEN_WEBUI_FOLLOW_UPS, stream=None, n=None)
        assert json.loads(follow["choices"][0]["message"]["content"]) == {"follow_ups": []}
        librechat = _ask(client, LIBRECHAT_TITLE)["choices"][0]["message"]["content"]
        assert librechat == "Comment demander le paiement du solde"
        streamed = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": OPEN_WEBUI_TITLE}], "stream": True}
        )
        events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
        assert streamed.status_code == 200 and events[-1] == "[DONE]"
        content = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
        assert json.loads(content) == {"title": "Comment demander le paiement du solde"}
        answered = _ask(client, SOLDE)  # a user's question: recorded, after the others (the recorder keeps order)
        assert answered["citations"]
    db = _feedback_db(tiny_settings)
    wait_until(lambda: _recorded(db))
    assert _recorded(db) == [SOLDE]


def _feedback_db(settings: Settings) -> Path:
    for group in settings.model_dump().values():
        if isinstance(group, dict) and group.get("feedback_db"):
            return Path(group["feedback_db"])
    raise AssertionError("no feedback_db setting")


def test_a_long_conversation_is_read_and_nulls_are_defaults(tiny_settings: Settings, hash_embedder) -> None:
    """Open WebUI sends the whole conversation each time: 600 turns (beyond the 64 kB of other routes) are taken,
    only the last user messages read; ``null`` stands for the default of an optional field."""
    turns = []
    for n in range(300):
        turns += [{"role": "user", "content": f"Question {n} " + "x" * 200}, {"role": "assistant", "content": "y"}]
    turns.append({"role": "user", "content": SOLDE})
    body = {"model": None, "messages": turns, "stream": None, "n": None, "temperature": None, "max_tokens": None}
    assert len(json.dumps(body)) > 64_000
    with _client(tiny_settings, hash_embedder) as client:
        reply = client.post("/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        assert reply.json()["citations"]
        refused = client.post("/v1/chat/completions", json={**body, "n": 2})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "unsupported_n"
