"""``rag eval generate``: a test set drawn from the FAQ itself, written by the configured LLM, for a person to
review — for each entry, questions in four styles (close to its wording, everyday words without the acronyms,
short as in a chat, English), and questions on neighbouring topics the FAQ does not answer; deduplicated and
labelled as generated. Also a starting set from the answers users voted on, where there are some.

An entry whose call fails, or whose reply is not in the asked form, is skipped and counted; when the LLM
stops answering, what was written so far is kept and the run says where it stopped.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import LLMError
from rag.indexing.faq_index import FaqIndex
from rag.llm.client import ChatClient
from rag.llm.prompts import PromptSet, quote
from rag.query.cache import normalise_query

STYLES = {"proche": "close", "quotidien": "everyday", "court": "short", "anglais": "english"}
_LINE = re.compile(r"^\W*(proche|quotidien|court|anglais)\s*:\s*(.+)$", re.IGNORECASE)
NEAR_PER_CALL = 10
STOP_AFTER = 3  # failed calls in a row after which the LLM is taken to be away


@dataclass
class Generated:
    rows: list[dict[str, Any]] = field(default_factory=list)
    entries_done: int = 0
    malformed: int = 0
    stopped: str | None = None  # why the run stopped before the end (the LLM away)
    _seen: set[str] = field(default_factory=set)

    def add(self, query: str, relevant: list[str], style: str, about: str) -> None:
        key = normalise_query(query)
        if key and key not in self._seen:
            self._seen.add(key)
            scope = {"scope": "near"} if not relevant else {}
            self.rows.append(
                {"query": query, "relevant": relevant, "style": style, "source": "generated", "about": about, **scope}
            )


class Generator:
    """Writes the questions of one FAQ with the LLM (see the module's text)."""

    def __init__(self, client: ChatClient, prompts: PromptSet, faq_name: str, timeout: float = 60.0) -> None:
        self.client, self.prompts, self.faq_name, self.timeout = client, prompts, faq_name, timeout

    def _ask(self, content: str) -> str:
        deadline = time.monotonic() + self.timeout
        return self.client.complete([{"role": "user", "content": content}], deadline, max_tokens=400)

    def run(
        self,
        index: FaqIndex,
        entries: Iterable[int],
        near: int,
        progress: Callable[[int], None] | None = None,
        written: Callable[[Generated], None] | None = None,
    ) -> Generated:
        """Questions about ``entries``, then ``near`` questions the FAQ does not answer; ``written`` is called
        after each step so that what is done is kept whatever happens next."""
        out, failures = Generated(), 0
        for entry in entries:
            found = index.entries[entry]
            content = self.prompts.generate.render(
                faq_name=self.faq_name, title=quote(found.question or ""), text=quote(found.answer[:4000])
            )
            try:
                reply = self._ask(content)
                failures = 0
            except LLMError as exc:
                failures += 1
                if failures >= STOP_AFTER:
                    out.stopped = f"the LLM failed {failures} times in a row ({exc.reason})"
                    break
                continue
            lines = [m for m in (_LINE.match(line.strip()) for line in reply.splitlines()) if m]
            if not lines:
                out.malformed += 1
            for match in lines:
                out.add(match.group(2).strip(), [found.id], STYLES[match.group(1).lower()], found.question or found.id)
            out.entries_done += 1
            if progress:
                progress(out.entries_done)
            if written:
                written(out)
        if out.stopped is None and near:
            self._near(index, near, out)
            if written:
                written(out)
        return out

    def _near(self, index: FaqIndex, count: int, out: Generated) -> None:
        titles = "\n".join(quote(e.question) for e in index.entries if e.question)[:6000]
        while count > 0:
            content = self.prompts.near.render(faq_name=self.faq_name, titles=titles, count=min(count, NEAR_PER_CALL))
            try:
                reply = self._ask(content)
            except LLMError as exc:
                out.stopped = f"the LLM failed while writing questions the FAQ does not answer ({exc.reason})"
                return
            lines = [line.strip(" -•*\t") for line in reply.splitlines() if len(line.strip()) >= 8]
            if not lines:
                out.malformed += 1
                return
            for line in lines[: min(count, NEAR_PER_CALL)]:
                out.add(line, [], "near", "")
            count -= NEAR_PER_CALL


def from_votes(feedback: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Questions users voted on: a helpful answer's first cited entry as the answer to check, an unhelpful or
    declined one left for a person to label."""
    rows, seen = [], set()
    for item in feedback:
        key = normalise_query(item["query"])
        if key in seen or not key:
            continue
        seen.add(key)
        relevant = item["cited_ids"][:1] if item["helpful"] and not item["abstained"] else []
        rows.append(
            {
                "query": item["query"],
                "relevant": relevant,
                "style": "voted",
                "source": "votes",
                "to_review": not relevant,
            }
        )
    return rows


def write(rows: list[dict[str, Any]], jsonl: Path) -> Path:
    """The set as JSONL (read by ``rag eval``) and the same as CSV beside it (for a person to edit)."""
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    tmp = jsonl.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(jsonl)
    table = jsonl.with_suffix(".csv")
    with table.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["query", "relevant", "style", "scope", "about", "source"])
        for r in rows:
            writer.writerow(
                [r["query"], " ".join(r["relevant"]), r["style"], r.get("scope", ""), r.get("about", ""), r["source"]]
            )
    return table
