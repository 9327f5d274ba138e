"""Admin routes (they exist only when ``RAG_ADMIN_TOKEN`` is set): reindex and feedback."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request

from ...errors import ApiError
from ..deps import StateDep, get_state


async def admin(request: Request, state: StateDep) -> None:
    state.access.check_admin(request)


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(get_state), Depends(admin)])


@router.post("/reindex", status_code=202)
async def reindex(state: StateDep) -> dict[str, Any]:
    """Rebuild the index from the configured sources in the background, then swap it in."""
    if not state.reindexer.start():
        raise ApiError(409, "reindex_running", "a rebuild is already running; see GET /admin/reindex")
    return {"status": "started"}


@router.get("/reindex")
async def reindex_status(state: StateDep) -> dict[str, Any]:
    return state.reindexer.status()


@router.get("/feedback")
async def admin_feedback(state: StateDep) -> dict[str, Any]:
    """Feedback statistics and the questions to label, as ``rag feedback`` prints them."""
    stats = await anyio.to_thread.run_sync(state.store.stats)
    return {"stats": stats, "to_label": await anyio.to_thread.run_sync(state.store.export_queries)}
