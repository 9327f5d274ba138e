"""Text rules shared by every stage: sentences, list items, URLs, citation markers, "don't know"."""

from __future__ import annotations

import re

URL = re.compile(r"https?://[^\s<>\"')\]]+")
MARKER = re.compile(r"\[(\d{1,3})\]")
# "[1]", "[1, 2]", "[1][2]", "[1-2]", "[1 et 2]" as an LLM may write them
MARKER_GROUP = re.compile(r"\[\s*(\d{1,3}(?:\s*(?:[,;–-]|et|and)\s*\d{1,3})*)\s*\]")
LIST_ITEM = re.compile(r"^\s*(?:[-•*]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?…;])\s+(?=[«\"(\[A-ZÀ-ÖØ-Þ0-9-])")
_LEADING_MARKERS = re.compile(r"^((?:\[\d{1,3}\]\s*)+)")

DONT_KNOW = {"fr": "Je ne sais pas.", "en": "I don't know."}
_DONT_KNOW = re.compile(
    r"^\W*(je ne sais pas|i don['’]?t know|i do not know|les passages ne permettent pas|the passages do not)",
    re.IGNORECASE,
)


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph, on end punctuation followed by a capital, digit or quote."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def sentence_units(text: str) -> list[str]:
    """Sentences of a text; list items stay with the sentence that introduced the list (ends with ':')
    or with the item before them. Citation markers opening a sentence belong to the sentence before."""
    units: list[str] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        if LIST_ITEM.match(line) and units and (units[-1].rstrip().endswith(":") or "\n" in units[-1]):
            units[-1] += "\n" + line.strip()
            continue
        for sentence in split_sentences(line):
            lead = _LEADING_MARKERS.match(sentence)
            if lead and units:
                units[-1] += " " + lead.group(1).strip()
                sentence = sentence[lead.end() :].strip()
            if sentence:
                units.append(sentence)
    return units


def extract_links(text: str) -> list[str]:
    """URLs written in the text, in order, without duplicates or trailing punctuation."""
    seen: dict[str, None] = {}
    for match in URL.finditer(text):
        seen.setdefault(match.group(0).rstrip(".,;:!?"), None)
    return list(seen)


def is_dont_know(text: str) -> bool:
    """The text opens by saying the passages do not answer (in French or English)."""
    return bool(_DONT_KNOW.match(text))
