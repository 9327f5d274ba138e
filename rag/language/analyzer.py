"""French text analysis for BM25: lowercase, elision and accent folding, stopwords, Snowball stems."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import Stemmer
from bm25s.stopwords import STOPWORDS_FRENCH

_TOKEN = re.compile(r"\w+", re.UNICODE)
_ELISION = re.compile(r"\b(?:[cdjlmnst]|qu|jusqu|lorsqu|puisqu|quoiqu)['’](?=\w)", re.IGNORECASE)


def fold(text: str) -> str:
    """Lowercase and strip accents: ``Ségur`` → ``segur``."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


_EXTRA_STOPWORDS = {
    "a",
    "afin",
    "ainsi",
    "alors",
    "apres",
    "aussi",
    "autre",
    "autres",
    "avoir",
    "bien",
    "car",
    "ceci",
    "cela",
    "celle",
    "celui",
    "cet",
    "cette",
    "chaque",
    "comme",
    "comment",
    "dans",
    "doit",
    "donc",
    "dont",
    "etre",
    "faire",
    "faut",
    "peut",
    "peuvent",
    "plus",
    "pour",
    "quand",
    "quel",
    "quelle",
    "quelles",
    "quels",
    "sans",
    "si",
    "sont",
    "sur",
    "tous",
    "tout",
    "toute",
    "toutes",
    "tres",
    "via",
    "y",
    "ya",
    "est",
    "quoi",
    "ou",
    "etc",
}
STOPWORDS = frozenset(fold(w) for w in STOPWORDS_FRENCH) | _EXTRA_STOPWORDS


class FrenchAnalyzer:
    """Turns text into BM25 terms. Stateless apart from a stem cache; safe to share."""

    def __init__(self, stopwords: frozenset[str] = STOPWORDS) -> None:
        self._stemmer = Stemmer.Stemmer("french")
        self._stopwords = stopwords
        self._stem = lru_cache(maxsize=200_000)(self._stem_uncached)

    def _stem_uncached(self, folded: str) -> str:
        # stemming the folded word makes "accès" and "acces" (typed without accents) one term
        return self._stemmer.stemWord(folded)

    def __call__(self, text: str) -> list[str]:
        text = _ELISION.sub(" ", text.lower())
        terms = []
        for word in _TOKEN.findall(text):
            folded = fold(word)
            if folded in self._stopwords or (len(folded) < 2 and not folded.isdigit()):
                continue
            terms.append(self._stem(folded))
        return terms
