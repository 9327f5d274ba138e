"""Latent terms: the sparse rows, their place in the index, and the confidence signals read from them."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from rag.config import IndexSettings
from rag.corpus.sources import load_corpus
from rag.embedders.latents import Latents, overlap
from rag.errors import IndexNotReady
from rag.indexing.build import build_index
from rag.indexing.calibration import FEATURES, LATENT_FEATURES, fit
from rag.indexing.faq_index import FaqIndex
from rag.indexing.versions import LATENTS, version_dir
from rag.language.glossary import Glossary
from rag.publishing.publisher import Publisher
from rag.query.batching import MicroBatcher
from rag.query.decision import Decision
from rag.query.service import QueryService

from .conftest import LatentHashEmbedder, Q


def _matrix(seed: int = 0, rows: int = 6, dim: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dense = rng.random((rows, dim)).astype(np.float32)
    dense[dense < 0.7] = 0.0
    if rows > 2:
        dense[2] = 0.0  # a row with no terms at all
    return dense


def test_rows_keep_their_weights_and_compute_like_dense_arrays() -> None:
    dense = _matrix()
    latents = Latents.from_dense(dense)
    query = _matrix(1, rows=1)[0]
    assert len(latents) == len(dense)
    assert all(np.array_equal(latents.dense(i), dense[i]) for i in range(len(dense)))
    assert np.allclose(latents.dots(query), dense @ query)
    assert np.allclose(latents.norms(), np.linalg.norm(dense, axis=1))
    assert np.array_equal(latents.column_max(), dense.max(axis=0))
    assert np.array_equal(latents.column_max([0, 3]), dense[[0, 3]].max(axis=0))
    assert np.array_equal(latents.take([4, 0, 2]).dense(0), dense[4])
    stacked = Latents.stack([latents.take([1]), latents.take([5, 2])], latents.dim)
    assert [np.array_equal(stacked.dense(i), dense[j]) for i, j in enumerate([1, 5, 2])] == [True] * 3
    assert np.array_equal(latents[3].dense(), dense[3])


def test_overlap_is_the_share_of_the_question_weight_carried() -> None:
    question = np.array([2.0, 1.0, 1.0, 0.0])
    assert overlap(question, np.array([2.0, 0.0, 0.5, 9.0])) == pytest.approx(2.5 / 4)
    assert overlap(question, question) == pytest.approx(1.0)
    assert overlap(np.zeros(4), question) == 0.0


def test_rows_survive_a_save_and_a_malformed_file_is_refused(tmp_path: Path) -> None:
    latents = Latents.from_dense(_matrix())
    latents.save(tmp_path / "l.npz")
    again = Latents.load(tmp_path / "l.npz")
    assert again.dim == latents.dim and all(
        np.array_equal(getattr(again, f), getattr(latents, f)) for f in ("indptr", "indices", "data")
    )
    np.savez(tmp_path / "bad.npz", dim=np.array(4), indptr=latents.indptr, indices=latents.indices, data=latents.data)
    with pytest.raises(ValueError, match="malformed"):
        Latents.load(tmp_path / "bad.npz")  # indices beyond the dimension


def test_the_micro_batcher_hands_each_caller_its_own_row() -> None:
    batcher: MicroBatcher[Latents] = MicroBatcher(
        lambda texts: Latents.from_dense(np.array([[len(t), 0.0, 1.0] for t in texts], dtype=np.float32)), lanes=2
    )
    futures = {text: batcher.submit(text) for text in ("a", "bbb", "cc")}
    assert {text: float(f.result(10).dense()[0]) for text, f in futures.items()} == {"a": 1, "bbb": 3, "cc": 2}


def _build(path: Path, embedder, previous=None, **options):
    return build_index(
        load_corpus([path]), embedder, IndexSettings(**options), Glossary([["ASP", "payeur"]]), previous=previous
    )


def test_an_index_holds_the_latent_terms_of_every_chunk_and_reloads_them(tmp_path: Path, tiny_jsonl: Path) -> None:
    embedder = LatentHashEmbedder()
    built = _build(tiny_jsonl, embedder)
    assert built.latents is not None and len(built.latents) == len(built.chunks)
    assert embedder.latent_texts == [c.embed_text for c in built.chunks]
    assert built.manifest.latent_terms is True
    built.save(tmp_path / "idx")
    loaded = FaqIndex.load(tmp_path / "idx", embedder.name, embedder.dim)
    assert loaded.latents is not None
    assert all(np.array_equal(loaded.latents.dense(i), built.latents.dense(i)) for i in range(len(built.chunks)))


def test_without_the_setting_or_an_encoder_that_has_them_there_are_none(
    tmp_path: Path, tiny_jsonl: Path, hash_embedder
) -> None:
    embedder = LatentHashEmbedder()
    off = _build(tiny_jsonl, embedder, latent_terms=False)
    assert off.latents is None and not embedder.latent_texts and off.manifest.latent_terms is False
    plain = _build(tiny_jsonl, hash_embedder)
    assert plain.latents is None
    plain.save(tmp_path / "idx")
    assert not (version_dir(tmp_path / "idx") / LATENTS).exists()
    assert FaqIndex.load(tmp_path / "idx").latents is None


def test_unchanged_chunks_keep_their_latent_terms(tiny_jsonl: Path) -> None:
    embedder = LatentHashEmbedder()
    first = _build(tiny_jsonl, embedder)
    rows = [json.loads(line) for line in tiny_jsonl.read_text().splitlines()]
    rows[1]["answer"] += " Le délai est de deux mois."
    tiny_jsonl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    embedder.latent_texts.clear()
    again = _build(tiny_jsonl, embedder, previous=first)
    assert len(embedder.latent_texts) == 1 and "deux mois" in embedder.latent_texts[0]
    full = _build(tiny_jsonl, LatentHashEmbedder())
    assert again.latents is not None and full.latents is not None
    assert all(np.array_equal(again.latents.dense(i), full.latents.dense(i)) for i in range(len(full.chunks)))


def test_progress_counts_vectors_and_latent_terms_as_one_task(tiny_jsonl: Path) -> None:
    seen: list[tuple[int, int]] = []
    built = build_index(
        load_corpus([tiny_jsonl]), LatentHashEmbedder(), IndexSettings(), progress=lambda d, t: seen.append((d, t))
    )
    total = built.vectors.ntotal + len(built.chunks)
    assert seen[-1] == (total, total)
    assert all(t == total for _, t in seen) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_latents_file_that_disagrees_with_the_chunks_is_refused(tmp_path: Path, tiny_jsonl: Path) -> None:
    _build(tiny_jsonl, LatentHashEmbedder()).save(tmp_path / "idx")
    path = version_dir(tmp_path / "idx") / LATENTS
    Latents.from_dense(np.ones((1, 512), dtype=np.float32)).save(path)
    with pytest.raises(IndexNotReady, match=r"latents\.npz does not hold"):
        FaqIndex.load(tmp_path / "idx")
    path.write_bytes(b"not a numpy file")
    with pytest.raises(IndexNotReady, match=r"latents\.npz is unreadable"):
        FaqIndex.load(tmp_path / "idx")


def test_the_setting_is_a_build_option(make_service) -> None:
    service = make_service()
    assert Publisher(service).needs_build() is None
    other = type(service)(service.settings.replace(latent_terms=False), service.embedder)
    assert "latent_terms" in (Publisher(other).needs_build() or "")


@pytest.fixture
def latent_service(tiny_settings, latent_embedder):
    service = QueryService(tiny_settings, latent_embedder)
    Publisher(service).build()
    return service


def test_the_confidence_reads_the_question_concepts(latent_service, make_service) -> None:
    on_topic = latent_service.diagnose(Q("Comment demander le paiement du solde ?")).signals
    assert set(LATENT_FEATURES) <= set(on_topic)
    assert 0.0 < on_topic["latent_top"] <= on_topic["latent_best"] <= 1.0 + 1e-9
    assert 0.0 <= on_topic["latent_cover"] <= on_topic["latent_known"] <= 1.0
    off_topic = latent_service.diagnose(Q("Quelle recette de gâteau au chocolat choisir ?")).signals
    assert off_topic["latent_cover"] < on_topic["latent_cover"]
    assert off_topic["latent_known"] < on_topic["latent_known"]
    without = make_service().diagnose(Q("Comment demander le paiement du solde ?")).signals  # an encoder without them
    assert not set(LATENT_FEATURES) & set(without)


class _FailingQueries(LatentHashEmbedder):
    def encode_latents(self, texts, query: bool = False) -> Latents:
        if query:
            raise RuntimeError("engine fault")
        return super().encode_latents(texts, query)


def test_a_failing_latent_pass_leaves_the_question_answered(tiny_settings, caplog) -> None:
    service = QueryService(tiny_settings, _FailingQueries())
    Publisher(service).build()
    with caplog.at_level(logging.WARNING, logger="rag.query.decision"):
        result = service.retrieve(Q("Quelle messagerie sécurisée utiliser ?"))
        signals = service.diagnose(Q("Quelle messagerie sécurisée pour un cabinet ?")).signals
    assert result.results and result.results[0].id == "mss"
    assert not set(LATENT_FEATURES) & set(signals)
    assert "latent terms unavailable" in caplog.text


def test_a_fit_keeps_only_the_signals_every_question_has() -> None:
    rows = [{"dense_top": 0.9 - 0.1 * (i % 2), "lex_cover": 0.5 * (1 - i % 2), "latent_top": 0.3} for i in range(20)]
    rows[3].pop("latent_top")
    full = [{f: r.get(f, 0.0) for f in FEATURES if f in r or not f.startswith("latent")} for r in rows]
    calibration = fit(full, [1 - i % 2 for i in range(20)], [True] * 20, "test/e", "test")
    assert "latent_top" not in calibration.features and "dense_top" in calibration.features
    assert calibration.probability(full[0]) > 0.5 > calibration.probability(full[1])


def test_a_cancelled_request_is_never_encoded() -> None:
    import threading

    release, seen = threading.Event(), []

    def encode(texts):
        seen.extend(texts)
        release.wait(10)
        return Latents.from_dense(np.ones((len(texts), 2), dtype=np.float32))

    batcher: MicroBatcher[Latents] = MicroBatcher(encode, max_batch=1)
    first = batcher.submit("first")
    while not seen:  # the lane is busy with the first request
        threading.Event().wait(0.001)
    second, third = batcher.submit("second"), batcher.submit("third")
    assert second.cancel()
    release.set()
    assert len(third.result(10)) == 1 and len(first.result(10)) == 1
    assert seen == ["first", "third"]


def _calibration_for(service, band: tuple[float, float]):
    """A calibration fitted on this FAQ's own signals (the FAQ's questions in scope, others out)."""
    from dataclasses import replace

    questions = [e.question for e in service.index.entries] * 4
    others = ["Quelle recette de gâteau choisir ?", "Quel temps fera-t-il demain ?", "Où partir en vacances ?"] * 4
    rows = [service.diagnose(Q(q)).signals for q in questions + others]
    labels = [1] * len(questions) + [0] * len(others)
    calibration = fit(rows, labels, [bool(y) for y in labels], service.embedder.name, "test")
    return replace(calibration, latent_band=band)


@pytest.mark.parametrize("consulted", [True, False])
def test_latent_terms_are_waited_for_only_where_they_can_change_the_decision(latent_service, consulted) -> None:
    calibration = _calibration_for(latent_service, (0.0, 1.0) if consulted else (2.0, 2.0))
    decision = Decision(calibration, latents=latent_service.encoder)
    retriever = latent_service.stages.retriever
    result = decision.decide(retriever.prepare("Quelle messagerie sécurisée pour le cabinet ?"), retriever.rank, 5)
    assert result.latent == consulted
    model = calibration.model(result.signals)
    assert (model is calibration) == consulted  # the full fit, or the one without latent terms
    assert result.confidence == round(model.probability(result.signals), 4)


def test_the_band_covers_every_calibration_question_on_which_the_two_fits_disagree() -> None:
    rng = np.random.default_rng(3)
    labels = [int(rng.random() < 0.5) for _ in range(200)]
    # the latent signals carry information the others do not: the two fits disagree on some questions
    rows = [{f: float(rng.normal(y * (1.0 if f in LATENT_FEATURES else 0.3), 1.0)) for f in FEATURES} for y in labels]
    calibration = fit(rows, labels, [bool(y) for y in labels], "test/e", "synthetic")
    without = calibration.variants[0]
    low, high = calibration.latent_band
    disagree = [
        without.probability(r)
        for r in rows
        if (without.probability(r) >= without.threshold) != (calibration.probability(r) >= calibration.threshold)
    ]
    assert disagree and all(low < p < high for p in disagree)
    assert low < without.threshold < high and (low, high) != (0.0, 1.0)


class _Source:
    """A latent source that counts its calls; ``free`` says whether the encoder has lanes to spare."""

    def __init__(self, embedder: LatentHashEmbedder, free: bool) -> None:
        self.embedder, self.free, self.calls = embedder, free, 0

    def latent_terms(self, text: str):
        from concurrent.futures import Future

        self.calls += 1
        done: Future = Future()
        done.set_result(self.embedder.encode_latents([text], True))
        return done

    def spare(self) -> bool:
        return self.free


def _deciding(source: _Source, band: tuple[float, float]) -> Decision:
    """The shipped calibration, waiting for latent terms always (band 0..1) or never (band 2..2)."""
    from dataclasses import replace

    from rag.indexing.calibration import Calibration

    return Decision(replace(Calibration.load(), latent_band=band), latents=source)


@pytest.mark.parametrize("free", [True, False])
def test_a_busy_encoder_computes_latent_terms_only_when_asked(latent_service, latent_embedder, free) -> None:
    source = _Source(latent_embedder, free)
    retriever = latent_service.stages.retriever
    for wanted in (False, True):
        decision = _deciding(source, (0.0, 1.0) if wanted else (2.0, 2.0))
        result = decision.decide(retriever.prepare("Quelle messagerie sécurisée utiliser ?"), retriever.rank, 3)
        assert result.latent == wanted
    assert source.calls == (2 if free else 1)  # beside the vector each time only with a lane to spare


def test_the_batcher_reports_its_load() -> None:
    import threading

    started, release = threading.Event(), threading.Event()

    def encode(texts):
        started.set()
        release.wait(10)
        return np.zeros((len(texts), 2), dtype=np.float32)

    batcher: MicroBatcher[np.ndarray] = MicroBatcher(encode, max_batch=1)
    assert batcher.load() == 0
    first = batcher.submit("a")
    started.wait(10)
    second = batcher.submit("b")
    assert batcher.load() == 2  # one running, one waiting
    release.set()
    first.result(10), second.result(10)
    assert batcher.load() == 0


def test_questions_decided_together_leave_latent_terms_to_when_they_are_needed(latent_service, latent_embedder) -> None:
    import threading

    from rag.query.retriever import HybridRetriever

    inside, release = threading.Event(), threading.Event()

    def slow_encode(text: str) -> np.ndarray:
        if "lente" in text:  # the first question holds its place in the ranking until released
            inside.set()
            release.wait(10)
        return latent_embedder.encode_queries([text])[0]

    source = _Source(latent_embedder, free=True)
    decision = _deciding(source, (2.0, 2.0))  # never waited for: only computed beside the vector, or not at all
    retriever = HybridRetriever(latent_service.index, slow_encode, latent_service.settings.retrieval)

    def decide(text: str):
        return decision.decide(retriever.prepare(text), retriever.rank, 3)

    worker = threading.Thread(target=decide, args=("question lente",))
    worker.start()
    inside.wait(10)
    decide("Quelle messagerie sécurisée utiliser ?")
    assert source.calls == 1  # the first question's, beside its vector; the second was not alone
    release.set()
    worker.join(10)
    decide("Comment demander le paiement du solde ?")
    assert source.calls == 2  # alone again: computed beside the vector
