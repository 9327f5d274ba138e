"""The widget on another site, in headless Chromium: a host page on its own loopback origin holds only the
script tag (and, on one page, styles hostile to every element); the widget opens, streams a cited answer, takes
a vote and a follow-up, hands a declined conversation to a helpdesk webhook on loopback, works with the keyboard
alone, passes axe, and gets no answer on a site that is not allowed."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from rag.config import Settings
from rag.http import create_app

from .conftest import ARTIFACTS
from .servers import running, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SOLDE = "Comment déposer une demande de solde pour le couloir Hôpital ?"
FOLLOW_UP = "Et pour la radiologie ?"
OFF_TOPIC = "Quelle est la recette de la tarte tatin ?"
USEFUL = "Cette réponse vous a-t-elle été utile ?"
DECLINED = "La FAQ ne répond pas à cette question."
# what a site's own styles may do to every element: none of it may reach the widget
HOSTILE = """
* { font-size: 31px !important; line-height: 3 !important; color: #f0f !important; margin: 40px !important;
    box-sizing: content-box !important; }
button { display: none !important; position: absolute !important; left: -9999px !important; }
div, section, form, textarea { padding: 60px !important; width: 50px !important; }
"""
PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>Site partenaire</title><style>{style}</style></head>
<body><header><a href="#contenu">Aller au contenu</a></header>
<main id="contenu"><h1>Site partenaire</h1><p>Des informations pour les éditeurs.</p></main>
<script src="{service}/widget.js" defer data-title="Assistant de la FAQ Ségur"></script>
</body></html>"""


@dataclass
class Helpdesk:
    received: list[dict[str, Any]] = field(default_factory=list)

    async def receive(self, request: Request) -> JSONResponse:
        self.received.append(await request.json())
        return JSONResponse({"ticket": len(self.received)}, status_code=201)


@dataclass
class Sites:
    service: str
    host: str  # allowed
    stranger: str  # the same pages on an origin that is not allowed
    helpdesk: Helpdesk
    db: Path


@pytest.fixture(scope="module")
def sites(tmp_path_factory, segur_index: Path) -> Iterator[Sites]:
    folder = tmp_path_factory.mktemp("widget")
    holder: dict[str, str] = {}

    async def page(request: Request) -> HTMLResponse:
        style = HOSTILE if request.path_params["kind"] == "hostile" else ""
        html = PAGE.format(style=style, service=holder["service"])
        if "bare" in request.query_params:  # the same page without the widget
            html = html.split("<script src=")[0] + "</body></html>"
        return HTMLResponse(html)

    desk = Helpdesk()
    host_app = Starlette(routes=[Route("/{kind}.html", page)])
    desk_app = Starlette(routes=[Route("/hook", desk.receive, methods=["POST"])])
    with running(host_app, ready_path=None) as host, running(desk_app, ready_path=None) as hook:
        settings = Settings(
            index_dir=segur_index,
            feedback_db=folder / "fb.sqlite3",
            support_url="https://support.example.org/faq",
            widget_origins=[host],
            handoff_webhook=hook + "/hook",
        )
        with running(create_app(settings), ready_path="/ready") as service:
            holder["service"] = service
            stranger = host.replace("127.0.0.1", "localhost")
            yield Sites(service, host, stranger, desk, settings.feedback_path)


def _widget(page):
    return page.locator("faq-assistant")


def _ask(page, question: str, done: str) -> None:
    widget = _widget(page)
    widget.get_by_label("Votre question").fill(question)
    widget.get_by_label("Votre question").press("Enter")
    widget.get_by_text(done).last.wait_for(timeout=30_000)


def _open(page, url: str) -> None:
    page.goto(url)
    _widget(page).get_by_role("button", name="Une question ?").click()
    _widget(page).get_by_label("Votre question").wait_for()


def _votes(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]


def test_ask_cite_vote_follow_up_and_hand_off_from_another_site(sites: Sites, browser) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    asked: list[dict[str, Any]] = []
    page.on("request", lambda r: asked.append(json.loads(r.post_data)) if r.url.endswith("/ask") else None)
    _open(page, sites.host + "/plain.html")
    widget = _widget(page)
    assert widget.get_by_role("heading", name="Assistant de la FAQ Ségur").is_visible()

    _ask(page, SOLDE, USEFUL)
    answer = widget.locator(".turn .answer").first
    assert "solde" in answer.inner_text().lower()
    link = answer.locator("a.cite").first.get_attribute("href")
    assert link.startswith(sites.service + "/entries/") or link.startswith("https://")
    assert widget.locator(".turn").first.locator("ol.sources li").count() >= 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "widget.png"))

    before = _votes(sites.db)
    widget.get_by_role("button", name="Oui").first.click()
    widget.get_by_text("Merci pour votre retour.").wait_for(timeout=10_000)
    wait_until(lambda: _votes(sites.db) == before + 1, timeout=10)

    _ask(page, FOLLOW_UP, "Réponse prête.")
    assert asked[-1]["history"] == [SOLDE] and asked[-1]["query"] == FOLLOW_UP
    assert widget.locator(".turn").count() == 2

    _ask(page, OFF_TOPIC, DECLINED)
    declined = widget.locator(".turn").last
    assert (
        declined.get_by_role("link", name="Contacter le support")
        .get_attribute("href")
        .startswith("https://support.example.org")
    )
    declined.get_by_label("Comment vous joindre (facultatif)").fill("marie@editeur.example")
    declined.get_by_role("button", name="Envoyer au support").click()
    declined.get_by_text("Votre conversation a été transmise").wait_for(timeout=10_000)
    (ticket,) = sites.helpdesk.received
    assert ticket["reason"] == "declined" and ticket["channel"] == "widget"
    assert [t["question"] for t in ticket["turns"]] == [SOLDE, FOLLOW_UP, OFF_TOPIC]
    assert ticket["turns"][0]["citations"] and ticket["turns"][-1]["declined"] is True
    assert ticket["contact"] == "marie@editeur.example"

    page.reload()  # the tab's conversation is kept
    _widget(page).get_by_role("button", name="Une question ?").click()
    assert _widget(page).locator(".turn").count() == 3
    page.close()


def test_the_host_pages_styles_change_nothing(sites: Sites, browser) -> None:
    boxes = []
    for kind in ("plain", "hostile"):
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(f"{sites.host}/{kind}.html")
        launcher = _widget(page).get_by_role("button", name="Une question ?")
        before = launcher.bounding_box()
        launcher.click()
        field_ = _widget(page).get_by_label("Votre question")
        size = field_.evaluate("node => getComputedStyle(node).fontSize")
        boxes.append((before, field_.bounding_box(), size))
        page.close()
    assert boxes[0] == boxes[1]
    assert boxes[0][0]["width"] > 40 and boxes[0][2] == "16px"


def test_the_widget_changes_nothing_of_the_host_page(sites: Sites, browser) -> None:
    measure = """() => [...document.querySelectorAll('body, header, a, main, h1, p')].map((node) => {
        const box = node.getBoundingClientRect(), style = getComputedStyle(node);
        return [node.tagName, box.x, box.y, box.width, box.height, style.font, style.color, style.margin];
    })"""
    for kind in ("plain", "hostile"):
        seen = []
        for query in ("?bare=1", ""):
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(f"{sites.host}/{kind}.html{query}")
            if not query:
                _widget(page).get_by_role("button", name="Une question ?").wait_for()
            seen.append(page.evaluate(measure))
            page.close()
        assert seen[0] == seen[1] and len(seen[0]) >= 5, kind


def test_the_keyboard_alone_opens_asks_and_closes(sites: Sites, browser) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(sites.host + "/plain.html")
    focused = (
        "() => { const w = document.querySelector('faq-assistant'); return document.activeElement === w ? "
        "w.shadowRoot.activeElement && (w.shadowRoot.activeElement.className || w.shadowRoot.activeElement.tagName) : "
        "document.activeElement.tagName }"
    )
    for _ in range(5):
        page.keyboard.press("Tab")
        if page.evaluate(focused) == "launcher":
            break
    assert page.evaluate(focused) == "launcher"
    page.keyboard.press("Enter")
    assert page.evaluate(focused) == "TEXTAREA"
    page.keyboard.type(SOLDE)
    page.keyboard.press("Enter")
    _widget(page).get_by_text(USEFUL).wait_for(timeout=30_000)
    for _ in range(30):  # Tab goes round inside the open assistant
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.tagName") == "FAQ-ASSISTANT"
    page.keyboard.press("Escape")
    assert page.evaluate(focused) == "launcher"
    assert not _widget(page).get_by_label("Votre question").is_visible()
    page.close()


def test_no_serious_accessibility_violation_with_the_widget_open(sites: Sites, browser) -> None:
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    page = browser.new_page(viewport={"width": 1000, "height": 900})

    def serious() -> list[str]:
        violations = axe.run(page).response["violations"]
        return [f"{v['id']}: {v['help']}" for v in violations if v["impact"] in {"serious", "critical"}]

    _open(page, sites.host + "/plain.html")
    assert serious() == []
    _ask(page, SOLDE, USEFUL)
    _ask(page, OFF_TOPIC, DECLINED)
    assert serious() == []
    page.close()


def test_a_site_that_is_not_allowed_gets_no_answer(sites: Sites, browser) -> None:
    page = browser.new_page()
    refused: list[int] = []
    page.on("response", lambda r: refused.append(r.status) if r.url.endswith("/ask") else None)
    _open(page, sites.stranger + "/plain.html")
    _ask(page, SOLDE, "Le service ne répond pas")
    assert _widget(page).locator(".turn a.cite").count() == 0
    assert refused == [] or set(refused) == {403}
    page.close()


def test_a_widget_kept_open_past_its_tokens_life_still_answers(tmp_path, segur_index: Path, browser) -> None:
    """API keys on, tokens valid for 3 s: with the page's timers held, the expired token is renewed on the 401
    and the question answered; with time let run, the widget renews the token before it expires."""

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.format(style="", service=holder["service"]))

    holder: dict[str, str] = {}
    with running(Starlette(routes=[Route("/{kind}.html", page)]), ready_path=None) as host:
        settings = Settings(
            index_dir=segur_index,
            feedback_db=tmp_path / "fb.sqlite3",
            widget_origins=[host],
            api_keys=["key-1"],
            widget_token_seconds=3,
        )
        with running(create_app(settings), ready_path="/ready") as service:
            holder["service"] = service
            tokens: list[str] = []
            statuses: list[int] = []
            browser_page = browser.new_page()
            browser_page.on(
                "response",
                lambda r: (
                    tokens.append(r.json()["token"])
                    if r.url.endswith("/widget/config")
                    else statuses.append(r.status)
                    if r.url.endswith("/ask")
                    else None
                ),
            )
            browser_page.clock.install()
            browser_page.clock.pause_at(time.time() + 1)  # the widget's renewal timer held
            with browser_page.expect_response(lambda r: r.url.endswith("/widget/config")):
                _open(browser_page, host + "/plain.html")

            def expired() -> bool:
                headers = {"Authorization": f"Bearer {tokens[0]}", "Origin": host}
                return httpx.post(service + "/ask", json={"query": SOLDE}, headers=headers).status_code == 401

            wait_until(expired, timeout=30, interval=0.5)
            _ask(browser_page, SOLDE, USEFUL)
            assert statuses == [401, 200] and len(tokens) == 2 and tokens[1] != tokens[0]

            # time let run: the widget asks for a new token before the second one expires
            with browser_page.expect_response(lambda r: r.url.endswith("/widget/config")):
                browser_page.clock.run_for(3000)
            _ask(browser_page, FOLLOW_UP, "Réponse prête.")
            assert statuses[-1] == 200 and len(tokens) >= 3
            browser_page.close()
