"""Erasure of users' words everywhere the service copied them (a person's request under the GDPR, or a clean
slate): the question log and the votes on it, the comments, the spool of every process, and — for the words
themselves (``containing``) — the golden eval file's rows the service wrote, the team's curated questions, and
the index versions built with them: a new version is published without them, and the older ones that hold them
are removed."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.indexing.versions import CURATION, current_version, forget, version_dir
from rag.publishing import golden
from rag.publishing.publisher import Publisher
from rag.store import Store
from rag.store.privacy import mentions
from rag.store.spool import Spool

JUDGE_CACHE = "eval-cache/judge.jsonl"  # the LLM judge's verdicts, by question (beside the index folder)


@dataclasses.dataclass
class Erasure:
    """What an erasure reached, place by place."""

    answers: int = 0
    comments: int = 0
    spooled: int = 0
    golden: int = 0
    judged: int = 0
    curated_questions: int = 0
    curated_decisions: int = 0
    version: str | None = None
    versions_removed: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Eraser:
    """Erases from the store, the spool, the golden file and the index; ``publisher`` is called (and the index
    loaded) only when a version must be published again."""

    def __init__(self, settings: Settings, store: Store, publisher: Callable[[], Publisher]) -> None:
        self.settings, self.store, self.publisher = settings, store, publisher

    def erase(self, before: float | None = None, containing: str | None = None) -> Erasure:
        """Everything logged (neither given), what was logged before ``before``, and/or what mentions
        ``containing`` — there, and in every copy of those words."""
        done = Erasure()
        ids = set(self.store.answers.erase(before=before, containing=containing))
        done.answers = len(ids)
        if containing:
            done.comments = self.store.votes.erase_comments(containing)

        def spooled(record: dict[str, Any]) -> bool:
            if record.get("id") in ids or record.get("answer_id") in ids:
                return True
            if before is not None and float(record.get("at") or 0) >= before:
                return False
            words = " ".join(str(record.get(k) or "") for k in ("query", "answer", "comment"))
            return containing is None or mentions(words, containing)

        done.spooled = Spool(self.settings.spool_path).erase(spooled)
        if containing:
            self._words(containing, done)
        return done

    def _words(self, containing: str, done: Erasure) -> None:
        """The copies of the words themselves: the golden file, the judge's cache, the curated questions and the
        index versions built with them."""
        names = lambda text: mentions(text, containing)  # noqa: E731
        done.golden = golden.erase(self.settings.golden_path, names)
        done.judged = _erase_lines(self.settings.index.index_dir.parent / JUDGE_CACHE, names)
        done.curated_questions, done.curated_decisions = self.store.curated.erase(containing)
        index_dir = self.settings.index.index_dir

        def holds(version: Path) -> bool:  # every curated text a version was built with is in its curation file
            return any(names(_words(line)) for line in _text(version / CURATION).splitlines())

        changed = done.curated_questions or done.curated_decisions
        if current_version(index_dir) is not None and (changed or holds(version_dir(index_dir))):
            publisher = self.publisher()
            publisher.query.load()
            done.version = publisher.build().version
        done.versions_removed = forget(index_dir, holds)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _erase_lines(path: Path, names: Callable[[str], bool]) -> int:
    """Rewrite a JSON-lines file of the service's own without the lines ``names`` matches; how many."""
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not names(_words(line))]
    if len(kept) < len(lines):
        tmp = path.with_name(f".{path.name}.erasing")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, path)
    return len(lines) - len(kept)


def _words(line: str) -> str:
    """Every string a JSON line holds, one per line (the line itself when it is not JSON)."""
    try:
        found = [json.loads(line)]
    except ValueError:
        return line
    strings = []
    while found:
        value = found.pop()
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            found.extend(value.values())
        elif isinstance(value, list):
            found.extend(value)
    return "\n".join(strings)
