"""FAQ web pages as sources, against a small FAQ website on loopback (tests/faq_site.py): every structure read
into its entries with anchors, conditional requests on a second sync, only changed entries embedded again, a
removed question gone, a failing page keeping its entries, robots.txt honoured, and every kind of broken page
a line of the report with nothing lost; the scheduled sync of `rag serve`, once across two replicas."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rag.config import Settings
from rag.corpus.quality import check
from rag.corpus.sources import load_corpus
from rag.egress import host_port
from rag.http import create_app
from rag.models import Question
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

from .faq_site import EXPECTED, FaqSite
from .servers import running, wait_until


@pytest.fixture
def site() -> Iterator[FaqSite]:
    made = FaqSite()
    with running(made.app, ready_path=None) as base:
        made.base = base
        yield made


def _settings(tmp_path: Path, sources: list[str], **changes) -> Settings:
    # the FAQ site runs on this machine: the operator lets the service reach it, as an intranet FAQ's
    allowed = sorted({host_port(s) for s in sources if host_port(s)})
    return Settings(
        egress_allow=allowed,
        sources=sources,
        index_dir=tmp_path / "idx",
        feedback_db=tmp_path / "fb.sqlite3",
        self_calibration="never",
        min_confidence=0.0,
        web_request_interval=0,
        web_timeout=2,
        **changes,
    )


def _service(settings: Settings, hash_embedder) -> QueryService:
    return QueryService(settings, hash_embedder)


def _by_question(service: QueryService) -> dict[str, str]:
    return {e.question: e.url for e in service.index.entries}


def test_every_structure_gives_its_entries_with_their_anchors(site: FaqSite, tmp_path: Path, hash_embedder) -> None:
    service = _service(_settings(tmp_path, [site.base + "/sitemap.xml"]), hash_embedder)
    done = Publisher(service).sync()
    assert done.published and set(done.removed) == set() and len(done.added) == len(EXPECTED)
    assert _by_question(service) == {q: site.base + path for q, path in EXPECTED.items()}
    entry = next(e for e in service.index.entries if e.question == "Qui peut demander le forfait de financement ?")
    assert entry.answer == "Les éditeurs dont la solution est référencée.\n- en ville\n- à l'hôpital"
    assert entry.checked_on and entry.source == site.base + "/faq/financement.html"
    deposit = next(e for e in service.index.entries if e.question == "Où déposer la demande ?")
    assert "de dépôt (https://portail.example.fr/depot)" in deposit.answer
    assert "https://portail.example.fr/depot" in deposit.links
    assert site.asked("/private/interne.html") == []  # robots.txt disallows it: never requested
    assert any("robots.txt disallows it" in p for p in done.report.problems)
    assert any("/about.html: no FAQ structure found" in p for p in done.report.problems)
    assert any("1 addresses not on 127.0.0.1:" in p for p in done.report.problems)
    assert not any("169.254" in url for url in done.report.requested)
    assert any("javascript: link in an answer was dropped" in p for p in done.report.problems)
    va = next(e for e in service.index.entries if e.question == "Qui signe la vérification d'aptitude ?")
    assert "javascript" not in va.answer and "ce lien" in va.answer and f"{site.base}/guide.pdf" in va.answer
    found = service.search(Question(query="Qui signe la vérification d'aptitude ?"), base_url="http://faq.test")
    assert found.results[0].url == site.base + "/faq/dsfr.html#accordion-va"
    assert found.results[0].checked_on == entry.checked_on and found.results[0].stale is False


def test_a_second_sync_is_conditional_and_an_edit_embeds_that_entry_only(
    site: FaqSite, tmp_path: Path, hash_embedder
) -> None:
    service = _service(_settings(tmp_path, [site.base + "/sitemap.xml"]), hash_embedder)
    first = Publisher(service).sync()
    again = Publisher(service).sync()
    assert not again.published and again.version == first.version and again.embedded == 0
    assert site.asked("/faq/dsfr.html")[-1]["if-none-match"].startswith('"')
    assert again.report.unchanged == again.report.pages - 2  # all but /about.html (no FAQ) and /private/ (robots)

    site.pages["/faq/dsfr.html"] = site.pages["/faq/dsfr.html"].replace(
        "Le solde est versé après la VA signée.", "Le solde est versé sous trente jours après la VA signée."
    )
    edited = Publisher(service).sync()
    (changed,) = edited.changed
    assert edited.published and edited.added == [] and edited.removed == []
    assert service.index.entry(changed).question == "Quand le solde est-il versé ?"
    assert 0 < edited.embedded <= 3  # the entry's passage and its question, nothing else

    site.pages["/faq/details.html"] = site.pages["/faq/details.html"].split("<details><summary>Comment")[0]
    removed = Publisher(service).sync()
    assert len(removed.removed) == 1 and removed.added == [] and removed.changed == []
    hits = service.search(Question(query="Comment tester l'envoi ?", k=20)).results
    assert "Comment tester l'envoi ?" not in {h.question for h in hits}


@pytest.mark.parametrize("failure", ["status", pytest.param("slow", marks=pytest.mark.slow)])
def test_a_page_that_fails_keeps_its_entries_and_is_reported(
    site: FaqSite, tmp_path: Path, hash_embedder, failure: str
) -> None:
    service = _service(
        _settings(tmp_path, [site.base + "/faq/details.html", site.base + "/faq/dsfr.html"]), hash_embedder
    )
    Publisher(service).sync()
    before = _by_question(service)
    if failure == "status":
        site.status["/faq/details.html"] = 500
    else:
        site.slow.add("/faq/details.html")
    done = Publisher(service).sync()
    assert _by_question(service) == before and not done.published
    (problem,) = done.report.problems
    assert (
        problem.startswith(site.base + "/faq/details.html: ") and "its 2 entries of the last sync are kept" in problem
    )
    findings = Publisher(service).source_report()
    assert [(f.kind, f.ids) for f in findings] == [("unreadable", [site.base + "/faq/details.html"])]


def test_broken_pages_are_each_a_line_of_the_report_and_nothing_is_lost(
    site: FaqSite, tmp_path: Path, hash_embedder
) -> None:
    pages = ["/faq/cassee.html", "/latin1.html", "/huge.html", "/loop", "/faq/dsfr.html"]
    settings = _settings(tmp_path, [site.base + p for p in pages], web_max_bytes=2_000_000)
    service = _service(settings, hash_embedder)
    done = Publisher(service).sync()
    questions = set(_by_question(service))
    assert {"Page cassée ?", "Où trouver l'échéancier ?", "Qui signe la vérification d'aptitude ?"} <= questions
    latin = next(e for e in service.index.entries if e.question == "Où trouver l'échéancier ?")
    assert "rubrique « échéances »" in latin.answer
    problems = "\n".join(done.report.problems)
    assert "/huge.html: larger than 2 MB (RAG_WEB_MAX_BYTES); skipped" in problems
    assert "/loop: too many redirects" in problems
    assert "javascript: link in an answer was dropped" in problems
    assert "/faq/cassee.html: malformed HTML (" in problems and "read as browsers do" in problems
    assert "/latin1.html: read as iso-8859-1 (the page's encoding)" in problems
    assert len(done.report.problems) == 5, problems
    assert next(e for e in service.index.entries if e.question == "Page cassée ?").answer == "Oui, mais lisible."


def test_a_local_html_file_is_a_source(tmp_path: Path, hash_embedder) -> None:
    from .faq_site import PAGES

    page = tmp_path / "faq.html"
    canonical = '<link rel="canonical" href="https://www.example.fr/faq">'
    page.write_text(PAGES["/faq/details.html"].replace("</title>", "</title>" + canonical), encoding="utf-8")
    entries = load_corpus([page]).entries
    assert [(e.question, e.url) for e in entries] == [
        ("Faut-il une messagerie sécurisée ?", "https://www.example.fr/faq#mss"),
        ("Comment tester l'envoi ?", "https://www.example.fr/faq#comment-tester-l-envoi"),
    ]


def _planted(entries: list, question_of: int, answer_of: int) -> list:
    """The entries with a duplicate (another entry's answer, reworded a little) and a conflict (an entry's question
    answered otherwise) planted."""
    source = entries[answer_of]
    duplicate = source.model_copy(update={"id": "planted-duplicate", "answer": source.answer + " Merci."})
    asked = entries[question_of]
    question = asked.question or "Quelle est la procédure ?"
    if asked.question is None:
        asked = asked.model_copy(update={"question": question})
        entries = [asked if e.id == asked.id else e for e in entries]
    conflict = asked.model_copy(
        update={"id": "planted-conflict", "answer": "Aucune démarche n'est nécessaire : tout est automatique."}
    )
    return [*entries, duplicate, conflict]


@pytest.mark.parametrize("faq", ["segur", "cnil"])
def test_the_quality_report_finds_a_planted_duplicate_and_conflict_and_nothing_new(faq: str) -> None:
    from rag.config import DEFAULT_SOURCE

    from .conftest import ROOT

    path = DEFAULT_SOURCE if faq == "segur" else ROOT.parent / "shared" / "benchmarks" / "cnil-faq" / "faq.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is not on this machine")
    entries = load_corpus([path]).entries
    baseline = {(f.kind, tuple(f.ids)) for f in check(entries)}
    found = {(f.kind, tuple(f.ids)) for f in check(_planted(entries, 3, 5))}
    new = found - baseline
    assert {kind for kind, _ in new} == {"duplicate", "conflict"} and len(new) == 2, new
    assert ("duplicate", (entries[5].id, "planted-duplicate")) in new
    assert any(kind == "conflict" and "planted-conflict" in ids for kind, ids in new)
    if faq == "segur":
        assert baseline == set()


@pytest.mark.slow
def test_rag_serve_syncs_on_schedule_once_across_two_replicas(site: FaqSite, tmp_path: Path, hash_embedder) -> None:
    settings = _settings(tmp_path, [site.base + "/faq/dsfr.html"], sync_interval=1.5, index_poll_seconds=0.2)
    # no sync before: each replica reads the pages it has never read as it starts
    services = [_service(settings, hash_embedder) for _ in range(2)]
    with (
        running(create_app(settings, services[0]), ready_path="/ready") as one,
        running(create_app(settings, services[1]), ready_path="/ready") as two,
    ):
        asked = len(site.asked("/faq/dsfr.html"))
        site.pages["/faq/dsfr.html"] = site.pages["/faq/dsfr.html"].replace("après la VA signée", "sous 30 jours")

        def served(base: str) -> bool:
            body = httpx.post(base + "/ask", json={"query": "Quand le solde est-il versé ?"}).json()
            return "sous 30 jours" in body["answer"]

        wait_until(lambda: served(one) and served(two), timeout=30)
        syncs = site.asked("/faq/dsfr.html")[asked:]
        wait_until(lambda: len(site.asked("/faq/dsfr.html")) > asked + len(syncs), timeout=30)
    times = [t for t in site.times("/faq/dsfr.html")][asked:]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps and min(gaps) > 1.0, gaps  # one sync per period, whichever replica made it
    assert json.loads(json.dumps(services[0].index.manifest.sources[0].path)) == site.base + "/faq/dsfr.html"


def test_results_say_when_their_page_was_checked_and_flag_stale_ones(
    site: FaqSite, tmp_path: Path, hash_embedder
) -> None:
    from fastapi.testclient import TestClient

    from rag.corpus.web.pages import PageStore

    settings = _settings(tmp_path, [site.base + "/faq/dsfr.html"], admin_token="adm", stale_after_days=30)
    service = _service(settings, hash_embedder)
    Publisher(service).sync()
    with TestClient(create_app(settings, service)) as client:
        body = client.post("/ask", json={"query": "Qui signe la vérification d'aptitude ?"}).json()
        (citation,) = body["citations"][:1]
        assert citation["checked_on"] == service.index.entries[0].checked_on and citation["stale"] is False
        day = citation["checked_on"]
        page = client.get(f"/entries/{citation['id']}", headers={"Accept": "text/html"}).text
        assert f"vérifié le {day[8:10]}/{day[5:7]}/{day[:4]}" in page
        report = client.get("/admin/sources", headers={"Authorization": "Bearer adm"}).json()
        assert report["findings"] == [] and report["count"] == 0

    store = PageStore.read(settings.index.index_dir)
    store.pages[site.base + "/faq/dsfr.html"].checked_on = "2026-01-02"  # a page not read for months
    store.write(settings.index.index_dir)
    Publisher(service).build()
    hit = service.search(Question(query="Qui signe la vérification d'aptitude ?")).results[0]
    assert hit.checked_on == "2026-01-02" and hit.stale is True
    assert [f.kind for f in Publisher(service).source_report()] == ["stale"]


def test_ready_says_when_the_faq_website_fails_and_answers_go_on(site: FaqSite, tmp_path: Path, hash_embedder) -> None:
    from fastapi.testclient import TestClient

    settings = _settings(tmp_path, [site.base + "/faq/dsfr.html", site.base + "/faq/details.html"])
    service = _service(settings, hash_embedder)
    Publisher(service).sync()
    with TestClient(create_app(settings, service)) as client:
        assert client.get("/ready").json()["dependencies"]["web_sources"] == "ok"
    site.status["/faq/dsfr.html"] = 503
    Publisher(service).sync()
    with TestClient(create_app(settings, service)) as client:
        ready = client.get("/ready").json()
        assert ready["status"] == "degraded" and ready["dependencies"]["web_sources"] == "1 pages failing"
        answer = client.post("/ask", json={"query": "Quand le solde est-il versé ?"}).json()
        assert answer["citations"][0]["url"] == site.base + "/faq/dsfr.html#accordion-solde"


def test_a_page_read_again_unchanged_on_another_day_publishes_no_version(
    site: FaqSite, tmp_path: Path, hash_embedder
) -> None:
    """Only what the pages say is in a version: the day they were read again moves on without a new version."""
    from rag.corpus.web.pages import PageStore

    settings = _settings(tmp_path, [site.base + "/faq/dsfr.html"])
    service = _service(settings, hash_embedder)
    first = Publisher(service).sync()
    store = PageStore.read(settings.index.index_dir)
    for page in store.pages.values():
        page.checked_on, page.etag, page.last_modified = "2026-01-02", None, None  # read last time months ago
    store.write(settings.index.index_dir)
    again = Publisher(service).sync()  # today: the same entries
    assert not again.published and again.version == first.version == service.index.version
    hit = service.search(Question(query="Qui signe la vérification d'aptitude ?")).results[0]
    assert hit.checked_on == dt.date.today().isoformat() and hit.stale is False


def test_nothing_inside_the_network_is_reached_through_the_faq_pages(
    site: FaqSite, tmp_path: Path, hash_embedder
) -> None:
    """The FAQ site is allowed (an intranet FAQ); a service beside it on another port is not. A page that redirects
    there, a page of that host named as a source, a sitemap listing a link-local address and a canonical link to
    another site: the other service receives no request, no entry holds its content, each refusal is a line of the
    report."""
    inside = FaqSite()
    inside.pages["/secret.html"] = "<details><summary>Mot de passe ?</summary><p>hunter2</p></details>"
    with running(inside.app, ready_path=None) as inside_base:
        site.redirects["/faq/moved.html"] = inside_base + "/secret.html"
        canonical = '<link rel="canonical" href="https://elsewhere.example/faq">'
        site.pages["/faq/canon.html"] = (
            f"<html><head>{canonical}</head><body><details id='q'><summary>Question canonique ?</summary>"
            "<p>Réponse.</p></details></body></html>"
        )
        sources = [f"{site.base}/faq/{p}" for p in ("moved.html", "canon.html")] + [
            site.base + "/sitemap.xml",
            inside_base + "/secret.html",
        ]
        settings = _settings(tmp_path, sources).replace(egress_allow=[host_port(site.base)])
        service = _service(settings, hash_embedder)
        done = Publisher(service).sync()
    assert inside.requests == []  # not even its robots.txt
    texts = " ".join(f"{e.question} {e.answer}" for e in service.index.entries)
    assert "hunter2" not in texts and "Mot de passe" not in texts
    (canon,) = [e for e in service.index.entries if e.question == "Question canonique ?"]
    assert canon.url.startswith(site.base + "/faq/canon.html#")  # not moved to the other site
    problems = "\n".join(done.report.problems)
    assert f"{site.base}/faq/moved.html: redirected to {inside_base}/secret.html" in problems
    assert f"{inside_base}/secret.html: " in problems and "RAG_EGRESS_ALLOW" in problems
    assert "addresses not on" in problems  # the sitemap's link-local address, left out
    assert "canonical link to another site (https://elsewhere.example) was ignored" in problems
