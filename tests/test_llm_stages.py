"""The LLM's stages in process, through ``httpx.MockTransport``: drafted answers and their citations, fallbacks,
the verdict and the rewriting of follow-ups, and the decision they take part in (the real-HTTP faults —
hangs, drips, a server down — are in test_llm_server.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest

from rag.answer.extractive import ExtractiveGenerator
from rag.indexing.calibration import Calibration
from rag.llm import LLMParts, Reset
from rag.publishing.publisher import Publisher
from rag.query.decision import Decision
from rag.query.service import QueryService

from .conftest import Q
from .fake_llm import ScriptedTransport

SOLDE = "Comment demander le paiement du solde ?"


@pytest.fixture
def llm() -> ScriptedTransport:
    return ScriptedTransport()


# a confidence that reads one signal, the share of the question found in the top passages: far from 0 and 1
SOFT = Calibration(features=("lex_cover",), mean=(0.5,), scale=(0.5,), coef=(2.0,), intercept=0.0, threshold=0.5)


@pytest.fixture
def make_llm_service(tiny_settings, hash_embedder, llm, tmp_path):
    """A built service over the tiny FAQ whose LLM is ``llm`` and confidence :data:`SOFT`; keyword arguments
    change settings."""
    SOFT.save(tmp_path / "soft.json")

    def make(**changes: object) -> QueryService:
        llm_settings = {"llm_base_url": "http://llm.test/v1", "llm_retries": 1, "llm_backoff": 0}
        settings = tiny_settings.replace(calibration=tmp_path / "soft.json", **llm_settings, **changes)
        parts = LLMParts.make(settings, ExtractiveGenerator(settings.answer), transport=llm)
        service = QueryService(settings, hash_embedder, llm=parts)
        Publisher(service).build()
        return service

    return make


def test_a_drafted_answer_keeps_the_citations_of_retrieved_passages_only(make_llm_service, llm) -> None:
    service = make_llm_service(llm_judge=False)
    llm.script({"text": "Le solde se demande à l'ASP [1][9]. Voir aussi [2]."})
    answer = service.ask(Q(SOLDE, 2))
    assert answer.answer == "Le solde se demande à l'ASP [1]. Voir aussi [2]."
    assert [c.id for c in answer.citations] == [p.id for p in answer.passages[:2]] and answer.citations_removed == 1
    system, user = llm.requests[-1]["messages"]
    assert system["role"] == "system" and f"<question>\n{SOLDE}\n</question>" in user["content"]


@pytest.mark.parametrize(
    ("scripts", "reason"),
    [
        ([{"status": 500}, {"status": 500}], "http_500"),
        ([{"status": 400}], "http_400"),
        ([{"garbage": True}], "malformed"),
        ([{"text": "   "}], "empty"),
        ([{"text": "Une réponse sans aucune source."}], "uncited"),
    ],
)
def test_any_fault_of_the_draft_gives_the_extractive_answer(make_llm_service, llm, scripts, reason) -> None:
    service = make_llm_service(llm_judge=False)
    llm.script(*scripts)
    answer = service.ask(Q(SOLDE))
    assert answer.fallback and answer.fallback_reason == reason
    assert answer.citations and "[1]" in answer.answer  # the extractive answer, cited


def test_a_retried_server_error_is_not_a_fallback(make_llm_service, llm) -> None:
    service = make_llm_service(llm_judge=False)
    llm.script({"status": 503}, {"text": "Réponse [1]."})
    answer = service.ask(Q(SOLDE))
    assert not answer.fallback and answer.answer == "Réponse [1]." and len(llm.requests) == 2


def test_i_dont_know_is_a_decline_and_a_decline_never_calls_the_llm(make_llm_service, llm) -> None:
    service = make_llm_service(llm_judge=False)
    llm.script({"text": "Je ne sais pas."})
    answer = service.ask(Q(SOLDE))
    assert answer.abstained and answer.citations == [] and not answer.fallback
    strict = make_llm_service(llm_judge=False, min_confidence=0.99)
    calls = len(llm.requests)
    assert strict.ask(Q(SOLDE)).abstained and len(llm.requests) == calls


def test_a_stream_filters_markers_on_the_fly_and_replaces_a_cut_stream(make_llm_service, llm) -> None:
    service = make_llm_service(llm_judge=False)
    llm.script({"text": "Le solde se demande à l'ASP [1] et pas ailleurs [7]."})
    items = list(service.ask_stream(service.search(Q(SOLDE))))
    assert "".join(i for i in items if isinstance(i, str)) == "Le solde se demande à l'ASP [1] et pas ailleurs ."
    assert items[-1].citations_removed == 1 and not items[-1].fallback
    llm.script({"text": "Le solde se demande à l'ASP [1] en ligne.", "cut_after": 3})
    items = list(service.ask_stream(service.search(Q(SOLDE))))
    assert any(isinstance(i, Reset) for i in items)
    assert items[-1].fallback and items[-1].fallback_reason == "stream_cut" and items[-1].citations


def test_a_follow_up_is_rewritten_by_the_llm_and_joined_when_it_gives_nothing(make_llm_service, llm) -> None:
    service = make_llm_service(llm_judge=False)
    follow_up = Q("Et pour la radiologie ?", history=[SOLDE])
    llm.script({"text": "Comment demander le paiement du solde pour la radiologie ?"}, {"text": "Réponse [1]."})
    answer = service.ask(follow_up)
    assert answer.resolved == "Comment demander le paiement du solde pour la radiologie ?"
    assert "Et pour la radiologie ?" in llm.requests[0]["messages"][0]["content"]
    llm.script({"status": 400}, {"text": "Réponse [1]."})
    service.results.clear()
    assert service.ask(follow_up).resolved == f"{SOLDE} Et pour la radiologie ?"


def _judged(service: QueryService, llm: ScriptedTransport, reply: dict) -> tuple[float, float, str | None]:
    """The confidence of SOLDE without the LLM and with its verdict, and the verdict."""
    plain = service.stages.decision.judge
    service.stages.decision.judge = None
    before = service.retrieve(Q(SOLDE)).confidence
    service.stages.decision.judge = plain
    service.results.clear()
    llm.script(reply)
    after = service.retrieve(Q(SOLDE))
    return before, after.confidence, after.judge


@pytest.mark.parametrize(
    ("reply", "verdict", "moves"), [("OUI", "yes", 1), ("non.", "no", -1), ("peut-être", "malformed", 0)]
)
def test_the_verdict_moves_the_confidence_where_it_can_change_the_decision(
    make_llm_service, llm, reply, verdict, moves
) -> None:
    probe = make_llm_service(llm_judge=False)
    confidence = probe.retrieve(Q(SOLDE)).confidence
    service = make_llm_service(min_confidence=confidence)  # a verdict can move it either side
    before, after, said = _judged(service, llm, {"text": reply})
    assert said == verdict and np.sign(round(after - before, 4)) == moves
    assert "OUI ou NON" in llm.requests[-1]["messages"][0]["content"]


class _Reversed:
    """A reranker that puts the best-ranked entries last."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def load(self) -> None:
        pass

    def scores(self, query: str, passages: Sequence[str]) -> np.ndarray:
        self.seen = list(passages)
        return np.arange(len(passages), dtype=np.float64)


def test_with_a_reranker_the_confidence_and_the_verdict_describe_the_entry_shown_first(make_llm_service, llm) -> None:
    service = make_llm_service(min_confidence=0.0)
    retriever = service.stages.retriever
    calibration = SOFT
    plain = Decision(calibration).decide(retriever.prepare(SOLDE), retriever.rank, 3)
    judged = Decision(calibration, judge=service.stages.decision.judge, reranker=_Reversed(), min_confidence=0.5)
    llm.script({"text": "NON"})
    reranked = judged.decide(retriever.prepare(SOLDE), retriever.rank, 3)
    assert plain.results[0].id == "solde" and reranked.results[0].id != "solde"
    shown = reranked.results[0]
    assert shown.rerank_score is not None and shown.text in llm.requests[-1]["messages"][0]["content"]
    # the confidence is that of the entry shown first, which does not answer: lower without the verdict too
    unjudged = Decision(calibration, reranker=_Reversed()).decide(retriever.prepare(SOLDE), retriever.rank, 3)
    assert unjudged.results[0].id == shown.id and unjudged.confidence < plain.confidence - 0.05


def test_with_an_llm_the_confidence_is_fitted_on_its_rewordings_of_the_entries(
    tiny_settings, hash_embedder, llm, tmp_path
) -> None:
    rows = [
        {"id": f"e{i}", "question": f"Question {word} ?", "answer": f"Réponse sur {word} et son usage {word}."}
        for i, word in enumerate(["solde", "carte", "messagerie", "identité", "dossier", "vague"])
    ]
    path = tmp_path / "faq.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    settings = tiny_settings.replace(sources=[path], llm_base_url="http://llm.test/v1", llm_retries=0)
    llm.default = "Comment ça marche ?\n- Une question sur ce sujet précis ?\n2) Et le délai ?"
    llm.script({"status": 500})  # the first entry's call fails: that entry gets the questions made offline
    parts = LLMParts.make(settings, ExtractiveGenerator(settings.answer), transport=llm)
    service = QueryService(settings, hash_embedder, llm=parts)
    index = Publisher(service).build()
    record = index.manifest.calibration
    assert record.kind == "fitted" and record.source == "the LLM's rewordings of the entries"
    assert len(llm.requests) == 6 and "<entry>" in llm.requests[0]["messages"][0]["content"]
    probes = Publisher(service).self_calibration().rewordings(index, [1])
    assert [p.text for p in probes] == ["Comment ça marche ?", "Une question sur ce sujet précis ?", "Et le délai ?"]


def test_a_gap_gets_the_title_the_llm_proposes_and_keeps_its_question_when_the_llm_fails(
    make_llm_service, llm, tmp_path
) -> None:
    from rag.models import Answer
    from rag.publishing.gap_resolution import Curator
    from rag.publishing.gaps import GapFinder
    from rag.store import sqlite_store as SqliteStore
    from rag.store.answers import answer_row

    service = make_llm_service(llm_judge=False)
    store = SqliteStore(tmp_path / "log.sqlite3").open()
    for n, query in enumerate(["frais de déplacement remboursés ?", "remboursement des frais de déplacement"]):
        declined = Answer(query=query, answer="", abstained=True, citations=[], passages=[])
        store.answers.insert(answer_row(f"{n:032x}", declined, at=1000.0 + n))
    finder = GapFinder(service.embedder, service.settings.gaps)
    curator = Curator(Publisher(service), store, finder, tmp_path / "golden.jsonl")
    llm.script({"text": "« Comment se faire rembourser ses frais de déplacement ? »"})
    (gap,) = curator.gaps()
    assert gap.title == "Comment se faire rembourser ses frais de déplacement ?"
    assert "frais de déplacement remboursés ?" in llm.requests[-1]["messages"][0]["content"]
    asked = len(llm.requests)
    (cached,) = curator.gaps()  # the report loaded again: the title is not asked again
    assert cached.title == gap.title and len(llm.requests) == asked
    llm.script({"status": 500}, {"status": 500})
    (again,) = Curator(Publisher(service), store, finder, tmp_path / "golden.jsonl").gaps()
    assert again.title is None and again.question in gap.questions and again.id == gap.id
