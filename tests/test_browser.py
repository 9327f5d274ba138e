"""The web page in headless Chromium (Debian's package, driven by Playwright; no browser download)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from rag.config import Settings
from rag.http import create_app

from .conftest import ARTIFACTS, ROOT
from .servers import running, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def site(tmp_path_factory, segur_index: Path):
    folder = tmp_path_factory.mktemp("web")
    settings = Settings(
        index_dir=segur_index, feedback_db=folder / "fb.sqlite3", support_url="https://support.example.org/faq"
    )
    with running(create_app(settings), ready_path="/ready") as base:
        yield base, settings.feedback_path


def test_ask_stream_cite_and_rate(site, browser) -> None:
    base, db = site
    page = browser.new_page(viewport={"width": 900, "height": 1100})
    page.goto(base + "/")
    assert page.get_by_label("Votre question").is_visible()
    page.get_by_label("Votre question").fill("Comment déposer une demande de solde ?")
    page.keyboard.press("Enter")
    page.get_by_text("Cette réponse vous a-t-elle été utile ?").wait_for(timeout=30_000)
    answer = page.locator(".turn .answer").last
    assert "solde" in answer.inner_text()
    citation = answer.locator("a.cite").first
    href = citation.get_attribute("href")
    assert href.startswith(base + "/entries/") or href.startswith("http")
    assert page.locator(".turn .sources li").count() >= 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "answered-page.png"), full_page=True)

    # the citation opens the FAQ entry it points to
    entry = browser.new_page()
    entry.goto(base + href if href.startswith("/") else href)
    assert entry.locator("h1").inner_text().strip()
    assert "Poser une question" in entry.content()
    entry.close()

    page.get_by_role("button", name="Non", exact=True).click()
    page.get_by_text("Merci pour votre retour.").wait_for(timeout=10_000)
    page.get_by_label("Commentaire (facultatif)").fill("Il manque le lien pour mon couloir")
    page.get_by_role("button", name="Envoyer le commentaire").click()
    page.get_by_text("Commentaire envoyé, merci.").wait_for(timeout=10_000)  # acknowledged once stored
    rows = (
        sqlite3.connect(db)
        .execute("SELECT f.helpful, f.comment, a.query FROM feedback f JOIN answers a ON a.id = f.answer_id")
        .fetchall()
    )
    assert rows == [(0, "Il manque le lien pour mon couloir", "Comment déposer une demande de solde ?")]
    page.close()


def test_unknown_question_says_so_and_phone_layout(site, browser) -> None:
    base, _ = site
    page = browser.new_page(viewport={"width": 380, "height": 800})
    page.goto(base + "/")
    page.get_by_label("Votre question").fill("Quelle est la recette de la tarte tatin ?")
    page.get_by_role("button", name="Poser la question").click()
    page.get_by_text("La FAQ ne répond pas à cette question.").wait_for(timeout=30_000)
    assert "pas trouvé" in page.locator(".turn .answer").last.inner_text()
    assert page.locator(".turn .sources li").count() == 0
    assert (
        page.get_by_role("link", name="Contacter le support").get_attribute("href") == "https://support.example.org/faq"
    )
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 380  # no horizontal scrolling on a phone
    page.close()


def test_facets_narrow_the_answer_and_entries_can_be_browsed(site, browser) -> None:
    base, _ = site
    page = browser.new_page(viewport={"width": 900, "height": 1100})
    page.goto(base + "/")
    page.locator("button.example").first.wait_for(timeout=10_000)  # the assistant reads them from the service
    assert page.locator("button.example").count() == 3  # example questions on the empty page
    page.get_by_text("Préciser le sujet (facultatif)").click()
    page.get_by_label("Couloir Ségur").select_option("Biologie")
    page.get_by_label("Votre question").fill("Quand le solde est-il versé ?")
    page.get_by_role("button", name="Poser la question").click()
    page.get_by_text("Cette réponse vous a-t-elle été utile ?").wait_for(timeout=30_000)
    biology = {"a7521298c9d2", "716c265fe4a3"}  # the entries whose answer names the biology corridor
    links = page.locator(".turn .passages a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert links and {link.rsplit("/", 1)[-1] for link in links} <= biology
    page.get_by_role("link", name="Parcourir toutes les entrées").click()
    page.wait_for_url("**/entries")
    assert page.locator("main ol li").count() == 20
    page.close()


def test_feedback_that_cannot_be_sent_says_so(site, browser) -> None:
    base, _ = site
    page = browser.new_page()
    page.goto(base + "/")
    page.get_by_label("Votre question").fill("Comment déposer une demande de solde ?")
    page.get_by_role("button", name="Poser la question").click()
    page.get_by_text("Cette réponse vous a-t-elle été utile ?").wait_for(timeout=30_000)
    page.route("**/feedback", lambda route: route.abort())  # the service is down
    page.get_by_role("button", name="Oui", exact=True).click()
    page.get_by_text("Votre retour n'a pas pu être enregistré").wait_for(timeout=10_000)
    assert page.get_by_role("button", name="Oui", exact=True).get_attribute("aria-pressed") == "false"
    page.close()


def test_api_docs_render_with_no_other_host(site, browser) -> None:
    base, _ = site
    page = browser.new_page()
    elsewhere: list[str] = []

    def only_this_service(route) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_service)
    page.goto(base + "/docs")
    page.locator(".swagger-ui .info .title").wait_for(timeout=30_000)
    assert "FAQ cited answers" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock").count() >= 5 and elsewhere == []
    page.close()


def test_no_serious_accessibility_violation(site, browser) -> None:
    from axe_playwright_python.sync_playwright import Axe

    base, _ = site
    axe = Axe()
    page = browser.new_page()

    def serious() -> list[str]:
        violations = axe.run(page).response["violations"]
        return [f"{v['id']}: {v['help']}" for v in violations if v["impact"] in {"serious", "critical"}]

    page.goto(base + "/")
    assert serious() == []
    for question, done in (
        ("Comment déposer une demande de solde ?", "Cette réponse vous a-t-elle été utile ?"),
        ("Quelle est la recette de la tarte tatin ?", "La FAQ ne répond pas à cette question."),
    ):
        page.get_by_label("Votre question").fill(question)
        page.get_by_role("button", name="Poser la question").click()
        page.get_by_text(done).wait_for(timeout=30_000)
        assert serious() == [], question
    page.close()


def test_the_eval_report_renders_with_every_other_host_blocked(segur_index: Path, browser, tmp_path) -> None:
    """report.html of a real run: opened from the disk with every request refused but the page's own, the
    filter narrows the questions; a screenshot for the eval documentation."""
    import json as _json
    import subprocess
    import sys

    env = {**os.environ, "RAG_INDEX_DIR": str(segur_index)}
    args = [sys.executable, "-m", "rag.cli", "eval", "--queries", str(ROOT / "eval" / "segur.jsonl")]
    done = subprocess.run([*args, "--out", str(tmp_path / "run"), "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = _json.loads(done.stdout)
    page, requested = browser.new_page(viewport={"width": 1200, "height": 900}), []

    def nothing_else(route) -> None:
        requested.append(route.request.url)
        (route.continue_ if route.request.url.startswith("file://") else route.abort)()

    page.route("**/*", nothing_else)
    page.goto((tmp_path / "run" / "report.html").as_uri())
    assert page.locator("tbody.questions tr").count() == report["queries"]
    assert page.locator("img").evaluate("img => img.naturalWidth") > 0  # the plot, from inside the page
    rows = [_json.loads(line) for line in (tmp_path / "run" / "results.jsonl").open()]
    declined = sum(1 for row in rows if row["outcome"] == "declined")
    page.select_option("#kind", "declined")
    visible = page.locator("tbody.questions tr:not([hidden])")
    assert visible.count() == declined and page.locator("#shown").inner_text() == str(declined)
    page.select_option("#kind", "")
    page.fill("#q", "solde")
    assert 0 < visible.count() < report["queries"] and all("solde" in t.lower() for t in visible.all_inner_texts())
    assert [u for u in requested if not u.startswith("file://")] == []
    page.fill("#q", "")
    page.evaluate("window.scrollTo(0, 0)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "eval-report.png"), full_page=False)
    page.close()


def test_the_gap_report_page_asks_the_token_once_resolves_and_passes_axe(segur_index: Path, browser, tmp_path) -> None:
    """The admin page: the token asked once, the gaps listed, one resolved as out of scope, no serious violation."""
    import httpx
    from axe_playwright_python.sync_playwright import Axe

    settings = Settings(
        index_dir=tmp_path / "idx", feedback_db=tmp_path / "fb.sqlite3", admin_token="adm-page", index_poll_seconds=0
    )
    shutil.copytree(segur_index, settings.index.index_dir, symlinks=True)
    axe = Axe()

    def serious(page) -> list[str]:
        violations = axe.run(page).response["violations"]
        return [f"{v['id']}: {v['help']}" for v in violations if v["impact"] in {"serious", "critical"}]

    with running(create_app(settings), ready_path="/ready") as base:
        for question in ("Quelle est la recette de la tarte tatin ?", "Comment réussir une tarte tatin ?"):
            httpx.post(base + "/ask", json={"query": question}, timeout=60).raise_for_status()
        page = browser.new_page()
        page.goto(base + "/admin")
        assert serious(page) == []
        page.get_by_label("Jeton d'administration").fill("adm-page")
        page.get_by_role("button", name="Afficher les lacunes").click()
        gap = page.locator(".gap").filter(has_text="tarte tatin")
        gap.first.wait_for(timeout=30_000)
        assert page.get_by_label("Jeton d'administration").is_hidden()
        assert serious(page) == []
        page.screenshot(path=str(ARTIFACTS / "gaps-page.png"), full_page=False)
        gap.first.get_by_label("Hors du champ de la FAQ").check()
        gap.first.get_by_role("button", name="Appliquer").click()
        page.get_by_text("Lacune résolue").wait_for(timeout=120_000)
        assert page.locator(".gap").filter(has_text="tarte tatin").count() == 0
        assert serious(page) == []
        page.reload()  # the token is kept for the tab: not asked again
        page.get_by_text("Lacunes ouvertes").wait_for()
        assert page.get_by_label("Jeton d'administration").is_hidden()
        page.close()


def test_a_suggestion_shows_the_nearest_entries_and_offers_a_person_and_passes_axe(
    segur_index: Path, browser, tmp_path
) -> None:
    """An answer the service is not sure of is not asserted: the page says so, lists the nearest entries as links,
    offers the support and asks whether it helped; axe finds nothing serious."""
    from axe_playwright_python.sync_playwright import Axe

    settings = Settings(
        index_dir=segur_index,
        feedback_db=tmp_path / "fb.sqlite3",
        support_url="https://support.example.org/faq",
        min_confidence=0.999999,  # nothing is sure enough to be asserted: everything near the FAQ is suggested
        suggest_confidence=0.02,
    )
    with running(create_app(settings), ready_path="/ready") as base:
        page = browser.new_page(viewport={"width": 900, "height": 1100})
        page.goto(base + "/")
        page.get_by_label("Votre question").fill("Quel est le prix d'un abonnement à une messagerie sécurisée ?")
        page.get_by_role("button", name="Poser la question").click()
        page.get_by_text("Si aucune de ces entrées ne vous répond").wait_for(timeout=30_000)
        answer = page.locator(".turn .answer").last.inner_text()
        assert answer.startswith("Je ne suis pas certain que la FAQ réponde à cette question.")
        cited = page.locator(".turn .answer a.cite")
        assert 1 <= cited.count() <= 3 and page.locator(".turn .sources li").count() == cited.count()
        assert page.get_by_role("link", name="Contacter le support").is_visible()
        assert page.get_by_text("Cette réponse vous a-t-elle été utile ?").is_visible()
        violations = Axe().run(page).response["violations"]
        assert [v["id"] for v in violations if v["impact"] in {"serious", "critical"}] == []
        page.close()


def test_the_page_answers_without_javascript_and_a_vote_is_stored(site, browser) -> None:
    """JavaScript off: the page is a plain form; the question gets a cited answer rendered by the server, the vote
    is a form that is stored; axe finds nothing serious on either page."""
    from axe_playwright_python.sync_playwright import Axe

    base, feedback_db = site
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(base + "/")
    page.get_by_label("Votre question").fill("Comment déposer une demande de solde ?")
    page.get_by_role("button", name="Envoyer la question").click()
    page.get_by_text("Cette réponse vous a-t-elle été utile ?").wait_for(timeout=30_000)
    assert page.get_by_role("heading", name="Réponse").is_visible()
    sources = page.locator(".plain-answer .sources a")
    assert sources.count() >= 1 and "/entries/" in (sources.first.get_attribute("href") or "")
    assert page.locator(".plain-answer a.cite").count() >= 1
    answered = page.content()
    page.get_by_role("button", name="Oui").click()
    page.get_by_text("Merci pour votre avis").wait_for(timeout=30_000)
    context.close()

    def stored() -> int:
        with sqlite3.connect(feedback_db) as conn:
            return conn.execute("SELECT COUNT(*) FROM feedback WHERE helpful = 1").fetchone()[0]

    wait_until(lambda: stored() >= 1)
    checked = browser.new_page()  # axe runs as a script: the page as it was rendered, its own script held back
    checked.route("**/widget.js", lambda route: route.abort())
    checked.goto(base + "/")
    checked.set_content(answered.replace('href="static/style.css"', f'href="{base}/static/style.css"'))
    violations = Axe().run(checked).response["violations"]
    assert [f"{v['id']}: {v['help']}" for v in violations if v["impact"] in {"serious", "critical"}] == []
    checked.close()
