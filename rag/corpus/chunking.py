"""Split FAQ answers into passages that fit the embedder's window."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rag.language.text import split_sentences
from rag.models import Chunk, Entry

TokenCounter = Callable[[str], int]


def _split_words(text: str, budget: int, count: TokenCounter) -> list[str]:
    words, pieces, current = text.split(), [], []
    for word in words:
        if current and count(" ".join([*current, word])) > budget:
            pieces.append(" ".join(current))
            current = []
        current.append(word)
    if current:
        pieces.append(" ".join(current))
    return pieces


def _units(answer: str, budget: int, count: TokenCounter) -> list[tuple[str, int]]:
    """Paragraphs that fit, else their sentences, else word windows; with their token counts."""
    units: list[tuple[str, int]] = []
    for paragraph in (p.strip() for p in answer.split("\n")):
        if not paragraph:
            continue
        size = count(paragraph)
        if size <= budget:
            units.append((paragraph, size))
            continue
        for sentence in split_sentences(paragraph):
            size = count(sentence)
            if size <= budget:
                units.append((sentence, size))
            else:
                units.extend((piece, count(piece)) for piece in _split_words(sentence, budget, count))
    return units


def chunk_entry(entry: Entry, count: TokenCounter, max_tokens: int, overlap: int = 1) -> list[Chunk]:
    """One chunk when the entry fits ``max_tokens``; otherwise paragraph/sentence packs with overlap.

    The question (when there is one) is prepended to each chunk for embedding, so its length is
    taken out of the budget.
    """
    question_cost = count(entry.question) if entry.question else 0
    budget = max(max_tokens - question_cost, max_tokens // 4)

    def make(position: int, text: str) -> Chunk:
        return Chunk(entry_id=entry.id, position=position, text=text, question=entry.question, url=entry.url)

    if count(entry.answer) <= budget:
        return [make(0, entry.answer)]
    groups: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    for unit in _units(entry.answer, budget, count):
        if current and sum(s for _, s in current) + unit[1] > budget:
            groups.append(current)
            current = current[-overlap:] if overlap else []
            while current and sum(s for _, s in current) + unit[1] > budget:
                current = current[1:]
        current.append(unit)
    if current:
        groups.append(current)
    return [make(i, "\n".join(text for text, _ in group)) for i, group in enumerate(groups)]


def chunk_entries(entries: Iterable[Entry], count: TokenCounter, max_tokens: int, overlap: int = 1) -> list[Chunk]:
    return [chunk for entry in entries for chunk in chunk_entry(entry, count, max_tokens, overlap)]
