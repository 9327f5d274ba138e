"""The evidence the confidence reads about a ranking: how well its top entries cover the question, in words,
in the encoder's space and in latent terms; each signal continuous and scaled so that it does not grow
with the corpus. They describe the entry ranked first — after a reranker, when there is one."""

from __future__ import annotations

import math
import re

import numpy as np

from rag.embedders.latents import overlap
from rag.indexing.calibration import DENSE_FEATURES, FEATURES, LATENT_FEATURES
from rag.language.analyzer import FrenchAnalyzer
from rag.language.detect import detect
from rag.query.retriever import Ranking

# an acronym or a name written with capitals inside it (DMP, HDS, SESAM-Vitale, eCPS): a precise topic
NAME = re.compile(r"\b(?:[A-Z]{2,}[\w-]*|\w+[A-Z]\w*)\b")
TOP = 20  # the standout is measured against this many best entries, whatever the corpus size
TOP_ENTRIES = 5  # the entries whose concepts, together, should carry the question's
AGREE_TEMPERATURE = 0.01  # cosine differences of about this size still share the dense preference
FUSED_TEMPERATURE = 0.02  # likewise for fused scores (0..1)
_analyzer = FrenchAnalyzer()


def signals(ranking: Ranking, language: str = "fr") -> dict[str, float]:
    """The signals a ranking has: without the question's vector (BM25 alone), no dense signals; without its
    latent terms, no latent signals (see :func:`latent_signals`)."""
    out = dict.fromkeys(FEATURES, 0.0)
    index, query, terms = ranking.index, ranking.prepared.query, ranking.prepared.terms
    out["terms"] = math.log1p(len(terms))
    # a question in another language than the FAQ's has no words in common with it: only dense signals count
    foreign = detect(query, language) != language
    out["foreign"] = float(foreign)
    known = index.known(ranking.excluded)
    weights = {t: index.idf.get(t, index.unknown_idf) if known(t) else index.unknown_idf for t in terms}
    total = sum(weights.values()) or 1.0
    if terms and not foreign:
        # the share of the question's weight (rare words weigh most) made of words the FAQ uses at all
        out["vocab_cover"] = sum(w for t, w in weights.items() if known(t)) / total
    # precise topics (acronyms, names) the FAQ never mentions, even through its glossary
    names = [_analyzer(name) for name in NAME.findall(query)]
    out["unknown_names"] = float(min(sum(1 for n in names if n and not all(known(t) for t in n)), 2))
    # without the question's vector (an embeddings server away, or BM25 alone by choice), dense signals are unknown
    no_vector = ranking.degraded is not None or not np.isfinite(ranking.dense).any()
    for name in (*DENSE_FEATURES, *LATENT_FEATURES) if no_vector else LATENT_FEATURES:
        del out[name]  # unknown, not zero
    if not ranking.order:
        return out
    out.update(latent_signals(ranking))
    dense = np.sort(ranking.dense[np.isfinite(ranking.dense)])[::-1][:TOP]
    if dense.size:
        out["dense_top"] = float(dense[0])
        out["dense_margin"] = float(dense[0] - dense[1]) if dense.size > 1 else 0.0
        rest = dense[1:]
        if rest.size >= 2:
            out["dense_z"] = float(min((dense[0] - rest.mean()) / max(float(rest.std()), 1e-3), 10.0))
    if terms and not foreign:
        # the share of the question's weight found in the preferred entries' passages, the entries weighted
        # by how close they are to the first one (a near tie between two entries cannot flip it)
        for entry, share in _preferred(ranking):
            found = index.chunk_terms(ranking.best_chunk(entry))
            out["lex_cover"] += share * sum(w for t, w in weights.items() if t in found) / total
    present = np.isfinite(ranking.dense)
    if not foreign and present.any() and (ranking.lexical > 0).any():
        # how much BM25 backs the entries dense retrieval prefers: a soft "both agree on the top entry",
        # continuous so that a near tie between two entries cannot flip it
        weights = np.exp((np.where(present, ranking.dense, -np.inf) - dense[0]) / AGREE_TEMPERATURE)
        out["agree"] = float(weights @ (ranking.lexical / ranking.lexical.max()) / weights.sum())
    return out


def latent_signals(ranking: Ranking) -> dict[str, float]:
    """How the question's concepts (latent terms) meet the FAQ's: the best entries' similarity to it, and how
    much of its concept weight the best entries, and the FAQ as a whole, carry. None without them."""
    index = ranking.index
    if ranking.latents is None or index.latents is None or not ranking.order:
        return {}
    question = ranking.latents.dense()
    norm = float(np.linalg.norm(question))
    cosine = index.latents.dots(question) / np.maximum(index.latent_norms * norm, 1e-9)
    per_entry = np.full(len(index.entries), -1.0)
    np.maximum.at(per_entry, index.chunk_entry, cosine)
    candidates = np.sort(per_entry[np.isfinite(ranking.fused)])[::-1]
    top = ranking.order[:TOP_ENTRIES]
    carried = index.latents.column_max(np.nonzero(np.isin(index.chunk_entry, top))[0])
    return {
        "latent_top": float(max(per_entry[ranking.order[0]], 0.0)),
        "latent_best": float(max(candidates[0], 0.0)),
        "latent_margin": float(candidates[0] - candidates[1]) if len(candidates) > 1 else 0.0,
        "latent_cover": overlap(question, carried),
        "latent_known": overlap(question, index.latent_known_without(ranking.excluded)),
    }


def _preferred(ranking: Ranking, count: int = 5) -> list[tuple[int, float]]:
    """The first entries with weights that fall fast with their fused score's distance to the first one's
    (after a reranker, an entry may score above the first: distance either way counts)."""
    top = ranking.order[:count]
    scores = np.array([ranking.fused[i] for i in top], dtype=np.float64)
    weights = np.exp(-np.abs(scores - scores[0]) / FUSED_TEMPERATURE)
    weights /= weights.sum()
    return [(entry, float(w)) for entry, w in zip(top, weights) if w > 1e-4]
