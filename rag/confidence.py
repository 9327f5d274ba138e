"""A calibrated confidence: the probability that the top entry answers the question.

Several retrieval signals, none decisive alone, are combined by a logistic regression fitted on
calibration questions (``rag calibrate``): an FAQ's own questions and rewordings of them are in scope,
questions of other FAQs and of unrelated topics are not. The fitted coefficients ship as data.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, replace
from importlib.resources import files
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .language import detect
from .retriever import HybridRetriever, Ranking

DEFAULT_CALIBRATION = Path(str(files("rag.assets").joinpath("calibration.json")))
FEATURES = (
    "dense_top",
    "dense_margin",
    "dense_z",
    "lex_cover",
    "vocab_cover",
    "agree",
    "terms",
    "foreign",
    "unknown_names",
)
# the signals that need the question's vector
DENSE_FEATURES = ("dense_top", "dense_margin", "dense_z", "agree")
# an acronym or a name written with capitals inside it (DMP, HDS, SESAM-Vitale, eCPS): a precise topic
NAME = re.compile(r"\b(?:[A-Z]{2,}[\w-]*|\w+[A-Z]\w*)\b")
TOP = 20  # the standout is measured against this many best entries, whatever the corpus size
AGREE_TEMPERATURE = 0.01  # cosine differences of about this size still share the dense preference
FUSED_TEMPERATURE = 0.02  # likewise for fused scores (0..1)


def signals(retriever: HybridRetriever, ranking: Ranking, language: str = "fr") -> dict[str, float]:
    """The evidence about the top entry, each scaled so that it does not grow with the corpus."""
    out = dict.fromkeys(FEATURES, 0.0)
    terms = ranking.prepared.terms
    out["terms"] = math.log1p(len(terms))
    # a question in another language than the FAQ's has no words in common with it: only dense signals count
    foreign = detect(ranking.prepared.query, language) != language
    out["foreign"] = float(foreign)
    index = retriever.index
    weights = {t: index.idf.get(t, index.unknown_idf) for t in terms}
    total = sum(weights.values()) or 1.0
    if terms and not foreign:
        # the share of the question's weight (rare words weigh most) made of words the FAQ uses at all
        out["vocab_cover"] = sum(w for t, w in weights.items() if t in index.idf) / total
    # precise topics (acronyms, names) the FAQ never mentions, even through its glossary
    names = [retriever.analyzer(name) for name in NAME.findall(ranking.prepared.query)]
    out["unknown_names"] = float(min(sum(1 for n in names if n and not all(t in index.idf for t in n)), 2))
    if ranking.degraded:
        for name in DENSE_FEATURES:  # unknown, not zero: the calibration takes its mean
            del out[name]
    if not ranking.order:
        return out
    dense = np.sort(ranking.dense[np.isfinite(ranking.dense)])[::-1][:TOP]
    if dense.size:
        out["dense_top"] = float(dense[0])
        out["dense_margin"] = float(dense[0] - dense[1]) if dense.size > 1 else 0.0
        rest = dense[1:]
        if rest.size >= 2:
            out["dense_z"] = float(min((dense[0] - rest.mean()) / max(float(rest.std()), 1e-3), 10.0))
    if terms and not foreign:
        # the share of the question's weight found in the preferred entries' passages, the entries weighted
        # by how close they are to the best one (a near tie between two entries cannot flip it)
        for entry, share in _preferred(ranking):
            known = index.chunk_terms(retriever.best_chunk(entry, ranking), retriever.analyzer)
            out["lex_cover"] += share * sum(w for t, w in weights.items() if t in known) / total
    present = np.isfinite(ranking.dense)
    if not foreign and present.any() and (ranking.lexical > 0).any():
        # how much BM25 backs the entries dense retrieval prefers: a soft "both agree on the top entry",
        # continuous so that a near tie between two entries cannot flip it
        weights = np.exp((np.where(present, ranking.dense, -np.inf) - dense[0]) / AGREE_TEMPERATURE)
        out["agree"] = float(weights @ (ranking.lexical / ranking.lexical.max()) / weights.sum())
    return out


def _preferred(ranking: Ranking, count: int = 5) -> list[tuple[int, float]]:
    """The best entries with weights that fall fast with their fused score's distance to the best one."""
    top = ranking.order[:count]
    scores = np.array([ranking.fused[i] for i in top], dtype=np.float64)
    weights = np.exp((scores - scores[0]) / FUSED_TEMPERATURE)
    weights /= weights.sum()
    return [(entry, float(w)) for entry, w in zip(top, weights) if w > 1e-4]


@dataclass(frozen=True)
class Calibration:
    """Standardise each signal, then a logistic regression: p = σ(b + Σ wᵢ·(xᵢ − μᵢ)/σᵢ)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float = 0.5
    embedder: str = ""
    fitted_on: str = ""

    def probability(self, values: dict[str, float]) -> float:
        """A signal missing from ``values`` counts as its mean over the calibration questions."""
        z = self.intercept + sum(
            w * (values.get(f, m) - m) / s for f, m, s, w in zip(self.features, self.mean, self.scale, self.coef)
        )
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))

    @classmethod
    def load(cls, path: Path | None = None) -> Calibration:
        path = Path(path or DEFAULT_CALIBRATION)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            calibration = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"calibration file {path} is unreadable ({exc}); run `rag calibrate` or fix RAG_CALIBRATION"
            ) from None
        if not (len(calibration.features) == len(calibration.mean) == len(calibration.scale) == len(calibration.coef)):
            raise ConfigError(f"calibration file {path} is inconsistent; run `rag calibrate` to write it again")
        return calibration

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)


def fit(
    rows: list[dict[str, float]],
    labels: list[int],
    in_scope: list[bool],
    embedder: str,
    fitted_on: str,
    keep: float = 0.99,
) -> Calibration:
    """Fit the logistic regression on calibration rows (signals) and labels (1 = the top entries answer),
    and the default threshold: the one that keeps answering ``keep`` of the in-scope calibration questions."""
    from sklearn.linear_model import LogisticRegression

    x = np.array([[row[f] for f in FEATURES] for row in rows], dtype=np.float64)
    y = np.array(labels)
    if len(set(labels)) < 2:
        raise ConfigError("calibration needs questions the FAQ answers and questions it does not")
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    model = LogisticRegression(class_weight="balanced", max_iter=1000).fit((x - mean) / scale, y)
    calibration = Calibration(
        features=FEATURES,
        mean=tuple(round(float(v), 6) for v in mean),
        scale=tuple(round(float(v), 6) for v in scale),
        coef=tuple(round(float(v), 6) for v in model.coef_[0]),
        intercept=round(float(model.intercept_[0]), 6),
        embedder=embedder,
        fitted_on=fitted_on,
    )
    kept = sorted(calibration.probability(r) for r, scope in zip(rows, in_scope) if scope)
    quantile = min(max(kept[int((1 - keep) * len(kept))], 1e-6), 1 - 1e-6)
    # rounded down to a half unit of log-odds: a round default, on the side of answering
    log_odds = math.floor(2 * math.log(quantile / (1 - quantile))) / 2
    return replace(calibration, threshold=round(1 / (1 + math.exp(-log_odds)), 4))
