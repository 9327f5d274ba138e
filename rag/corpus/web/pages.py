"""What the FAQ's web pages gave at the last sync, kept beside the index versions (``<index dir>/web/pages.json``,
written atomically): each page's entries, validators for conditional requests, the day it was last checked, and
what went wrong; each sitemap's pages."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
import uuid
from pathlib import Path

from pydantic import BaseModel, Field

from rag.errors import SourceError
from rag.models import Entry

WEB = "web"  # the folder beside the index versions: what the FAQ's web pages last gave (rag sync)
FILE = "pages.json"


class PageRecord(BaseModel):
    """One page as the last sync left it; its entries stay when a later fetch fails."""

    url: str
    source: str = Field(description="the source it comes from: the page itself, or a sitemap")
    etag: str | None = None
    last_modified: str | None = None
    checked_on: str | None = Field(None, description="the day the page was last read successfully (ISO date)")
    structure: str | None = None
    entries: list[Entry] = Field(default_factory=list)
    error: str | None = Field(None, description="why the last sync could not read it (its entries kept)")
    failed: bool = Field(False, description="the site did not answer as it should (an outage, not a refusal)")
    notes: list[str] = Field(default_factory=list)


class SitemapRecord(BaseModel):
    url: str
    etag: str | None = None
    last_modified: str | None = None
    pages: list[str] = Field(default_factory=list)
    error: str | None = None


class PageStore(BaseModel):
    """Every web page and sitemap of the sources."""

    pages: dict[str, PageRecord] = Field(default_factory=dict)
    sitemaps: dict[str, SitemapRecord] = Field(default_factory=dict)

    @staticmethod
    def path(index_dir: Path) -> Path:
        return Path(index_dir) / WEB / FILE

    @classmethod
    def read(cls, index_dir: Path) -> PageStore:
        path = cls.path(index_dir)
        if not path.exists():
            return cls()
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValueError as exc:
            raise SourceError(path, f"is damaged ({str(exc)[:80]}); run `rag sync` to read the pages again") from None

    def write(self, index_dir: Path) -> None:
        path = self.path(index_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(self.model_dump_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def of_source(self, source: str) -> list[PageRecord]:
        """The pages a source gave: the page itself, or the pages of a sitemap (in the sitemap's order)."""
        if source in self.sitemaps:
            return [self.pages[u] for u in self.sitemaps[source].pages if u in self.pages]
        return [self.pages[source]] if source in self.pages else []

    def tried(self, source: str) -> bool:
        """Whether a sync read this source (or tried to: a page or sitemap that failed is known too)."""
        return source in self.sitemaps or source in self.pages

    def entries(self, source: str) -> list[Entry]:
        """The entries of a source, each with the day its page was last checked."""
        pages = self.of_source(source)
        return [e.model_copy(update={"checked_on": page.checked_on}) for page in pages for e in page.entries]

    def checksum(self, source: str) -> str:
        """A digest of what a source gave: its entries, not the days they were checked (a page read again
        unchanged publishes nothing; the day is read by :class:`CheckedDates`)."""
        body = [json.loads(e.model_copy(update={"checked_on": None}).model_dump_json()) for e in self.entries(source)]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def entry_id(page: str, anchor: str) -> str:
    """An entry's id: its page and its question's anchor, stable while the question keeps its place."""
    return hashlib.sha1(f"{page}#{anchor}".encode()).hexdigest()[:12]


class CheckedDates:
    """The day each web entry's page was last checked, read from the page store as the last sync left it — a sync
    that finds nothing changed publishes no version, but the days move on. The file is looked at again at most
    every :data:`LOOK_EVERY` seconds, and read again only when it changed."""

    LOOK_EVERY = 5.0

    def __init__(self, index_dir: Path, stale_after_days: float) -> None:
        self.path, self.after_days = PageStore.path(index_dir), stale_after_days
        self._days: dict[str, str] = {}
        self._seen: float | None = None
        self._looked = -1e9

    def of(self, entry_id: str, built: str | None) -> str | None:
        """The day the entry's page was last checked: from the page store, else as the version was built."""
        if built is None:
            return None
        now = time.monotonic()
        if now - self._looked > self.LOOK_EVERY:
            self._looked = now
            self._refresh()
        return self._days.get(entry_id, built)

    def forget(self) -> None:
        """Read the page store again at the next look (a new version was just published)."""
        self._looked, self._seen = -1e9, None

    def stale(self, checked_on: str | None) -> bool | None:
        return stale(checked_on, self.after_days) if checked_on else None

    def _refresh(self) -> None:
        try:
            changed = self.path.stat().st_mtime
        except OSError:
            return
        if changed == self._seen:
            return
        try:
            store = PageStore.model_validate_json(self.path.read_bytes())
        except (OSError, ValueError):
            return  # a damaged page store: the days of the version in service stay
        self._seen = changed
        self._days = {e.id: p.checked_on for p in store.pages.values() if p.checked_on for e in p.entries}


def stale(checked_on: str | None, after_days: float, today: dt.date | None = None) -> bool:
    """Whether a page last checked on ``checked_on`` is older than ``after_days``."""
    if not checked_on:
        return False
    try:
        day = dt.date.fromisoformat(checked_on)
    except ValueError:
        return False
    return ((today or dt.date.today()) - day).days > after_days
