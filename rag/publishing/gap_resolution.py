"""Curation that republishes: a gap (or one logged question) resolved by the team becomes a new entry, phrasings
of an existing entry, or questions the FAQ does not cover; the decision is kept in the store, a new index
version is built with every decision in force and published (replicas follow it), and the gap's questions are
appended to the golden eval file — ``relevant`` the entry chosen, or ``[]`` when out of scope.

The HTTP API, the admin page and the CLI all call :class:`Curator`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.channels.handoff import asks_for_person
from rag.corpus.curated import CuratedItem, Curation, item_id, new_entry
from rag.corpus.sources import safe_url
from rag.errors import ApiError, StoreUnavailable
from rag.models import Question
from rag.publishing.gaps import Gap, GapFinder
from rag.query.service import RagService
from rag.store.feedback import FeedbackStore

log = logging.getLogger("rag.corpus.curated")


class Resolution(BaseModel):
    """How a gap is resolved (the body of ``POST /admin/gaps/{id}/resolve``)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["new_entry", "alternate", "out_of_scope", "dismiss"]
    question: str | None = Field(None, description="new_entry: its question (default: the gap's proposed title)")
    answer: str | None = Field(None, description="new_entry: its answer")
    url: str | None = Field(None, description="new_entry: its own page, when it has one")
    entry_id: str | None = Field(None, description="alternate: the entry the questions are phrasings of")


class Curator:
    """Reads the gaps of the question log and applies the team's decisions."""

    def __init__(
        self,
        service: RagService,
        store: FeedbackStore,
        finder: GapFinder,
        golden: Path,
    ) -> None:
        self.service, self.store, self.finder, self.golden = service, store, finder, golden

    def gaps(self, base_url: str | None = None, titled: bool = True) -> list[Gap]:
        """The gaps of the question log, those asked most first (``titled``: with the LLM's titles)."""
        # a request for a person is a handoff, not something the FAQ lacks
        rows = [
            r for r in self.store.question_log(self.finder.settings.low_confidence) if not asks_for_person(r["query"])
        ]
        llm = self.service.stages.llm
        titles = llm.titler.title if llm is not None and titled else None
        return self.finder.report(rows, self.service.index, self._ranker(base_url), titles)

    def _ranker(self, base_url: str | None) -> Callable[[Question], Any]:
        return lambda question: self.service.link(self.service.retrieve(question), base_url)

    def find(self, gap: str, base_url: str | None = None) -> Gap:
        """The gap with this id, else the one logged question with this answer id (as a gap of its own, under
        that id); 404 otherwise."""
        for found in self.gaps(base_url, titled=False):
            if found.id == gap:
                return found
        row = self.store.logged(gap)
        if row is None:
            raise ApiError(404, "unknown_gap", f"no gap nor logged question has the id {gap}; see GET /admin/gaps")
        single = self.finder.report([row], self.service.index, self._ranker(base_url))[0]
        return single.model_copy(update={"id": gap})

    def resolve(self, gap: str, resolution: Resolution, base_url: str | None = None) -> dict[str, Any]:
        """Apply a decision to a gap; everything is checked before anything is written."""
        found = self.find(gap, base_url)
        item = self._item(found, resolution)
        if item is not None:
            self.store.add_curated(item)
        self.store.mark_resolved(found.answer_ids, found.id, resolution.action)
        done: dict[str, Any] = {"gap": found.id, "action": resolution.action, "questions": len(found.texts)}
        if item is None:
            return done
        entry_id = item.entry.id if item.entry is not None else item.entry_id
        relevant = [entry_id] if entry_id else []
        self.append_golden(
            [{"query": q, "relevant": relevant, "source": "gap", "action": item.kind} for q in found.texts]
        )
        done.update(entry_id=entry_id, golden=str(self.golden), **self.publish())
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
            if self.service.index.entry(resolution.entry_id) is None:
                raise ApiError(404, "unknown_entry", f"the FAQ has no entry {resolution.entry_id}; see GET /entries")
            return CuratedItem(kind="alternate", entry_id=resolution.entry_id, **common)
        return CuratedItem(kind="out_of_scope", **common)

    def publish(self) -> dict[str, Any]:
        """Build and publish a new index version with every decision of the store (incrementally: only new
        texts are embedded); replicas follow it."""
        index = self.service.build(curation=self.store.curation())
        return {"version": index.version, "curated": index.manifest.curated}

    def export(self) -> str:
        """Every decision, as JSONL (for review in version control)."""
        return self.store.curation().to_jsonl()

    def import_(self, curation: Curation) -> dict[str, Any]:
        """Keep the decisions of a JSONL export (one imported twice is kept once) and publish."""
        added = sum(self.store.add_curated(item) for item in curation.items)
        return {"imported": len(curation.items), "new": added, **self.publish()}

    def append_golden(self, rows: list[dict[str, Any]]) -> None:
        """Append eval queries to the golden file, durably, one writer at a time."""
        self.golden.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        try:
            with self.golden.open("a", encoding="utf-8") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise StoreUnavailable(f"the golden eval file {self.golden} cannot be written ({exc.strerror})") from None
