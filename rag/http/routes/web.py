"""The web page: the assistant (the widget, inline) and, for browsers without JavaScript, a plain form whose
question and vote are posted here and answered by a page rendered on the server."""

from __future__ import annotations

import time
from urllib.parse import parse_qs

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from rag.channels.respond import clean_query
from rag.errors import ApiError
from rag.http.deps import QueryDep, ServicesDep, base_url, note
from rag.models import Question
from rag.web import SECURITY_HEADERS, admin_page, index_page, privacy_notice
from rag.web.plain import MESSAGES, plain_answer, plain_form

router = APIRouter(include_in_schema=False)
FORM = "application/x-www-form-urlencoded"


def _page(services: ServicesDep, plain: str, status: int = 200) -> HTMLResponse:
    settings = services.settings
    privacy = privacy_notice(settings.http.store_questions, settings.http.retention_days)
    return HTMLResponse(index_page(settings.answer.faq_name, privacy, plain), status, headers=SECURITY_HEADERS)


async def _form(request: Request) -> dict[str, str]:
    """The posted form's fields (the first value of each); another kind of body is refused."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        raise ApiError(415, "unsupported_media_type", f"post the form as {FORM}")
    try:
        fields = parse_qs((await request.body()).decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "bad_form", "the form could not be read; send it again from the page") from None
    return {name: values[0] for name, values in fields.items()}


@router.get("/")
async def page(services: ServicesDep, avis: str = "") -> HTMLResponse:
    """The page; its plain form is what browsers without JavaScript show."""
    return _page(services, plain_form(notice=MESSAGES["merci"] if avis == "merci" else ""))


@router.post("/")
async def ask_plain(request: Request, services: ServicesDep) -> HTMLResponse:
    """A question posted by the plain form: the page again, with the answer rendered here."""
    services.access.check_public(request)
    started = time.perf_counter()
    typed = (await _form(request)).get("q", "")
    try:
        query = clean_query(typed, services.settings.http.max_query_chars)
    except ApiError as exc:
        notice = MESSAGES["empty"] if exc.code == "empty_query" else str(exc)
        return _page(services, plain_form(typed[:2000], notice), exc.status)
    note(request, query)
    responder = services.responder
    result = await anyio.to_thread.run_sync(responder.find, Question(query=query), "/", base_url(request))
    note(request, abstained=result.abstained)
    reply = await anyio.to_thread.run_sync(responder.reply, result, "page", started)
    return _page(services, plain_answer(reply.answer, reply.answer_id) + plain_form())


@router.post("/page/vote", response_model=None)
async def vote_plain(request: Request, services: ServicesDep) -> HTMLResponse | RedirectResponse:
    """A vote posted by the plain form: recorded, then back to the page (303) with a thank-you."""
    services.access.check_public(request)
    form = await _form(request)
    answer_id, helpful = form.get("answer_id", ""), form.get("helpful")
    if helpful not in {"oui", "non"} or not services.ids.valid(answer_id):
        return _page(services, plain_form(notice=MESSAGES["unknown"]), 404)
    await anyio.to_thread.run_sync(services.recorder.add_feedback, answer_id, helpful == "oui", None)
    services.metrics.feedback.labels(str(helpful == "oui").lower()).inc()
    home = request.scope.get("root_path", "").rstrip("/")  # a collection's own page, under its mount
    return RedirectResponse(f"{home}/?avis=merci", status_code=303)


@router.get("/admin")
async def admin(service: QueryDep) -> HTMLResponse:
    """The gap report's page; like the admin API, it exists only when an admin token is set."""
    if not (service.settings.http.admin_token or service.settings.http.admin_tokens):
        raise ApiError(404, "not_found", "no such route; see /docs for the API")
    return HTMLResponse(admin_page(service.settings.answer.faq_name), headers=SECURITY_HEADERS)
