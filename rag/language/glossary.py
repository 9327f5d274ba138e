"""A domain glossary kept as data beside the corpus: groups of equivalent terms (an acronym and its
expansion, a jargon word and its everyday words). Text mentioning one term of a group gets the
others appended, so that "PSC" finds "Pro Santé Connect" and the reverse."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from rag.config import is_url
from rag.errors import ConfigError
from rag.language.analyzer import fold


class Glossary:
    """Groups of equivalent terms. Short all-caps acronyms (≤ 3 letters) match case-sensitively,
    so the acronym ``VA`` is not confused with the French verb *va*."""

    def __init__(self, groups: list[list[str]]) -> None:
        self.terms = [list(g) for g in groups if len(g) > 1]
        self._patterns: list[list[tuple[re.Pattern[str], bool]]] = []
        for group in self.terms:
            compiled = []
            for term in group:
                exact = term.isupper() and len(term) <= 3
                target = term if exact else fold(term)
                compiled.append((re.compile(rf"(?<!\w){re.escape(target)}(?!\w)"), exact))
            self._patterns.append(compiled)

    @classmethod
    def empty(cls) -> Glossary:
        return cls([])

    @classmethod
    def load(cls, path: Path | None) -> Glossary:
        """Read ``{"groups": [[term, synonym, …], …]}``; no path or no file gives an empty glossary."""
        if path is None or not Path(path).exists():
            return cls.empty()
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            groups = data["groups"]
            if not all(isinstance(g, list) and all(isinstance(t, str) for t in g) for g in groups):
                raise TypeError("each group must be a list of texts")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f'glossary {path} is invalid ({exc}); expected {{"groups": [["PSC", "Pro Santé Connect"]]}}'
            ) from None
        return cls(groups)

    @classmethod
    def for_sources(cls, sources: list[Path | str], explicit: Path | None = None) -> Glossary:
        """The explicit glossary, else every ``glossary.json`` found beside the sources."""
        if explicit is not None:
            if not Path(explicit).exists():
                raise ConfigError(f"glossary {explicit} not found; fix RAG_GLOSSARY or remove it")
            return cls.load(explicit)
        groups: list[list[str]] = []
        for folder in dict.fromkeys(Path(s).resolve().parent for s in sources if not is_url(s)):
            groups.extend(cls.load(folder / "glossary.json").terms)
        return cls(groups)

    def checksum(self) -> str:
        return hashlib.sha256(json.dumps(self.terms, ensure_ascii=False).encode()).hexdigest()

    def expansions(self, text: str) -> list[str]:
        """Terms to add to ``text``: the other members of every group it mentions."""
        folded = fold(text)
        extra: list[str] = []
        for group, patterns in zip(self.terms, self._patterns):
            hits = [bool(p.search(text if exact else folded)) for p, exact in patterns]
            if any(hits):
                extra.extend(term for term, hit in zip(group, hits) if not hit)
        return extra

    def expand(self, text: str) -> str:
        extra = self.expansions(text)
        return f"{text}\n{' ; '.join(extra)}" if extra else text
