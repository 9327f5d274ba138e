"""Admin routes (they exist only when ``RAG_ADMIN_TOKEN`` is set): reindex, feedback, the gap report and
curation."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse

from rag.corpus.curated import Curation
from rag.errors import ApiError, ConfigError
from rag.http.deps import ServicesDep, base_url, get_services, json_body
from rag.publishing.gap_resolution import Resolution


async def admin(request: Request, services: ServicesDep) -> None:
    services.access.check_admin(request)


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(get_services), Depends(admin)])


@router.post("/reindex", status_code=202)
async def reindex(services: ServicesDep) -> dict[str, Any]:
    """Rebuild the index from the configured sources in the background, then swap it in."""
    if not services.reindexer.start():
        raise ApiError(409, "reindex_running", "a rebuild is already running; see GET /admin/reindex")
    return {"status": "started"}


@router.get("/reindex")
async def reindex_status(services: ServicesDep) -> dict[str, Any]:
    return services.reindexer.status()


@router.get("/feedback")
async def admin_feedback(services: ServicesDep) -> dict[str, Any]:
    """Feedback statistics and the questions to label, as ``rag feedback`` prints them."""
    stats = await anyio.to_thread.run_sync(services.store.votes.stats)
    return {"stats": stats, "to_label": await anyio.to_thread.run_sync(services.store.votes.to_label)}


@router.get("/sources")
async def sources(services: ServicesDep) -> dict[str, Any]:
    """The sources' quality report: duplicates, conflicts, empty or overlong answers, pages that gave nothing or
    could not be read, stale pages; and the last scheduled sync of the web sources."""
    findings = await anyio.to_thread.run_sync(services.publisher.source_report)
    return {"findings": [f.as_dict() for f in findings], "count": len(findings), "last_sync": services.web_sync.last}


@router.get("/gaps")
async def gaps(request: Request, services: ServicesDep, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    """The gap report: questions the FAQ did not answer well, grouped by meaning, those asked most first."""
    found = await anyio.to_thread.run_sync(services.curator.gaps, base_url(request), limit)
    services.metrics.gaps.set(len(found))
    return {
        "gaps": [gap.model_dump() for gap in found[:limit]],
        "count": len(found),
        "questions": sum(gap.size for gap in found),
        "distance": round(services.curator.finder.distance(services.query.index), 4),
    }


@router.post("/gaps/{gap}/resolve", dependencies=[Depends(json_body)])
async def resolve(gap: str, body: Resolution, request: Request, services: ServicesDep) -> dict[str, Any]:
    """Resolve a gap (or one logged question, by its answer id): a new entry, phrasings of an entry, out of scope,
    or dismissed. A new index version is published at once and the questions join the golden eval file."""
    return await anyio.to_thread.run_sync(services.curator.resolve, gap, body, base_url(request))


NDJSON = {"application/x-ndjson": {"schema": {"type": "string"}}}


@router.get("/curation", responses={200: {"content": NDJSON, "description": "one curated item per line"}})
async def export_curation(services: ServicesDep) -> PlainTextResponse:
    """Every curated item, as JSONL (for review in version control; `rag curation import` reads it back)."""
    text = await anyio.to_thread.run_sync(services.curator.export)
    return PlainTextResponse(text, media_type="application/x-ndjson")


@router.post("/curation", openapi_extra={"requestBody": {"content": NDJSON, "required": True}})
async def import_curation(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Import curated items (a JSONL export) and publish a new index version with them."""
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        curation = Curation.parse(body)
    except ConfigError as exc:
        raise ApiError(422, "invalid_curation", str(exc)) from None
    return await anyio.to_thread.run_sync(services.curator.import_, curation)
