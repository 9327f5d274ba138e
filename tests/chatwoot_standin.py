"""A loopback stand-in for the part of Chatwoot's API an agent bot calls (``/api/v1/accounts/{account}/
conversations/{id}`` and its ``/messages`` and ``/toggle_status``), with the shapes Chatwoot gives, recording
every call; and webhook events shaped and signed as Chatwoot sends them to an agent bot."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TOKEN = "bot-token-123"
SECRET = "webhook-secret-456"
ACCOUNT = 7


@dataclass
class Conversation:
    id: int
    status: str = "pending"
    messages: list[dict[str, Any]] = field(default_factory=list)


class ChatwootStandIn:
    """Conversations in memory; ``fail`` makes the next N calls to a path suffix answer 503."""

    def __init__(self) -> None:
        self.conversations: dict[int, Conversation] = {}
        self.calls: list[tuple[str, str, dict[str, Any] | None]] = []
        self.fail: dict[str, int] = {}  # "messages" | "toggle_status" | "conversation" -> calls to fail
        self._ids = itertools.count(1000)
        base = "/api/v1/accounts/{account:int}/conversations/{conversation:int}"
        self.app = Starlette(
            routes=[
                Route(base, self.show, methods=["GET"]),
                Route(base + "/messages", self.list_messages, methods=["GET"]),
                Route(base + "/messages", self.create_message, methods=["POST"]),
                Route(base + "/toggle_status", self.toggle, methods=["POST"]),
            ]
        )

    def conversation(self, conversation_id: int, status: str = "pending") -> Conversation:
        found = self.conversations[conversation_id] = Conversation(conversation_id, status)
        return found

    def posted(self, conversation_id: int, private: bool | None = None) -> list[dict[str, Any]]:
        """The messages the bot created in a conversation (public, private or both)."""
        return [
            body
            for method, path, body in self.calls
            if method == "POST"
            and path.endswith(f"/conversations/{conversation_id}/messages")
            and (private is None or bool(body.get("private")) == private)
        ]

    def toggles(self, conversation_id: int) -> list[str]:
        return [
            body["status"]
            for method, path, body in self.calls
            if method == "POST" and path.endswith(f"/conversations/{conversation_id}/toggle_status")
        ]

    async def _checked(self, request: Request, kind: str) -> tuple[Conversation | None, JSONResponse | None]:
        body = await request.json() if request.method == "POST" else None
        self.calls.append((request.method, request.url.path, body))
        if request.headers.get("api_access_token") != TOKEN:
            return None, JSONResponse({"error": "Invalid Access Token"}, status_code=401)
        if self.fail.get(kind, 0) > 0:
            self.fail[kind] -= 1
            return None, JSONResponse({"error": "Service Unavailable"}, status_code=503)
        found = self.conversations.get(request.path_params["conversation"])
        if found is None or request.path_params["account"] != ACCOUNT:
            return None, JSONResponse({"error": "Resource could not be found"}, status_code=404)
        return found, None

    async def show(self, request: Request) -> JSONResponse:
        found, refused = await self._checked(request, "conversation")
        if refused:
            return refused
        return JSONResponse({"id": found.id, "account_id": ACCOUNT, "inbox_id": 1, "status": found.status})

    async def list_messages(self, request: Request) -> JSONResponse:
        found, refused = await self._checked(request, "list")
        if refused:
            return refused
        return JSONResponse({"meta": {"labels": [], "contact_id": 1}, "payload": found.messages})

    async def create_message(self, request: Request) -> JSONResponse:
        found, refused = await self._checked(request, "messages")
        if refused:
            return refused
        body = self.calls[-1][2] or {}
        message = {
            "id": next(self._ids),
            "content": body.get("content"),
            "conversation_id": found.id,
            "message_type": 1,
            "private": bool(body.get("private")),
            "created_at": int(time.time()),
            "sender": {"id": 3, "name": "FAQ bot", "type": "agent_bot"},
        }
        found.messages.append(message)
        return JSONResponse(message)

    async def toggle(self, request: Request) -> JSONResponse:
        found, refused = await self._checked(request, "toggle_status")
        if refused:
            return refused
        found.status = (self.calls[-1][2] or {}).get("status", "open")
        return JSONResponse({"meta": {}, "payload": {"success": True, "current_status": found.status}})

    def contact_says(self, conversation_id: int, text: str) -> dict[str, Any]:
        """A contact's message, kept in the conversation, and the webhook event Chatwoot sends the bot for it."""
        found = self.conversations[conversation_id]
        message_id = next(self._ids)
        found.messages.append(
            {
                "id": message_id,
                "content": text,
                "message_type": 0,
                "private": False,
                "created_at": int(time.time()),
                "sender": {"id": 42, "name": "Camille", "type": "contact"},
            }
        )
        return message_event(message_id, text, found)

    def agent_says(self, conversation_id: int, text: str) -> dict[str, Any]:
        """A human agent's reply, and its event (an outgoing message from a user)."""
        found = self.conversations[conversation_id]
        message_id = next(self._ids)
        sender = {"id": 5, "name": "Agent Dupont", "type": "user"}
        found.messages.append(
            {"id": message_id, "content": text, "message_type": 1, "private": False, "sender": sender}
        )
        event = message_event(message_id, text, found)
        return event | {"message_type": "outgoing", "sender": {**sender, "email": "agent@example.org"}}


def message_event(message_id: int, text: str, conversation: Conversation) -> dict[str, Any]:
    """A ``message_created`` event as Chatwoot posts it to an agent bot's webhook (Message#webhook_data)."""
    return {
        "event": "message_created",
        "id": message_id,
        "content": text,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "message_type": "incoming",
        "content_type": "text",
        "content_attributes": {},
        "source_id": None,
        "private": False,
        "sender": {"id": 42, "name": "Camille", "type": "contact", "account": {"id": ACCOUNT, "name": "ANS"}},
        "inbox": {"id": 1, "name": "Site web"},
        "conversation": {
            "id": conversation.id,
            "inbox_id": 1,
            "status": conversation.status,
            "channel": "Channel::WebWidget",
            "can_reply": True,
            "contact_inbox": {"source_id": str(uuid.uuid4())},
            "meta": {"sender": {"id": 42, "name": "Camille", "type": "contact"}, "assignee": None},
        },
        "account": {"id": ACCOUNT, "name": "ANS"},
    }


def signed_delivery(event: dict[str, Any], secret: str = SECRET, delivery: str | None = None) -> dict[str, Any]:
    """The body and headers of a delivery, signed as Chatwoot signs agent bot webhooks."""
    body = json.dumps(event).encode()
    timestamp = str(int(time.time()))
    signature = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Chatwoot-Timestamp": timestamp,
        "X-Chatwoot-Signature": signature,
        "X-Chatwoot-Delivery": delivery or str(uuid.uuid4()),
    }
    return {"content": body, "headers": headers}
