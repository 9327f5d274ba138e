"""Three outcomes: answered (asserted, with citations), suggested (the nearest entries, no answer asserted, a person
offered) and declined — decided from two thresholds, shown, recorded and counted alike on every channel."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from rag.answer.extractive import abstained_answer
from rag.config import AnswerSettings
from rag.http import create_app
from rag.indexing.calibration import Calibration
from rag.models import SUGGESTED, Hit, SearchResult
from rag.publishing.selfcalibration import Rows, place
from rag.query.decision import outcome_of

from .conftest import Q
from .servers import wait_until

SOLDE = "Quand verser le solde de mon dossier ?"  # near the entry, not its own words


def test_two_thresholds_give_three_outcomes() -> None:
    assert [outcome_of(p, 0.8, 0.1) for p in (0.95, 0.8, 0.5, 0.1, 0.05)] == [
        "answered",
        "answered",
        "suggested",
        "suggested",
        "declined",
    ]
    old = Calibration(features=("x",), mean=(0.0,), scale=(1.0,), coef=(1.0,), intercept=0.0, threshold=0.3)
    assert old.suggest_threshold == 0.3  # a fit of before: two outcomes, as it was


def test_a_suggestion_shows_the_nearest_entries_and_asserts_nothing() -> None:
    hits = [Hit(id=f"e{n}", question=f"Question {n} ?", text="t", score=1.0, url=f"/entries/e{n}") for n in range(5)]
    result = SearchResult(query="Combien coûte la messagerie ?", abstained=True, outcome="suggested", results=hits)
    shown = result.served()
    assert [h.id for h in shown.results] == [f"e{n}" for n in range(SUGGESTED)]
    answer = abstained_answer(shown, AnswerSettings())
    assert answer.outcome == "suggested" and answer.abstained
    assert answer.answer.startswith("Je ne suis pas certain que la FAQ réponde à cette question.")
    assert [c.id for c in answer.citations] == ["e0", "e1", "e2"] and "[3] Question 2 ?" in answer.answer
    declined = SearchResult(query="q", abstained=True, results=hits)
    assert declined.outcome == "declined" and declined.served().results == []


@pytest.fixture
def unsure(make_service):
    """The tiny FAQ with thresholds that make its questions suggested: answered only when certain."""
    return make_service(min_confidence=0.99, suggest_confidence=0.01)


def test_every_channel_says_suggested_and_offers_a_person(unsure) -> None:
    settings = unsure.settings.replace(admin_token="adm")
    with TestClient(create_app(settings, unsure)) as client:
        searched = client.post("/search", json={"query": SOLDE}).json()
        assert searched["outcome"] == "suggested" and searched["abstained"] and 1 <= len(searched["results"]) <= 3
        asked = client.post("/ask", json={"query": SOLDE}).json()
        assert asked["outcome"] == "suggested" and asked["handoff"]["reason"] == "unsure"
        assert asked["citations"] and asked["citations"][0]["id"] == "solde"
        chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": SOLDE}]}).json()
        assert "Je ne suis pas certain" in chat["choices"][0]["message"]["content"] and chat["citations"]
        unrelated = client.post("/ask", json={"query": "zzz qwxv ptlk"}).json()
        assert unrelated["outcome"] == "declined" and unrelated["handoff"]["reason"] == "declined"

        def counted() -> bool:
            text = client.get("/metrics").text
            return 'rag_outcomes_total{channel="api",outcome="suggested"} 1.0' in text

        wait_until(counted)
        gaps = client.get("/admin/gaps", headers={"Authorization": "Bearer adm"}).json()
        assert any(g["reasons"].get("suggested") for g in gaps["gaps"])  # a suggested question is a gap signal


def test_the_confidence_owns_the_outcome_through_the_query_service(unsure) -> None:
    result = unsure.retrieve(Q(SOLDE))
    assert result.outcome == "suggested" and result.abstained and result.results[0].id == "solde"


def test_the_self_calibration_places_both_thresholds_on_the_faqs_own_questions() -> None:
    """Answer: at the confidence that asserts a tenth of the questions about a missing entry (never below 0.5);
    suggest: at the one that declines nine tenths of the unrelated questions."""
    model = Calibration(features=("x",), mean=(0.0,), scale=(1.0,), coef=(1.0,), intercept=0.0)
    held = [{"x": x} for x in [-3.0 + 0.06 * n for n in range(100)]]  # probabilities spread around 0.5–0.95
    out = [{"x": x} for x in [-6.0 + 0.03 * n for n in range(100)]]
    rows = Rows(held + out, [0] * 200, [1] * 100 + [None] * 100, ["held_out"] * 100 + ["out"] * 100)
    placed = place(model, rows)
    held_p = sorted(model.probability(r) for r in held)
    out_p = sorted(model.probability(r) for r in out)
    assert placed.threshold == pytest.approx(max(0.5, held_p[89]), abs=0.01)
    assert sum(p >= placed.threshold for p in held_p) <= 11
    assert sum(p < placed.suggest_threshold for p in out_p) >= 89 and placed.suggest_threshold < placed.threshold
