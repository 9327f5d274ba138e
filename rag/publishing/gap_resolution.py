"""Gap resolution: a gap (or one logged question) resolved by the team becomes a new entry, phrasings of an
existing entry, or questions the FAQ does not cover. The decision is kept in the store, a new index version is
built with every decision of the store and published (replicas follow it), the gap's questions are appended to
the golden eval file — ``relevant`` the entry chosen, or ``[]`` when out of scope — and only then are its
questions marked resolved: a step that fails leaves the gap in the report, to be resolved again.

The HTTP API, the admin page and the CLI all call :class:`Curator`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.corpus.curated import CuratedItem, Curation, item_id, new_entry
from rag.corpus.sources import safe_url
from rag.errors import ApiError
from rag.language.smalltalk import asks_for_person
from rag.models import Question, SearchResult
from rag.publishing import golden
from rag.publishing.gaps import Gap, GapFinder, gap_id
from rag.publishing.publisher import Publisher
from rag.query.cache import LRUCache
from rag.store import Store

log = logging.getLogger("rag.publishing.curation")


class Resolution(BaseModel):
    """How a gap is resolved (the body of ``POST /admin/gaps/{id}/resolve``)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["new_entry", "alternate", "out_of_scope", "dismiss"]
    question: str | None = Field(
        None, max_length=1000, description="new_entry: its question (default: the gap's proposed title)"
    )
    answer: str | None = Field(None, max_length=20_000, description="new_entry: its answer")
    url: str | None = Field(None, max_length=2000, description="new_entry: its own page, when it has one")
    entry_id: str | None = Field(
        None, max_length=200, description="alternate: the entry the questions are phrasings of"
    )


class Curator:
    """Reads the gaps of the question log and applies the team's decisions."""

    def __init__(self, publisher: Publisher, store: Store, finder: GapFinder, golden: Path) -> None:
        self.publisher, self.query = publisher, publisher.query
        self.store, self.finder, self.golden = store, finder, golden
        self._titles: LRUCache[tuple[str | None]] = LRUCache(512)  # (title,): a title the LLM could not give is None

    def gaps(self, base_url: str | None = None, limit: int | None = None) -> list[Gap]:
        """The gaps of the question log, those asked most first; the first ``limit`` get the LLM's titles
        (asked once per gap and set of questions)."""
        # a request for a person is a handoff, not something the FAQ lacks
        rows = [r for r in self.store.answers.question_log(self.finder.settings.low_confidence)]
        rows = [r for r in rows if not asks_for_person(r["query"])]
        found = self.finder.report(rows, self.query.index, lambda q: self._ranked(q, base_url))
        llm = self.query.llm
        if llm is not None:
            for gap in found[:limit]:
                key = json.dumps([gap.id, gap.questions[:8]], ensure_ascii=False)
                known = self._titles.get(key)
                if known is None:
                    known = (llm.titler.title(gap.questions),)
                    self._titles.put(key, known)
                gap.title = known[0]
        return found

    def _ranked(self, question: Question, base_url: str | None) -> SearchResult:
        return self.query.link(self.query.retrieve(question), base_url)

    def find(self, gap: str, base_url: str | None = None) -> Gap:
        """The gap with this id; else the gap that now holds the question it was named after (clusters re-form as
        questions come in); else the one logged question with this answer id, as a gap of its own; 404
        otherwise."""
        found = self.gaps(base_url)
        for candidate in found:
            if candidate.id == gap:
                return candidate
        for candidate in found:
            if any(gap_id(answer_id) == gap for answer_id in candidate.answer_ids):
                return candidate
        row = self.store.answers.logged(gap)
        if row is None:
            raise ApiError(404, "unknown_gap", f"no gap nor logged question has the id {gap}; see GET /admin/gaps")
        single = self.finder.report([row], self.query.index, lambda q: self._ranked(q, base_url))[0]
        return single.model_copy(update={"id": gap})

    def resolve(self, gap: str, resolution: Resolution, base_url: str | None = None) -> dict[str, Any]:
        """Apply a decision to a gap; everything is checked before anything is written, and its questions are
        marked resolved last."""
        found = self.find(gap, base_url)
        item = self._item(found, resolution)
        done: dict[str, Any] = {"gap": found.id, "action": resolution.action, "questions": len(found.texts)}
        if item is not None:
            self.store.curated.add(item)  # kept once, however often it is tried
            entry_id = item.entry.id if item.entry is not None else item.entry_id
            done.update(entry_id=entry_id, golden=str(self.golden), **self.publish())
            relevant = [entry_id] if entry_id else []
            self.append_golden(
                [
                    {"query": q, "relevant": relevant, "source": golden.SOURCE, "action": item.kind, "gap": found.id}
                    for q in found.texts
                ]
            )
        self.store.resolutions.mark(found.answer_ids, found.id, resolution.action)
        return done

    def _item(self, gap: Gap, resolution: Resolution) -> CuratedItem | None:
        action = resolution.action
        if action == "dismiss":
            return None
        common = {"id": item_id(action, gap.id), "questions": gap.texts, "gap": gap.id}
        if action == "new_entry":
            question = (resolution.question or gap.title or gap.question).strip()
            answer = (resolution.answer or "").strip()
            if not answer:
                raise ApiError(422, "empty_answer", "a new_entry needs its answer: send 'answer' with the entry's text")
            if resolution.url and not safe_url(resolution.url):
                raise ApiError(422, "invalid_url", "'url' must be an http(s) address")
            return CuratedItem(kind="new_entry", entry=new_entry(question, answer, resolution.url), **common)
        if action == "alternate":
            if not resolution.entry_id:
                raise ApiError(
                    422, "missing_entry_id", "an alternate needs 'entry_id': the entry the questions rephrase"
                )
            if self.query.index.entry(resolution.entry_id) is None:
                raise ApiError(404, "unknown_entry", f"the FAQ has no entry {resolution.entry_id}; see GET /entries")
            return CuratedItem(kind="alternate", entry_id=resolution.entry_id, **common)
        return CuratedItem(kind="out_of_scope", **common)

    def publish(self) -> dict[str, Any]:
        """Build and publish a new index version with every decision of the store (incrementally: only new
        texts are embedded); replicas follow it."""
        index = self.publisher.build()
        return {"version": index.version, "curated": index.manifest.curated}

    def export(self) -> str:
        """Every decision, as JSONL (for review in version control)."""
        return self.store.curated.all().to_jsonl()

    def import_(self, curation: Curation) -> dict[str, Any]:
        """Keep the decisions of a JSONL export (one imported twice is kept once) and publish."""
        added = sum(self.store.curated.add(item) for item in curation.items)
        return {"imported": len(curation.items), "new": added, **self.publish()}

    def append_golden(self, rows: list[dict[str, Any]]) -> None:
        golden.append(self.golden, rows)
