"""``POST /integrations/chatwoot``: the webhook of the Chatwoot agent bot (it exists when ``RAG_CHATWOOT_URL``
and ``RAG_CHATWOOT_BOT_TOKEN`` are set)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request

from rag.channels.chatwoot import authentic
from rag.errors import ApiError
from rag.http.deps import ServicesDep

router = APIRouter(prefix="/integrations", tags=["integrations"])


@router.post("/chatwoot")
async def chatwoot(request: Request, services: ServicesDep) -> dict[str, Any]:
    """One event of Chatwoot's agent bot webhook: checked, acknowledged at once, answered in the background."""
    bot, secret = services.chatwoot, services.settings.channels.chatwoot_webhook_secret
    if bot is None:
        raise ApiError(404, "not_found", "no such route; set RAG_CHATWOOT_URL and RAG_CHATWOOT_BOT_TOKEN")
    if not secret:
        raise ApiError(503, "chatwoot_unsecured", "set RAG_CHATWOOT_WEBHOOK_SECRET: unsigned events are refused")
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    if not authentic(secret, body, headers, dict(request.query_params)):
        raise ApiError(401, "invalid_signature", "this event is not signed by Chatwoot with the configured secret")
    try:
        event = json.loads(body)
    except ValueError:
        raise ApiError(400, "malformed_json", "the event is not valid JSON") from None
    if not isinstance(event, dict):
        raise ApiError(422, "invalid_event", "the event must be a JSON object")
    return {"accepted": bot.accept(event, headers.get("x-chatwoot-delivery"))}
