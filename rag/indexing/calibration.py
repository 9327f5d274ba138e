"""The calibrated confidence: the probability that the top entry answers the question.

Several retrieval signals (:mod:`rag.query.signals`), none decisive alone, are combined by a logistic regression
fitted on calibration questions: questions the FAQ answers, and questions it does not. The fitted
coefficients are data: shipped with the package, or fitted on the FAQ served and kept with its index.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError

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
# the signals that need latent terms (see rag.embedders.latents): unknown, not zero, for an encoder without them
LATENT_FEATURES = ("latent_top", "latent_best", "latent_margin", "latent_cover", "latent_known")


def log_odds(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def probability(z: float) -> float:
    return 1 / (1 + math.exp(-max(min(z, 40.0), -40.0)))


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
    threshold: float = 0.5  # answer (assert) at or above
    suggest: float | None = None  # suggest the nearest entries at or above (None: the same as ``threshold``)
    embedder: str = ""
    fitted_on: str = ""
    variants: tuple[Calibration, ...] = ()
    # the probabilities of the fit without latent terms between which they are waited for: outside, both
    # fits decide alike on every calibration question (with a margin), so the question is judged without them
    latent_band: tuple[float, float] = (0.0, 1.0)

    @property
    def suggest_threshold(self) -> float:
        return self.threshold if self.suggest is None else min(self.suggest, self.threshold)

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
    def read(cls, path: Path) -> Calibration:
        """The file's calibration; ``ValueError`` (or ``OSError``) when it is unreadable or inconsistent."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        try:
            return cls.from_dict(data)
        except (TypeError, AttributeError, KeyError) as exc:
            raise ValueError(f"inconsistent ({exc})") from None

    @classmethod
    def load(cls, path: Path | None = None) -> Calibration:
        """A calibration file (the shipped one by default); a bad one is a :class:`ConfigError`."""
        path = Path(path or DEFAULT_CALIBRATION)
        try:
            return cls.read(path)
        except OSError as exc:
            raise ConfigError(
                f"calibration file {path} is unreadable ({exc}); run `rag calibrate` or fix RAG_CALIBRATION"
            ) from None
        except ValueError as exc:
            what = "inconsistent" if str(exc).startswith("inconsistent") else f"unreadable ({exc})"
            raise ConfigError(f"calibration file {path} is {what}; run `rag calibrate` to write it again") from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)


ANSWER_THRESHOLD = 0.5  # the shipped fit asserts an answer when it is more likely right than wrong
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
    """Fit the logistic regression on calibration rows (signals) and labels (1 = the top entries answer), its
    answer threshold (:data:`ANSWER_THRESHOLD`: more likely right than wrong, classes balanced) and its suggest
    threshold: the one that keeps showing ``keep`` of the in-scope calibration questions. Then the same without each
    group of signals that a question may lack (:data:`MISSING`)."""
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
    probabilities over the calibration questions on which the outcome differs, and its thresholds, widened."""
    without = variants[0]
    odds = [log_odds(without.threshold), log_odds(without.suggest_threshold)]
    for row in rows:
        p, q = without.probability(row), main.probability(row)
        if _side(p, without) != _side(q, main):
            odds.append(log_odds(p))
    return round(probability(min(odds) - BAND_MARGIN), 6), round(probability(max(odds) + BAND_MARGIN), 6)


def _side(p: float, model: Calibration) -> int:
    """Which outcome a probability gives under ``model``: 2 answered, 1 suggested, 0 declined."""
    return 2 if p >= model.threshold else 1 if p >= model.suggest_threshold else 0


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
    # rounded down to a half unit of log-odds: a round default, on the side of showing
    rounded = math.floor(2 * log_odds(kept[int((1 - keep) * len(kept))])) / 2
    suggest = round(probability(rounded), 4)
    return replace(calibration, threshold=max(ANSWER_THRESHOLD, suggest), suggest=suggest)


def recalibrate(prior: Calibration, rows: list[dict[str, float]], labels: list[int], fitted_on: str) -> Calibration:
    """The prior fit (and each of its variants) recalibrated on a FAQ's own questions: a logistic regression of
    the labels on the prior's log-odds (two numbers per fit, so a small FAQ suffices), classes balanced, so the
    probability is that of a question as likely answered by the FAQ as not; the threshold is 0.5: answer when
    the service is more likely right than wrong. The prior's signals keep their relative weights."""
    if len(set(labels)) < 2:
        raise ConfigError("recalibration needs questions the FAQ answers and questions it does not")
    main = _platt(prior, rows, labels)
    variants = tuple(_platt(v, rows, labels) for v in prior.variants)
    band = (
        _latent_band(main, list(variants), rows) if variants and variants[0].features != main.features else (0.0, 1.0)
    )
    return replace(main, embedder=prior.embedder, fitted_on=fitted_on, variants=variants, latent_band=band)


RECALIBRATED_THRESHOLD = 0.5


def refit(rows: list[dict[str, float]], labels: list[int], embedder: str, fitted_on: str) -> Calibration:
    """A fit of its own on a FAQ's questions, for an encoder no prior fit was made for: as :func:`fit`, classes
    balanced, with the threshold of :func:`recalibrate`."""
    fresh = fit(rows, labels, [bool(label) for label in labels], embedder, fitted_on)
    variants = tuple(replace(v, threshold=RECALIBRATED_THRESHOLD) for v in fresh.variants)
    return replace(fresh, threshold=RECALIBRATED_THRESHOLD, variants=variants)


def _platt(model: Calibration, rows: list[dict[str, float]], labels: list[int]) -> Calibration:
    from sklearn.linear_model import LogisticRegression

    odds = np.array([[log_odds(model.probability(row))] for row in rows])
    platt = LogisticRegression(class_weight="balanced", C=100.0).fit(odds, np.array(labels))
    slope, shift = float(platt.coef_[0][0]), float(platt.intercept_[0])
    if slope <= 0:
        raise ConfigError("this FAQ's own questions do not follow the confidence: it cannot be recalibrated on them")
    return replace(
        model,
        coef=tuple(round(slope * c, 6) for c in model.coef),
        intercept=round(shift + slope * model.intercept, 6),
        threshold=RECALIBRATED_THRESHOLD,
        variants=(),
    )
