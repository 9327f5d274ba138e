"""A corpus: the entries read from the sources, with what was said while reading them, and the content id of an
entry that has none of its own."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from rag.models import Entry


@dataclass
class Corpus:
    """Entries of one or more sources, deduplicated, with what was reported while loading."""

    entries: list[Entry]
    warnings: list[str] = field(default_factory=list)

    def checksum(self) -> str:
        """A digest of the entries' content; changes whenever any entry changes (not when its web page is only
        checked again)."""
        digest = hashlib.sha256()
        for entry in self.entries:
            unchecked = entry.model_copy(update={"checked_on": None}) if entry.checked_on else entry
            digest.update(unchecked.model_dump_json().encode())
        return digest.hexdigest()


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def content_id(question: str | None, answer: str) -> str:
    """An id derived from the entry's content, so it survives rebuilds and reordering."""
    return hashlib.sha1(f"{_squash(question or '')}\n{_squash(answer)}".encode()).hexdigest()[:12]
