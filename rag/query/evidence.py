"""Evidence in the passage of the entry ranked first, read from its words: does it hold the kind of thing the
question asks for (an amount for « combien », a date for « quand », a delay, a document, a place, a contact); how
much of the question's weight its best window of sentences covers, not only the whole passage; and how close
together the question's words stand in it. Cheap text rules on one passage, French and English."""

from __future__ import annotations

import re

from rag.language.analyzer import FrenchAnalyzer, fold
from rag.language.text import sentence_units

_analyzer = FrenchAnalyzer()
WINDOW = 2  # sentences
SPAN = 12  # tokens: a question's words found this close together read as one statement

# what a question asks for (on folded text), and what in a passage gives it (on the passage as written)
_MONTHS = "janvier|fevrier|février|mars|avril|mai|juin|juillet|aout|août|septembre|octobre|novembre|decembre|décembre"
KINDS: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    "amount": (
        re.compile(
            r"\b(combien (?:coute|ca coute|faut-il payer)|cout|couts|coute|prix|tarif|tarifs|montant|frais|"
            r"payant|gratuit|gratuite|how much|cost|costs|price|fee|fees|amount)\b"
        ),
        re.compile(
            r"\d[\d\s.,]*\s?(?:€|euros?|eur\b|%|k€|m€)|\b(?:gratuit|gratuite|gratuits|payant|payante|free of "
            r"charge|free|remboursé|pris en charge|forfait)\b",
            re.I,
        ),
    ),
    "date": (
        re.compile(r"\b(quand|a partir de quand|jusqu a quand|date|dates|echeance|when|deadline|until when)\b"),
        re.compile(
            rf"\b\d{{1,2}}[/.-]\d{{1,2}}[/.-]\d{{2,4}}\b|\b(?:19|20)\d\d\b|\b(?:{_MONTHS})\b|\b(?:avant le|après le|"
            r"à partir du|à compter du|jusqu'au|dès le|before|after|from|until)\b",
            re.I,
        ),
    ),
    "delay": (
        re.compile(r"\b(delai|delais|combien de temps|duree|how long|how many days|time limit)\b"),
        re.compile(
            r"\b\d+\s*(?:jours?|semaines?|mois|ans|années|heures?|h\b|days?|weeks?|months?|years?|hours?)\b|"
            r"\b(?:immédiatement|sans délai|sous \w+ jours|dans les meilleurs délais|immediately|within)\b",
            re.I,
        ),
    ),
    "document": (
        re.compile(
            r"\b(quel document|quels documents|quelle piece|quelles pieces|piece justificative|justificatif|"
            r"justificatifs|formulaire|attestation|which document|what documents|form)\b"
        ),
        re.compile(
            r"\b(?:document|documents|pièce|pièces|justificatif|justificatifs|formulaire|attestation|certificat|"
            r"preuve|preuves|copie|fichier|modèle|form|certificate|proof|copy|file|template)\b",
            re.I,
        ),
    ),
    "place": (
        re.compile(r"^\s*ou\b|\bou (?:trouver|se trouve|deposer|envoyer|telecharger|consulter)\b|\bwhere\b"),
        re.compile(
            r"https?://|www\.|\b(?:site|rubrique|espace|portail|page|plateforme|adresse|guichet|téléchar\w+|"
            r"website|portal|section)\b",
            re.I,
        ),
    ),
    "contact": (
        re.compile(
            r"\b(contacter|joindre|appeler|ecrire a|numero|telephone|mail|e-mail|courriel|contact|call|phone|"
            r"email)\b"
        ),
        re.compile(
            r"@|https?://|\b(?:\d{2}[ .]?){5}\b|\b(?:contact|support|assistance|téléphone|courriel|e-mail|mail|"
            r"formulaire|helpdesk|phone|email)\b",
            re.I,
        ),
    ),
}


def asked_kinds(question: str) -> list[str]:
    """The kinds of thing ``question`` asks for."""
    folded = fold(question).replace("'", " ")
    return [kind for kind, (asks, _) in KINDS.items() if asks.search(folded)]


def evidence(question: str, weights: dict[str, float], passage: str) -> dict[str, float]:
    """``kind_missing`` (1: it asks for a kind of thing the passage does not hold), ``window_cover`` (the share of
    the question's weight — ``weights``: term → IDF — the passage's best window of sentences holds) and
    ``proximity`` (the share of the question's found weight that stands within a span of a few words)."""
    kinds = asked_kinds(question)
    missing = [k for k in kinds if not KINDS[k][1].search(passage)]
    total = sum(weights.values()) or 1.0
    sentences = [set(_analyzer(s)) for s in sentence_units(passage)] or [set()]
    windows = [set().union(*sentences[i : i + WINDOW]) for i in range(max(1, len(sentences) - WINDOW + 1))]
    window_cover = max(sum(w for t, w in weights.items() if t in window) for window in windows) / total
    return {
        "kind_missing": float(bool(missing)),
        "window_cover": window_cover,
        "proximity": _proximity(weights, _analyzer(passage)) / total,
    }


def _proximity(weights: dict[str, float], tokens: list[str]) -> float:
    """The largest weight of distinct question terms found together within :data:`SPAN` tokens of the passage."""
    positions = [(i, t) for i, t in enumerate(tokens) if t in weights]
    best = 0.0
    start = 0
    for end in range(len(positions)):
        while positions[end][0] - positions[start][0] >= SPAN:
            start += 1
        best = max(best, sum(weights[t] for t in {t for _, t in positions[start : end + 1]}))
    return best
