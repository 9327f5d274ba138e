"""Reading the web sources again: each sitemap's pages (those matching ``RAG_WEB_INCLUDE``, at most
``RAG_WEB_MAX_PAGES``), each page asked conditionally, read into entries, and the page store written. A page
that cannot be read keeps the entries it gave before; every problem is one line of the report."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rag.config import WebSettings, is_url
from rag.corpus.web.extract import read_page
from rag.corpus.web.fetch import Fetched, Fetcher
from rag.corpus.web.pages import PageRecord, PageStore, SitemapRecord, entry_id
from rag.egress import EgressPolicy
from rag.models import Entry

SITEMAP_NS = re.compile(r"^\{[^}]*\}")


@dataclass
class SyncReport:
    """What a sync did, page by page."""

    pages: int = 0
    unchanged: int = 0  # answered 304, or the same body
    problems: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)


def is_sitemap(url: str) -> bool:
    return url.lower().split("?", 1)[0].endswith(".xml")


def entries_of(url: str, fetched: Fetched, notes: list[str]) -> tuple[list[Entry], str | None]:
    """The entries of a page's body, and the structure they came from (None: no FAQ structure found)."""
    page = read_page(fetched.body, url, fetched.encoding)
    notes.extend(page.notes)
    where = page.canonical or url
    entries = [
        Entry(
            id=entry_id(where, pair.anchor),
            question=pair.question,
            answer=pair.answer,
            url=f"{where.split('#', 1)[0]}#{pair.anchor}",
            links=pair.links,
            source=url,
        )
        for pair in page.pairs
    ]
    return entries, page.structure


class Syncer:
    """Reads the web sources into the page store of ``index_dir``."""

    def __init__(
        self, settings: WebSettings, index_dir: Path, fetcher: Fetcher | None = None, policy: EgressPolicy | None = None
    ) -> None:
        self.settings, self.index_dir = settings, Path(index_dir)
        self.fetcher, self.policy = fetcher, policy

    def _fetcher(self) -> Fetcher:
        s = self.settings
        return Fetcher(s.web_user_agent, s.web_timeout, s.web_max_bytes, s.web_request_interval, policy=self.policy)

    def sync(self, sources: list[Path | str], progress: Callable[[int, int], None] | None = None) -> SyncReport:
        store = PageStore.read(self.index_dir)
        report = SyncReport()
        fetcher = self.fetcher or self._fetcher()
        try:
            plan: list[tuple[str, str]] = []  # (page, source)
            for source in (s for s in sources if is_url(s)):
                if is_sitemap(str(source)):
                    plan += [(page, str(source)) for page in self._sitemap(fetcher, store, str(source), report)]
                else:
                    plan.append((str(source), str(source)))
            plan = list(dict(plan).items())[: self.settings.web_max_pages] if plan else []
            for number, (url, source) in enumerate(plan, start=1):
                self._page(fetcher, store, url, source, report)
                if progress:
                    progress(number, len(plan))
            report.pages = len(plan)
            report.requested = list(fetcher.requested)
        finally:
            if self.fetcher is None:
                fetcher.close()
        store.write(self.index_dir)
        return report

    def _sitemap(self, fetcher: Fetcher, store: PageStore, url: str, report: SyncReport, depth: int = 0) -> list[str]:
        known = store.sitemaps.get(url) or SitemapRecord(url=url)
        got = fetcher.fetch(url, known.etag, known.last_modified)
        if got.status == 304:
            return known.pages
        if not got.ok:
            known.error = got.error
            report.problems.append(f"{url}: {got.error}; its pages of the last sync are kept")
            store.sitemaps[url] = known
            return known.pages
        try:
            root = ElementTree.fromstring(got.body)
        except ElementTree.ParseError as exc:
            known.error = f"not a valid sitemap ({exc})"
            report.problems.append(f"{url}: {known.error}; its pages of the last sync are kept")
            store.sitemaps[url] = known
            return known.pages
        kind = SITEMAP_NS.sub("", root.tag)
        locations = [(loc.text or "").strip() for loc in root.iter() if SITEMAP_NS.sub("", loc.tag) == "loc"]
        host = urlsplit(url).netloc
        foreign = [loc for loc in locations if not is_url(loc) or urlsplit(loc).netloc != host]
        if foreign:  # the sitemaps protocol lists a site's own pages: another host's are never fetched
            report.problems.append(f"{url}: {len(foreign)} addresses not on {host} were left out")
        locations = [loc for loc in locations if loc not in foreign]
        if kind == "sitemapindex" and depth == 0:
            pages = [p for child in locations for p in self._sitemap(fetcher, store, child, report, depth + 1)]
        elif kind == "sitemapindex":  # the protocol nests one level: a deeper index (or one naming itself) stops
            report.problems.append(f"{url}: a sitemap index inside a sitemap index is not followed")
            pages = []
        else:
            keep = re.compile(self.settings.web_include) if self.settings.web_include else None
            pages = [loc for loc in locations if keep is None or keep.search(loc)]
        if len(pages) > self.settings.web_max_pages:
            report.problems.append(f"{url}: {len(pages)} pages, the first {self.settings.web_max_pages} are read")
        store.sitemaps[url] = SitemapRecord(
            url=url, etag=got.etag, last_modified=got.last_modified, pages=pages[: self.settings.web_max_pages]
        )
        return store.sitemaps[url].pages

    def _page(self, fetcher: Fetcher, store: PageStore, url: str, source: str, report: SyncReport) -> None:
        known = store.pages.get(url)
        got = fetcher.fetch(url, known.etag if known else None, known.last_modified if known else None)
        today = dt.date.today().isoformat()
        if got.status == 304 and known is not None:
            store.pages[url] = known.model_copy(update={"checked_on": today, "error": None, "source": source})
            report.unchanged += 1
            return
        if not got.ok:
            kept = f"; its {len(known.entries)} entries of the last sync are kept" if known and known.entries else ""
            report.problems.append(f"{url}: {got.error}{kept}")
            failed = not got.refused
            if known is not None:
                store.pages[url] = known.model_copy(update={"error": got.error, "failed": failed})
            else:
                store.pages[url] = PageRecord(url=url, source=source, error=got.error, failed=failed)
            return
        notes: list[str] = []
        try:
            entries, structure = entries_of(url, got, notes)
        except Exception as exc:  # a parser's fault on a page: said, and the page's entries kept
            entries, structure = [], None
            notes.append(f"could not be read as HTML ({type(exc).__name__})")
        report.problems.extend(f"{url}: {note}" for note in notes)
        if not entries:
            reason = "no FAQ structure found (FAQPage, fr-accordion, details, dl, headings)"
            kept = known.entries if known else []
            report.problems.append(f"{url}: {reason}" + ("; its entries of the last sync are kept" if kept else ""))
            checked = known.checked_on if known else None
            store.pages[url] = PageRecord(
                url=url, source=source, error=reason, entries=kept, notes=notes, checked_on=checked
            )
            return
        if known is not None and [e.model_dump() for e in known.entries] == [e.model_dump() for e in entries]:
            report.unchanged += 1
        store.pages[url] = PageRecord(
            url=url,
            source=source,
            etag=got.etag,
            last_modified=got.last_modified,
            checked_on=today,
            structure=structure,
            entries=entries,
            notes=notes,
        )
