"""Questions made from a FAQ's own entries, as its users would ask them, to fit the confidence on that FAQ.

A user rarely types an entry's title: they ask about one detail of the answer, in fewer words, or in the
terms of their trade. Offline, without a model that writes, these kinds of question come close:

- ``user``: a few distinctive words of the entry, words the FAQ uses everywhere, and everyday words (which a
  large FAQ knows, a small one does not), behind a question's opening — as long as users' questions, and meeting
  the FAQ's vocabulary as partly as they do (measured on the Ségur set: the signals of these questions and of
  users' questions have close medians, where those of the three kinds below are far easier). The
  self-calibration asks these;

- ``detail``: the most distinctive words of one sentence of the answer, behind a question's opening
  (« Est-ce que … ? »);
- ``partial``: the entry's question with part of its words left out and a distinctive word of the answer
  in their place;
- ``keywords``: a few distinctive words of the entry, as typed in a search box.

"Distinctive" weighs a word by how rare it is in the FAQ (its inverse document frequency), so a question
names what sets its entry apart, as a user's does, and shares words with its neighbours as a user's does.
Each entry's questions come from a random generator seeded by its id: the same FAQ gives the same
questions. With an LLM, :mod:`rag.publishing.rewordings` writes them instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from pathlib import Path

import numpy as np

from rag.indexing.faq_index import FaqIndex
from rag.language.analyzer import FrenchAnalyzer
from rag.language.text import URL, sentence_units

STYLES = ("detail", "partial", "keywords")
EVERYDAY = Path(str(files("rag.assets").joinpath("everyday.txt")))
USER_POWER = 1.0  # the rarity a user's question leans on (the other kinds: its square)
OPENINGS = ("Est-ce que", "Comment", "Que faire pour", "Faut-il", "Quand", "Qui", "Pourquoi", "Quelles")
_WORD = re.compile(r"[^\W\d_][\w'’-]*[^\W_]|[^\W\d_]", re.UNICODE)
_analyzer = FrenchAnalyzer()


@dataclass(frozen=True)
class Probe:
    """A question about one entry (its row in the index)."""

    entry: int
    text: str
    style: str


def _rng(entry_id: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{entry_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _words(text: str) -> list[tuple[str, str]]:
    """The content words of a text as written, each with its BM25 term."""
    out = []
    for word in _WORD.findall(URL.sub(" ", text)):
        terms = _analyzer(word)
        if len(terms) == 1:
            out.append((word, terms[0]))
    return out


class ProbeWriter:
    """Writes questions about the entries of one index."""

    def __init__(self, index: FaqIndex, seed: int = 0) -> None:
        self.index, self.seed = index, seed

    def _weight(self, term: str) -> float:
        return self.index.idf.get(term, self.index.unknown_idf)

    def _pick(
        self, words: list[tuple[str, str]], count: int, rng: np.random.Generator, power: float = 2.0
    ) -> list[str]:
        """``count`` distinct words, drawn with a chance that grows with their rarity (IDF to the ``power``), kept in
        text order."""
        unique: dict[str, tuple[int, str]] = {}
        for position, (word, term) in enumerate(words):
            unique.setdefault(term, (position, word))
        if not unique:
            return []
        terms = list(unique)
        weights = np.array([self._weight(t) for t in terms]) ** power
        chosen = rng.choice(len(terms), size=min(count, len(terms)), replace=False, p=weights / weights.sum())
        return [unique[terms[i]][1] for i in sorted(chosen, key=lambda i: unique[terms[i]][0])]

    def detail(self, entry: int, rng: np.random.Generator) -> str | None:
        sentences = [s for s in sentence_units(self.index.entries[entry].answer) if len(_words(s)) >= 3]
        if not sentences:
            return None
        picked = self._pick(_words(sentences[rng.integers(len(sentences))]), int(rng.integers(3, 6)), rng)
        return f"{OPENINGS[rng.integers(len(OPENINGS))]} {' '.join(picked).lower()} ?"

    def partial(self, entry: int, rng: np.random.Generator) -> str | None:
        question = self.index.entries[entry].question
        if not question:
            return None
        title = _words(question)
        kept = self._pick(title, max(2, round(len(title) * rng.uniform(0.4, 0.7))), rng)
        added = self._pick(_words(self.index.entries[entry].answer), int(rng.integers(1, 3)), rng)
        words = kept + [w for w in added if w.lower() not in {k.lower() for k in kept}]
        return f"{OPENINGS[rng.integers(len(OPENINGS))]} {' '.join(words).lower()} ?"

    def keywords(self, entry: int, rng: np.random.Generator) -> str | None:
        found = self.index.entries[entry]
        picked = self._pick(_words(f"{found.question or ''} {found.answer}"), int(rng.integers(2, 5)), rng)
        return " ".join(picked).lower() or None

    @cached_property
    def _everyday(self) -> list[str]:
        """Everyday words, whether the FAQ uses them or not: a large FAQ knows most of them, a small one few, as it
        knows its users' words."""
        lines = EVERYDAY.read_text(encoding="utf-8").splitlines()
        return [w for line in lines if not line.startswith("#") for w in line.split() if _analyzer(w)]

    @cached_property
    def _common(self) -> list[str]:
        """Words the FAQ uses in many entries, as written: the top 2 % of its terms by entries."""
        counts = self.index.term_entries
        top = sorted(counts, key=lambda t: (-counts[t], t))[: max(20, len(counts) // 50)]
        written: dict[str, str] = {}
        for entry in self.index.entries:
            for word, term in _words(f"{entry.question or ''} {entry.answer}"):
                written.setdefault(term, word.lower())
        return [written[t] for t in top if t in written]

    def user(self, entry: int, rng: np.random.Generator) -> str | None:
        found = self.index.entries[entry]
        # users name their topic more than the entry's rarest words: drawn with a chance that grows with rarity alone
        own = self._pick(
            _words(f"{found.question or ''} {found.answer}"), int(rng.integers(2, 4)), rng, power=USER_POWER
        )
        if not own:
            return None
        words = [w.lower() for w in own]
        for pool, most in ((self._common, 2), (self._everyday, 2)):
            count = min(len(pool), int(rng.integers(0 if pool is self._common else 1, most + 1)))
            for i in rng.choice(len(pool), size=count, replace=False) if count else []:
                words.insert(int(rng.integers(0, len(words) + 1)), pool[int(i)])
        return f"{OPENINGS[rng.integers(len(OPENINGS))]} {' '.join(words)} ?"

    def fact(self, entry: int, rng: np.random.Generator) -> tuple[str, str] | None:
        """A user's question about one fact of the entry — one sentence of its answer — and the answer without that
        sentence (None for an answer of fewer than two sentences)."""
        found = self.index.entries[entry]
        sentences = [s for s in sentence_units(found.answer) if len(_words(s)) >= 3]
        if len(sentences) < 2:
            return None
        sentence = sentences[int(rng.integers(len(sentences)))]
        own = self._pick(_words(sentence), int(rng.integers(2, 4)), rng, power=USER_POWER)
        words = [w.lower() for w in own]
        for pool in (self._common, self._everyday):
            if pool and rng.random() < 0.5:
                words.insert(int(rng.integers(0, len(words) + 1)), pool[int(rng.integers(len(pool)))])
        rest = found.answer.replace(sentence, " ").strip()
        return f"{OPENINGS[rng.integers(len(OPENINGS))]} {' '.join(words)} ?", rest

    def facts(self, entries: list[int]) -> list[tuple[Probe, str]]:
        """A question about one fact of each entry that has several, with the answer without it."""
        out = []
        for entry in entries:
            made = self.fact(entry, _rng(self.index.entries[entry].id, self.seed + 2))
            if made:
                out.append((Probe(entry, made[0], "fact"), made[1]))
        return out

    def users(self, entries: list[int], each: int = 1) -> list[Probe]:
        """``each`` questions of the ``user`` kind about each entry."""
        probes = []
        for entry in entries:
            rng = _rng(self.index.entries[entry].id, self.seed + 1)
            for _ in range(each):
                text = self.user(entry, rng)
                if text:
                    probes.append(Probe(entry, text, "user"))
        return probes

    def partials(self, entries: list[int]) -> list[Probe]:
        """A question of the ``partial`` kind about each entry that has a title."""
        made = ((entry, self.partial(entry, _rng(self.index.entries[entry].id, self.seed + 3))) for entry in entries)
        return [Probe(entry, text, "partial") for entry, text in made if text]

    def write(self, entries: list[int]) -> list[Probe]:
        """One question of each style about each entry (fewer when an entry has no title or little text)."""
        probes = []
        for entry in entries:
            rng = _rng(self.index.entries[entry].id, self.seed)
            for style in STYLES:
                text = getattr(self, style)(entry, rng)
                if text:
                    probes.append(Probe(entry, text, style))
        return probes
