"""``GET /entries/{id}``: a whole FAQ entry, as JSON or as a page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from ...errors import ApiError
from ...service import entry_url
from ...web import SECURITY_HEADERS, entry_page
from ..deps import ServiceDep, base_url, guard
from ..schemas import EntryResponse

router = APIRouter(tags=["entries"], dependencies=[Depends(guard)])


@router.get("/facets")
async def facets(service: ServiceDep) -> dict[str, dict[str, int]]:
    """The FAQ's metadata fields usable as ``filters`` in /search and /ask, with their values and how many
    entries have each."""
    return service.index.facets()


@router.get("/entries/{entry_id}", response_model=EntryResponse)
async def entry(entry_id: str, request: Request, service: ServiceDep) -> Any:
    """The whole FAQ entry; ``url`` is its own link, or its page in this service."""
    found = service.index.entry(entry_id)
    if found is None:
        raise ApiError(404, "unknown_entry", f"no FAQ entry has the id '{entry_id}'")
    link = found.url or entry_url(found.id, service.settings.answer.public_url or base_url(request))
    body = EntryResponse(**found.model_dump(exclude={"url"}), url=link)
    if _wants_html(request):
        return HTMLResponse(entry_page(body), headers=SECURITY_HEADERS)
    return body


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]
