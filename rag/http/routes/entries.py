"""``GET /entries/{id}``: a whole FAQ entry, as JSON or as a page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from rag.errors import ApiError
from rag.http.deps import QueryDep, base_url, guard
from rag.http.schemas import EntryResponse
from rag.web import PER_PAGE, SECURITY_HEADERS, entries_page, entry_page

router = APIRouter(tags=["entries"], dependencies=[Depends(guard)])


@router.get("/facets")
async def facets(service: QueryDep) -> dict[str, dict[str, int]]:
    """The FAQ's metadata fields usable as ``filters`` in /search and /ask, with their values and how many
    entries have each."""
    return service.index.facets


@router.get("/entries")
async def entries(request: Request, service: QueryDep, page: int = Query(1, ge=1)) -> Any:
    """Every FAQ entry, a page at a time: question and link (JSON, or an HTML page for browsers)."""
    all_entries = service.index.entries
    pages = max(1, -(-len(all_entries) // PER_PAGE))
    if page > pages:
        raise ApiError(404, "no_such_page", f"there are {pages} pages of entries")
    shown = all_entries[(page - 1) * PER_PAGE : page * PER_PAGE]
    if _wants_html(request):
        html = entries_page(service.settings.answer.faq_name, shown, page, pages)
        return HTMLResponse(html, headers=SECURITY_HEADERS)
    base = base_url(request)
    rows = [{"id": e.id, "question": e.question, "url": service.entry_link(e.id, e.url, base)} for e in shown]
    return {"page": page, "pages": pages, "total": len(all_entries), "entries": rows}


@router.get("/entries/{entry_id}", response_model=EntryResponse)
async def entry(entry_id: str, request: Request, service: QueryDep) -> Any:
    """The whole FAQ entry; ``url`` is its own link, or its page in this service."""
    found = service.index.entry(entry_id)
    if found is None:
        raise ApiError(404, "unknown_entry", f"no FAQ entry has the id '{entry_id}'")
    link = service.entry_link(found.id, found.url, base_url(request))
    body = EntryResponse(**found.model_dump(exclude={"url"}), url=link)
    if _wants_html(request):
        return HTMLResponse(entry_page(body), headers=SECURITY_HEADERS)
    return body


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]
