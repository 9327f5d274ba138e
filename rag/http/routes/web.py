"""The web page."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from rag.errors import ApiError
from rag.http.deps import QueryDep
from rag.web import SECURITY_HEADERS, admin_page, index_page, privacy_notice

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page(service: QueryDep) -> HTMLResponse:
    """The page: the assistant (the widget, inline), which reads the FAQ's name, examples and facets itself."""
    http = service.settings.http
    html = index_page(service.settings.answer.faq_name, privacy_notice(http.store_questions, http.retention_days))
    return HTMLResponse(html, headers=SECURITY_HEADERS)


@router.get("/admin")
async def admin(service: QueryDep) -> HTMLResponse:
    """The gap report's page; like the admin API, it exists only when an admin token is set."""
    if not service.settings.http.admin_token:
        raise ApiError(404, "not_found", "no such route; see /docs for the API")
    return HTMLResponse(admin_page(service.settings.answer.faq_name), headers=SECURITY_HEADERS)
