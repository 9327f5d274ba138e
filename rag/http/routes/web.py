"""The web page."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ...web import SECURITY_HEADERS, index_page

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> HTMLResponse:
    return HTMLResponse(index_page(), headers=SECURITY_HEADERS)
