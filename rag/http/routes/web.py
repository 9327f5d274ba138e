"""The web page."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ...web import SECURITY_HEADERS, index_page
from ..deps import ServiceDep

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page(service: ServiceDep) -> HTMLResponse:
    """The page, with the FAQ's name, example questions and facets (once the index is loaded)."""
    answer = service.settings.answer
    facets = service.index.facets if service.ready else {}
    html = index_page(answer.faq_name, answer.support_url, service.examples(), facets)
    return HTMLResponse(html, headers=SECURITY_HEADERS)
