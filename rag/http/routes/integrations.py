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
    channels = services.settings.channels
    bot, secret, url_token = services.chatwoot, channels.chatwoot_webhook_secret, channels.chatwoot_url_token
    if bot is None:
        raise ApiError(404, "not_found", "no such route; set RAG_CHATWOOT_URL and RAG_CHATWOOT_BOT_TOKEN")
    if not (secret or url_token):
        advice = "set RAG_CHATWOOT_WEBHOOK_SECRET (the bot's secret in Chatwoot): events are refused until then"
        raise ApiError(503, "chatwoot_unsecured", advice)
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    if not authentic(secret, url_token, body, headers, dict(request.query_params)):
        advice = "this event is not signed with the bot's secret (RAG_CHATWOOT_WEBHOOK_SECRET) nor sent with its token"
        raise ApiError(401, "invalid_signature", advice)
    try:
        event = json.loads(body)
    except ValueError:
        raise ApiError(400, "malformed_json", "the event is not valid JSON") from None
    if not isinstance(event, dict):
        raise ApiError(422, "invalid_event", "the event must be a JSON object")
    return {"accepted": bot.accept(event, headers.get("x-chatwoot-delivery"))}
