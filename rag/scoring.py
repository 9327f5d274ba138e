"""Evaluation formulas: ranking metrics (binary relevance), abstention, citations and faithfulness.

Faithfulness rule: the answer is split into sentences (list items stay with their sentence); a sentence
is *supported* when it carries at least one ``[n]`` marker and at least 60 % of its content terms
(French analyzer: folded, stemmed, no stopwords) appear in the text of the passages it cites.
Faithfulness is the share of supported sentences.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from .analyzer import FrenchAnalyzer
from .chunking import split_sentences

MARKER = re.compile(r"\s*\[(\d{1,3})\]")
SUPPORT_THRESHOLD = 0.6
_analyzer = FrenchAnalyzer()


def recall_at(ranking: Sequence[str], relevant: set[str], k: int) -> float:
    return len(set(ranking[:k]) & relevant) / len(relevant) if relevant else 0.0


def mrr_at(ranking: Sequence[str], relevant: set[str], k: int = 10) -> float:
    for rank, doc in enumerate(ranking[:k], start=1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranking: Sequence[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1.0 / math.log2(rank + 1) for rank, doc in enumerate(ranking[:k], start=1) if doc in relevant)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), as numpy's default."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


_LEADING_MARKERS = re.compile(r"^((?:\[\d{1,3}\]\s*)+)")


def answer_sentences(answer: str) -> list[str]:
    """Sentences of an answer; markers that open a piece belong to the sentence before them."""
    out: list[str] = []
    for line in answer.split("\n"):
        if not line.strip():
            continue
        if re.match(r"^\s*(?:[-•*]|\d+[.)])\s+", line) and out:
            out[-1] += "\n" + line.strip()
            continue
        for sentence in split_sentences(line):
            lead = _LEADING_MARKERS.match(sentence)
            if lead and out:
                out[-1] += " " + lead.group(1).strip()
                sentence = sentence[lead.end() :].strip()
            if sentence:
                out.append(sentence)
    return out


def supported(sentence: str, cited_texts: Sequence[str]) -> bool:
    if not cited_texts:
        return False
    terms = set(_analyzer(MARKER.sub(" ", sentence)))
    if not terms:
        return True  # nothing to check in a sentence without content words
    source = set(_analyzer(" ".join(cited_texts)))
    return len(terms & source) / len(terms) >= SUPPORT_THRESHOLD


def faithfulness(answer: str, passages: Sequence[str]) -> float:
    """Share of answer sentences supported by the passages they cite (1-based ``[n]`` into ``passages``)."""
    sentences = answer_sentences(answer)
    if not sentences:
        return 0.0
    ok = 0
    for sentence in sentences:
        cited = [passages[int(n) - 1] for n in MARKER.findall(sentence) if 1 <= int(n) <= len(passages)]
        ok += supported(sentence, cited)
    return ok / len(sentences)


def citation_precision(cited: Sequence[str], relevant: set[str]) -> tuple[int, int]:
    """(cited entries that are relevant, cited entries) for micro-averaging."""
    unique = list(dict.fromkeys(cited))
    return sum(c in relevant for c in unique), len(unique)
