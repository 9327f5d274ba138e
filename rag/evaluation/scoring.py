"""Evaluation formulas: ranking metrics (binary relevance), abstention, citations and faithfulness.

Faithfulness rule: the answer is split into sentences (list items stay with their sentence); a sentence
is *supported* when it carries at least one ``[n]`` marker and at least 60 % of its content terms
(French analyzer: folded, stemmed, no stopwords) appear in the text of the passages it cites.
Faithfulness is the share of supported sentences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..analyzer import FrenchAnalyzer
from ..text import MARKER, sentence_units

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
    sentences = sentence_units(answer)
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


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return 0.0
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def expected_calibration_error(probabilities: Sequence[float], labels: Sequence[int], bins: int = 10) -> float:
    """Σ over equal-width bins of |mean probability − observed rate| × share of the items in the bin."""
    total = len(probabilities)
    if not total:
        return 0.0
    error = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [(p, y) for p, y in zip(probabilities, labels) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if members:
            mean_p = sum(p for p, _ in members) / len(members)
            rate = sum(y for _, y in members) / len(members)
            error += abs(mean_p - rate) * len(members) / total
    return error


def risk_coverage(confidences: Sequence[float], correct: Sequence[bool]) -> list[tuple[float, float, float]]:
    """(threshold, coverage, risk) answering the most confident first: coverage is the share answered,
    risk the share of answered questions answered wrongly."""
    order = sorted(range(len(confidences)), key=lambda i: -confidences[i])
    out, wrong = [], 0
    for n, i in enumerate(order, start=1):
        wrong += not correct[i]
        out.append((confidences[i], n / len(order), wrong / n))
    return out


def aurc(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """Area under the risk–coverage curve (lower is better)."""
    curve = risk_coverage(confidences, correct)
    return sum(risk for _, _, risk in curve) / len(curve) if curve else 0.0
