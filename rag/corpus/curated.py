"""What the team that owns the FAQ decided about the questions users asked: new entries, other phrasings of
existing entries, and questions the FAQ does not cover. Kept in the store (every replica sees them), carried
into every index version built after, and exported and imported as JSONL for review in version control.

- ``new_entry``: an entry added to the FAQ (source ``curated``), searched like the others;
- ``alternate``: questions embedded and searched like the question of an existing entry;
- ``out_of_scope``: questions the FAQ does not answer; the confidence of a new question reads how close it is
  to them against how close it is to the FAQ (:func:`rag.query.decision.scope_weight`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from rag.corpus.entries import Corpus, content_id
from rag.errors import ConfigError
from rag.models import Entry

Action = Literal["new_entry", "alternate", "out_of_scope"]
CURATED_SOURCE = "curated"


class CuratedItem(BaseModel):
    """One decision: its kind, the questions users asked that it covers, and what it adds."""

    id: str = Field(description="stable: the same decision imported twice is kept once")
    kind: Action
    questions: list[str] = Field(default_factory=list, description="the questions users asked (personal data removed)")
    entry: Entry | None = Field(None, description="new_entry: the entry added")
    entry_id: str | None = Field(None, description="alternate: the entry the questions are phrasings of")
    gap: str | None = Field(None, description="the gap it resolved, when it came from the gap report")
    at: float = Field(default_factory=time.time)

    @model_validator(mode="after")
    def _complete(self) -> CuratedItem:
        if self.kind == "new_entry" and (self.entry is None or not self.entry.answer.strip()):
            raise ValueError("a new_entry needs an entry with an answer")
        if self.kind == "alternate" and not self.entry_id:
            raise ValueError("an alternate needs the entry_id of the entry it rephrases")
        if self.kind != "new_entry" and not self.questions:
            raise ValueError(f"{self.kind} needs the questions it covers")
        return self


def new_entry(question: str, answer: str, url: str | None = None) -> Entry:
    """A curated entry, its id derived from its content like the entries of files without ids."""
    question, answer = question.strip(), answer.strip()
    return Entry(id=content_id(question, answer), question=question, answer=answer, url=url, source=CURATED_SOURCE)


def item_id(kind: str, key: str) -> str:
    return f"{kind[:3]}-" + hashlib.sha1(f"{kind}\x00{key}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Curation:
    """Every decision in force, oldest first."""

    items: tuple[CuratedItem, ...] = ()

    @classmethod
    def of(cls, items: Iterable[CuratedItem]) -> Curation:
        return cls(tuple(sorted(items, key=lambda i: (i.at, i.id))))

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def out_of_scope(self) -> list[str]:
        """The questions marked out of scope, each once."""
        seen: dict[str, None] = {}
        for item in self.items:
            if item.kind == "out_of_scope":
                seen.update(dict.fromkeys(q.strip() for q in item.questions if q.strip()))
        return list(seen)

    def counts(self) -> dict[str, int]:
        kinds = [i.kind for i in self.items]
        return {kind: kinds.count(kind) for kind in ("new_entry", "alternate", "out_of_scope")}

    def checksum(self) -> str:
        digest = hashlib.sha256()
        for item in self.items:
            digest.update(item.model_dump_json(exclude={"at"}).encode())
        return digest.hexdigest()

    def apply(self, corpus: Corpus) -> Corpus:
        """The corpus with the curated entries added and the curated phrasings given to their entries; a
        decision about an entry the sources no longer hold is reported and left out."""
        entries = {e.id: e for e in corpus.entries}
        warnings = list(corpus.warnings)
        alternates: dict[str, list[str]] = {}
        for item in self.items:
            if item.kind == "new_entry" and item.entry is not None:
                if item.entry.id in entries:
                    warnings.append(f"curated entry {item.entry.id} is already in the sources; kept once")
                else:
                    entries[item.entry.id] = item.entry.model_copy(update={"source": CURATED_SOURCE})
            elif item.kind == "alternate":
                if item.entry_id in entries:
                    alternates.setdefault(item.entry_id, []).extend(item.questions)
                else:
                    warnings.append(f"curated phrasings of entry {item.entry_id}, which the FAQ no longer holds")
        for entry_id, asked in alternates.items():
            entry = entries[entry_id]
            own = {entry.question or "", *entry.alternates}
            fresh = list(dict.fromkeys(q.strip() for q in asked if q.strip() and q.strip() not in own))
            entries[entry_id] = entry.model_copy(update={"alternates": [*entry.alternates, *fresh]})
        return Corpus(entries=list(entries.values()), warnings=warnings)

    def to_jsonl(self) -> str:
        return "".join(item.model_dump_json(exclude_none=True) + "\n" for item in self.items)

    @classmethod
    def parse(cls, text: str, where: str = "line") -> Curation:
        """Decisions from JSONL text (as :meth:`to_jsonl` writes it); a bad line is a :class:`ConfigError` that
        names it."""
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(CuratedItem.model_validate(json.loads(line)))
            except (ValueError, ValidationError, RecursionError) as exc:
                reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)[:200]
                raise ConfigError(f"{where} {number} is not a curated item ({reason}); nothing was imported") from None
        return cls.of(items)

    @classmethod
    def read(cls, path: Path) -> Curation:
        """Decisions from a JSONL file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        return cls.parse(text, f"{path} line")
