"""``POST /feedback``: "Cette réponse vous a-t-elle été utile ?"."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Depends

from rag.errors import ApiError, UnknownAnswer
from rag.http.deps import ServicesDep, guard, json_body
from rag.http.schemas import FeedbackRequest

router = APIRouter(tags=["feedback"], dependencies=[Depends(guard), Depends(json_body)])


@router.post("/feedback")
async def feedback(body: FeedbackRequest, services: ServicesDep) -> dict[str, Any]:
    """Record whether an answer was useful; giving it again replaces the earlier one. An id this service never
    issued is refused (404) before anything is asked of the store or kept."""
    if not services.ids.valid(body.answer_id):
        raise UnknownAnswer(body.answer_id)
    comment = body.comment.strip() if body.comment else None
    limit = services.settings.http.max_comment_chars
    if comment and len(comment) > limit:
        raise ApiError(422, "comment_too_long", f"the comment is over {limit} characters")
    updated = await anyio.to_thread.run_sync(services.recorder.add_feedback, body.answer_id, body.helpful, comment)
    services.metrics.feedback.labels(str(body.helpful).lower()).inc()
    # spooled: kept on this replica's disk while the store is away, written to it once it answers
    return {"answer_id": body.answer_id, "helpful": body.helpful, "updated": bool(updated), "spooled": updated is None}
