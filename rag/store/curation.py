"""The team's decisions, as the store keeps them for every replica: curated items (new entries, phrasings, questions
out of scope) and the logged questions each decision resolved."""

from __future__ import annotations

import time

from rag.corpus.curated import CuratedItem, Curation
from rag.store.database import Database
from rag.store.privacy import mentions


class CuratedItems:
    """The curated table: one row per decision, its payload the item as JSON."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, item: CuratedItem) -> bool:
        """Keep a curated item (a new entry, phrasings, questions out of scope); True when it was not there."""
        existed = bool(self.db.run("SELECT 1 FROM curated WHERE id = ?", (item.id,)))
        self.db.run(
            "INSERT INTO curated VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, "
            "payload = excluded.payload",
            (item.id, item.kind, item.model_dump_json(exclude_none=True), item.at),
        )
        return not existed

    def all(self) -> Curation:
        """Every curated item, oldest first."""
        rows = self.db.run("SELECT payload FROM curated ORDER BY created_at, id")
        return Curation.of(CuratedItem.model_validate_json(payload) for (payload,) in rows)

    def erase(self, containing: str) -> tuple[int, int]:
        """Forget the questions that mention ``containing``: taken out of the decisions that hold them; a decision
        left without questions, or a new entry whose own question mentions it, is forgotten whole. Returns
        (questions, decisions) forgotten."""
        questions = dropped = 0
        for item in self.all().items:
            kept = [q for q in item.questions if not mentions(q, containing)]
            named = item.entry is not None and mentions(item.entry.question, containing)
            questions += len(item.questions) - len(kept) + int(named)
            if named or (item.kind != "new_entry" and not kept):
                self.db.run("DELETE FROM curated WHERE id = ?", (item.id,))
                dropped += 1
            elif len(kept) < len(item.questions):
                payload = item.model_copy(update={"questions": kept}).model_dump_json(exclude_none=True)
                self.db.run("UPDATE curated SET payload = ? WHERE id = ?", (payload, item.id))
        return questions, dropped


class Resolutions:
    """The resolved table: the logged questions a decision covered (they leave the gap report)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def mark(self, answer_ids: list[str], gap: str, action: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        for answer_id in answer_ids:
            self.db.run(
                "INSERT INTO resolved VALUES (?, ?, ?, ?) ON CONFLICT (answer_id) DO NOTHING",
                (answer_id, gap, action, at),
            )
