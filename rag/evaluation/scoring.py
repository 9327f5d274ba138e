"""Evaluation formulas: ranking metrics (binary relevance), abstention, citations and faithfulness.

Faithfulness rule: the answer is split into sentences (list items stay with their sentence); a sentence
is *supported* when it carries at least one ``[n]`` marker and at least 60 % of its content terms
(French analyzer: folded, stemmed, no stopwords) appear in the text of the passages it cites.
Faithfulness is the share of supported sentences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rag.language.analyzer import FrenchAnalyzer
from rag.language.text import MARKER, sentence_units

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
    """Probability that a positive scores above a negative (ties count half), from the ranks of the scores
    (Mann–Whitney: ties share their mean rank)."""
    from scipy.stats import rankdata

    labels = np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return 0.0
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def expected_calibration_error(probabilities: Sequence[float], labels: Sequence[int], bins: int = 10) -> float:
    """Σ over equal-width bins of |mean probability − observed rate| × share of the items in the bin (a
    probability of 1.0 falls in the last bin)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if not p.size:
        return 0.0
    y = np.asarray(labels, dtype=np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    gaps = np.bincount(which, weights=p, minlength=bins) - np.bincount(which, weights=y, minlength=bins)
    return float(np.abs(gaps).sum() / p.size)


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
    """Area under the risk–coverage curve (lower is better): the mean risk of :func:`risk_coverage` over every
    coverage, questions of equal confidence taken in every order alike (their wrong answers spread evenly), so
    that the order the questions came in changes nothing."""
    c = np.asarray(confidences, dtype=np.float64)
    if not c.size:
        return 0.0
    order = np.argsort(-c, kind="stable")
    c, wrong = c[order], (~np.asarray(correct, dtype=bool)[order]).astype(np.float64)
    starts = np.r_[0, np.nonzero(np.diff(c))[0] + 1]  # where each group of equal confidence begins
    sizes = np.diff(np.r_[starts, c.size])
    group = np.repeat(np.arange(starts.size), sizes)
    before = np.r_[0.0, np.cumsum(wrong)][starts]  # wrong answers ranked above each group
    in_group = np.add.reduceat(wrong, starts)
    position = np.arange(c.size) - starts[group] + 1  # 1.. within the group
    expected = before[group] + position * in_group[group] / sizes[group]
    return float(np.mean(expected / np.arange(1, c.size + 1)))
