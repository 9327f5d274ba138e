"""The sources' quality report (``rag sources check``, ``GET /admin/sources``): entries that duplicate each
other (near-identical answers), questions asked twice with different answers (conflicts), empty or overlong
answers, and, for web sources, pages that gave no entry, that could not be read, or that were not checked for
``RAG_STALE_AFTER_DAYS``. Texts are compared on their words once accents and case are folded, so the report
is the same on every machine."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

from rag.corpus.web.pages import PageStore, stale
from rag.language.analyzer import fold
from rag.models import Entry

DUPLICATE = 0.9  # answers sharing this share of their word trigrams are one answer given twice
DIFFERENT_ANSWER = 0.5  # one question's two answers sharing less than this share of their words: a conflict
# words that do not change what a question asks: « Qu'est-ce que le RGPD ? » is « Qu'est-ce que RGPD »
STOP = frozenset(
    [
        "le",
        "la",
        "les",
        "l",
        "un",
        "une",
        "des",
        "de",
        "du",
        "d",
        "et",
        "a",
        "au",
        "aux",
        "en",
        "est",
        "ce",
        "que",
        "qu",
        "quoi",
    ]
)
SHORT, LONG = 20, 8000  # characters: an answer below is empty, above is too long to be cited usefully
WORD = re.compile(r"\w+")


@dataclass
class Finding:
    kind: str  # duplicate, conflict, empty, overlong, no_entries, unreadable, stale
    ids: list[str]
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _words(text: str) -> list[str]:
    return WORD.findall(fold(text or ""))


def _shingles(text: str, size: int = 3) -> frozenset[tuple[str, ...]]:
    words = _words(text)
    if len(words) < size:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(tuple(words[i : i + size]) for i in range(len(words) - size + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _short(text: str | None, size: int = 70) -> str:
    text = re.sub(r"\s+", " ", text or "").strip()
    return text if len(text) <= size else text[: size - 1] + "…"


def check(entries: list[Entry], pages: PageStore | None = None, stale_after_days: float = 7.0) -> list[Finding]:
    """Every finding about ``entries`` (and the web pages of ``pages``), most serious kinds first."""
    duplicates = _near_identical(entries)
    found = duplicates + _asked_twice(entries, {tuple(f.ids) for f in duplicates}) + _sizes(entries)
    found += _pages(pages, stale_after_days) if pages else []
    return sorted(found, key=lambda f: KINDS.index(f.kind))


KINDS = ["conflict", "duplicate", "unreadable", "no_entries", "stale", "empty", "overlong"]


def _near_identical(entries: list[Entry]) -> list[Finding]:
    """Pairs of answers sharing ``DUPLICATE`` of their word trigrams (in the entries' order)."""
    answers = {e.id: _shingles(e.answer) for e in entries}
    order = {e.id: n for n, e in enumerate(entries)}
    by_size = sorted(entries, key=lambda e: len(answers[e.id]))
    found = []
    for i, a in enumerate(by_size):  # such a share needs sizes within that ratio: the other pairs are skipped
        for b in by_size[i + 1 :]:
            if len(answers[a.id]) < DUPLICATE * len(answers[b.id]):
                break
            shared = jaccard(answers[a.id], answers[b.id])
            if shared >= DUPLICATE:
                first, second = sorted((a.id, b.id), key=order.__getitem__)
                found.append(Finding("duplicate", [first, second], f"near-identical answers ({shared:.0%} shared)"))
    return found


def _asked_twice(entries: list[Entry], known: set[tuple[str, ...]]) -> list[Finding]:
    """One question asked twice: a duplicate when answered alike, a conflict otherwise."""
    asked: dict[tuple[str, ...], list[Entry]] = {}
    for entry in entries:
        key = tuple(w for w in _words(entry.question or "") if w not in STOP)
        if key:
            asked.setdefault(key, []).append(entry)
    found = []
    for group in asked.values():
        for a, b in combinations(group, 2):
            if (a.id, b.id) in known:
                continue
            alike = jaccard(frozenset(_words(a.answer)), frozenset(_words(b.answer)))
            if alike < DIFFERENT_ANSWER:
                detail = f"« {_short(a.question)} » is asked twice and answered differently ({alike:.0%} shared)"
                found.append(Finding("conflict", [a.id, b.id], detail))
            else:
                detail = f"« {_short(a.question)} » is asked twice, answered alike ({alike:.0%} shared)"
                found.append(Finding("duplicate", [a.id, b.id], detail))
    return found


def _sizes(entries: list[Entry]) -> list[Finding]:
    found = []
    for entry in entries:
        size = len(entry.answer.strip())
        if size < SHORT:
            found.append(Finding("empty", [entry.id], f"an answer of {size} characters: « {_short(entry.answer)} »"))
        elif size > LONG:
            found.append(Finding("overlong", [entry.id], f"an answer of {size} characters (above {LONG})"))
    return found


def _pages(pages: PageStore, stale_after_days: float) -> list[Finding]:
    found = []
    for page in pages.pages.values():
        if page.error and not page.entries:
            found.append(Finding("no_entries", [page.url], page.error))
        elif page.error:
            found.append(Finding("unreadable", [page.url], f"{page.error} (its {len(page.entries)} entries kept)"))
        if stale(page.checked_on, stale_after_days):
            found.append(Finding("stale", [page.url], f"last checked on {page.checked_on}"))
    return found
