"""Where questions are asked besides the API: the widget (its script and its settings) and the handoff of a
conversation to a person."""

from __future__ import annotations

import logging
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from rag.channels.handoff import HandoffRequest, HandoffUnavailable, transcript
from rag.channels.widget import origin_of
from rag.corpus.sources import safe_url
from rag.errors import ApiError, UnknownAnswer
from rag.http.deps import ServicesDep, base_url, guard, json_body
from rag.web import FACET_LABELS, STATIC_DIR

log = logging.getLogger("rag.http.channels")
router = APIRouter(tags=["channels"])


@router.post("/handoff", status_code=202, dependencies=[Depends(guard), Depends(json_body)])
async def handoff(body: HandoffRequest, request: Request, services: ServicesDep) -> dict[str, Any]:
    """Send a conversation to the helpdesk (``RAG_HANDOFF_WEBHOOK``): its questions, answers, cited entries,
    confidence and why, as the service recorded them for the answer ids given, with the user's contact and message,
    so the ticket opens with its context. 404 when no webhook is configured, or for an answer id never given."""
    if services.handoffs is None:
        raise ApiError(
            404, "handoff_off", "no helpdesk webhook is configured (RAG_HANDOFF_WEBHOOK); use the support link"
        )
    for answer_id in body.answer_ids:
        if not services.ids.valid(answer_id):
            raise UnknownAnswer(answer_id)
    query, base = services.query, base_url(request)

    def cite(entry_id: str) -> dict[str, str | None]:
        entry = query.index.entry(entry_id) if query.ready else None
        return {
            "id": entry_id,
            "question": entry.question if entry else None,
            "url": query.entry_link(entry_id, entry.url if entry else None, base),
        }

    body = await anyio.to_thread.run_sync(transcript, body, services.recorder, cite)
    try:
        await anyio.to_thread.run_sync(services.handoffs.send, body)
    except HandoffUnavailable:
        services.metrics.handoffs.labels(body.reason, "failed").inc()
        raise
    services.metrics.handoffs.labels(body.reason, "sent").inc()
    log.info("handed a conversation of %d questions to the helpdesk (%s)", len(body.turns), body.reason)
    return {"sent": True, "turns": len(body.turns)}


@router.get("/widget.js", include_in_schema=False)
async def widget_script() -> FileResponse:
    """The widget, for any site: ``<script src="…/widget.js" defer></script>``."""
    headers = {"Cache-Control": "public, max-age=300", "Cross-Origin-Resource-Policy": "cross-origin"}
    return FileResponse(STATIC_DIR / "widget.js", media_type="text/javascript", headers=headers)


@router.get("/widget/config")
async def widget_config(request: Request, services: ServicesDep) -> dict[str, Any]:
    """What the widget shows (the FAQ's name, example questions, facets, the support link, whether a
    conversation can be handed off) and, when API keys are on, a public token for its site: it may ask, vote
    and hand off from that site only, for ``token_seconds`` (the widget asks for a new one before)."""
    service, settings = services.query, services.settings
    own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
    origin = origin_of(request.headers.get("origin", "")) or own
    config: dict[str, Any] = {
        "faq_name": settings.answer.faq_name,
        "examples": service.examples(),
        "support_url": settings.answer.support_url if safe_url(settings.answer.support_url) else None,
        "handoff_form": services.handoffs is not None,
        "facets": service.index.facets if service.ready else {},
        "facet_labels": FACET_LABELS,
        "token": None,
        "token_seconds": None,
    }
    if settings.http.api_keys:
        config["token"] = services.tokens.issue(origin)
        config["token_seconds"] = services.tokens.seconds
    return config
