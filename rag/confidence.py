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
from typing import Any

import numpy as np

from .errors import ConfigError
from .language import detect
from .latents import overlap
from .retriever import HybridRetriever, Ranking
from .store import FaqIndex

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
    "latent_top",
    "latent_best",
    "latent_margin",
    "latent_cover",
    "latent_known",
)
# the signals that need the question's vector
DENSE_FEATURES = ("dense_top", "dense_margin", "dense_z", "agree")
# the signals that need latent terms (see rag.latents): unknown, not zero, for an encoder without them
LATENT_FEATURES = ("latent_top", "latent_best", "latent_margin", "latent_cover", "latent_known")
# an acronym or a name written with capitals inside it (DMP, HDS, SESAM-Vitale, eCPS): a precise topic
NAME = re.compile(r"\b(?:[A-Z]{2,}[\w-]*|\w+[A-Z]\w*)\b")
TOP = 20  # the standout is measured against this many best entries, whatever the corpus size
TOP_ENTRIES = 5  # the entries whose concepts, together, should carry the question's
AGREE_TEMPERATURE = 0.01  # cosine differences of about this size still share the dense preference
FUSED_TEMPERATURE = 0.02  # likewise for fused scores (0..1)


def log_odds(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def probability(z: float) -> float:
    return 1 / (1 + math.exp(-max(min(z, 40.0), -40.0)))


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
    for name in LATENT_FEATURES:  # added by latent_signals once the question's latent terms are there
        del out[name]
    if not ranking.order:
        return out
    out.update(latent_signals(index, ranking))
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


def latent_signals(index: FaqIndex, ranking: Ranking) -> dict[str, float]:
    """How the question's concepts (latent terms) meet the FAQ's: the best entries' similarity to it, and how
    much of its concept weight the best entries, and the FAQ as a whole, carry. None without them."""
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
        "latent_known": overlap(question, index.latent_known),
    }


def _preferred(ranking: Ranking, count: int = 5) -> list[tuple[int, float]]:
    """The best entries with weights that fall fast with their fused score's distance to the best one."""
    top = ranking.order[:count]
    scores = np.array([ranking.fused[i] for i in top], dtype=np.float64)
    weights = np.exp((scores - scores[0]) / FUSED_TEMPERATURE)
    weights /= weights.sum()
    return [(entry, float(w)) for entry, w in zip(top, weights) if w > 1e-4]


@dataclass(frozen=True)
class Calibration:
    """Standardise each signal, then a logistic regression: p = σ(b + Σ wᵢ·(xᵢ − μᵢ)/σᵢ).

    ``variants`` are the same fit without the signals that may be missing (an encoder without latent terms;
    a question ranked by BM25 alone), each with its own threshold: a question is judged by the model fitted
    on the signals it has."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float = 0.5
    embedder: str = ""
    fitted_on: str = ""
    variants: tuple[Calibration, ...] = ()
    # the probabilities of the fit without latent terms between which they are waited for: outside, both
    # fits decide alike on every calibration question (with a margin), so the question is judged without them
    latent_band: tuple[float, float] = (0.0, 1.0)

    def model(self, values: dict[str, float]) -> Calibration:
        """The model for a question with these signals: the richest whose signals it all has."""
        for candidate in (self, *self.variants):
            if all(f in values for f in candidate.features):
                return candidate
        return self

    def probability(self, values: dict[str, float]) -> float:
        """This model's probability; a signal missing from ``values`` counts as its calibration mean."""
        z = self.intercept + sum(
            w * (values.get(f, m) - m) / s for f, m, s, w in zip(self.features, self.mean, self.scale, self.coef)
        )
        return probability(z)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        fields = {k: tuple(v) if isinstance(v, list) and k != "variants" else v for k, v in data.items()}
        if "latent_band" in fields and len(fields["latent_band"]) != 2:
            raise ValueError("inconsistent")
        fields["variants"] = tuple(cls.from_dict(v) for v in data.get("variants", []))
        calibration = cls(**fields)
        if not (len(calibration.features) == len(calibration.mean) == len(calibration.scale) == len(calibration.coef)):
            raise ValueError("inconsistent")
        return calibration

    @classmethod
    def load(cls, path: Path | None = None) -> Calibration:
        path = Path(path or DEFAULT_CALIBRATION)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"calibration file {path} is unreadable ({exc}); run `rag calibrate` or fix RAG_CALIBRATION"
            ) from None
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError, AttributeError):
            raise ConfigError(
                f"calibration file {path} is inconsistent; run `rag calibrate` to write it again"
            ) from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)


# the signals a question may lack, richest model first: latent terms (an encoder without them), then the
# question's vector too (ranked by BM25 alone)
MISSING = (LATENT_FEATURES, DENSE_FEATURES + LATENT_FEATURES)


def fit(
    rows: list[dict[str, float]],
    labels: list[int],
    in_scope: list[bool],
    embedder: str,
    fitted_on: str,
    keep: float = 0.99,
) -> Calibration:
    """Fit the logistic regression on calibration rows (signals) and labels (1 = the top entries answer),
    and the default threshold: the one that keeps answering ``keep`` of the in-scope calibration questions.
    Then the same without each group of signals that a question may lack (:data:`MISSING`)."""
    if len(set(labels)) < 2:
        raise ConfigError("calibration needs questions the FAQ answers and questions it does not")
    # the signals every question has: an encoder without latent terms is fitted without them
    features = tuple(f for f in FEATURES if all(f in row for row in rows))
    main = _fit(features, rows, labels, in_scope, keep)
    variants = []
    for missing in MISSING:
        fewer = tuple(f for f in features if f not in missing)
        if fewer != features and all(v.features != fewer for v in variants):
            variants.append(_fit(fewer, rows, labels, in_scope, keep))
    band = _latent_band(main, variants, rows) if variants and variants[0].features != features else (0.0, 1.0)
    return replace(main, embedder=embedder, fitted_on=fitted_on, variants=tuple(variants), latent_band=band)


BAND_MARGIN = 1.0  # log-odds added on each side of the band where the two fits were seen to disagree


def _latent_band(main: Calibration, variants: list[Calibration], rows: list[dict[str, float]]) -> tuple[float, float]:
    """Where the fit without latent terms may decide otherwise than the full fit: the log-odds range of its
    probabilities over the calibration questions on which they disagree, and its threshold, widened."""
    without = variants[0]
    odds = [log_odds(without.threshold)]
    for row in rows:
        p = without.probability(row)
        if (p >= without.threshold) != (main.probability(row) >= main.threshold):
            odds.append(log_odds(p))
    return round(probability(min(odds) - BAND_MARGIN), 6), round(probability(max(odds) + BAND_MARGIN), 6)


def _fit(
    features: tuple[str, ...], rows: list[dict[str, float]], labels: list[int], in_scope: list[bool], keep: float
) -> Calibration:
    from sklearn.linear_model import LogisticRegression

    x = np.array([[row[f] for f in features] for row in rows], dtype=np.float64)
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    model = LogisticRegression(class_weight="balanced", max_iter=1000).fit((x - mean) / scale, np.array(labels))
    calibration = Calibration(
        features=features,
        mean=tuple(round(float(v), 6) for v in mean),
        scale=tuple(round(float(v), 6) for v in scale),
        coef=tuple(round(float(v), 6) for v in model.coef_[0]),
        intercept=round(float(model.intercept_[0]), 6),
    )
    kept = sorted(calibration.probability(r) for r, scope in zip(rows, in_scope) if scope)
    # rounded down to a half unit of log-odds: a round default, on the side of answering
    rounded = math.floor(2 * log_odds(kept[int((1 - keep) * len(kept))])) / 2
    return replace(calibration, threshold=round(probability(rounded), 4))
