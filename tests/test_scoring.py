"""Each metric on small examples worked out by hand."""

import math

import pytest

from rag.evaluation import scoring
from rag.evaluation.run import EvalQuery, Outcome, check_gate, score
from rag.language.text import sentence_units


def test_recall_mrr_ndcg_by_hand() -> None:
    ranking, relevant = ["a", "b", "c", "d"], {"c", "x"}
    assert scoring.recall_at(ranking, relevant, 1) == 0.0
    assert scoring.recall_at(ranking, relevant, 3) == 0.5
    assert scoring.mrr_at(ranking, relevant, 10) == pytest.approx(1 / 3, abs=1e-4)
    assert scoring.mrr_at(ranking, relevant, 2) == 0.0
    # DCG = 1/log2(4) = 0.5 ; IDCG = 1 + 1/log2(3)
    assert scoring.ndcg_at(ranking, relevant, 10) == pytest.approx(0.5 / (1 + 1 / math.log2(3)))
    assert scoring.ndcg_at(["c"], {"c"}, 10) == 1.0
    assert scoring.recall_at([], {"c"}, 10) == 0.0


def test_percentile_interpolates() -> None:
    assert scoring.percentile([10, 20, 30, 40], 50) == 25
    assert scoring.percentile([10, 20, 30, 40], 95) == pytest.approx(38.5, abs=1e-4)
    assert scoring.percentile([], 50) == 0.0


def test_faithfulness_counts_supported_cited_sentences() -> None:
    passages = ["La demande de solde se dépose auprès de l'ASP.", "Chaque preuve est déposée séparément."]
    answer = (
        "La demande de solde se dépose auprès de l'ASP [1]. Les preuves sont déposées séparément [2]. "
        "Le paiement arrive en trois jours [1]. Une phrase sans citation."
    )
    # supported: 1st (all terms in [1]), 2nd (preuv, depos, separ in [2]); not: 3rd (paiement, trois, jour), 4th
    assert scoring.faithfulness(answer, passages) == pytest.approx(2 / 4, abs=1e-4)
    assert scoring.faithfulness("Texte [3].", passages) == 0.0  # a marker outside the passages supports nothing
    assert sentence_units("Un. [1] Deux [2].") == ["Un. [1]", "Deux [2]."]


def test_citation_precision_is_micro_counted() -> None:
    assert scoring.citation_precision(["a", "b", "a"], {"a"}) == (1, 2)


def _outcome(ranking, abstained=False, cited=(), answer="", passages=()) -> Outcome:
    return Outcome(
        ranking=list(ranking),
        scores=[1.0] * len(ranking),
        abstained=abstained,
        answer=answer,
        cited=list(cited),
        passages=list(passages),
        latency_ms=10.0,
    )


def test_score_of_a_small_run_by_hand() -> None:
    queries = [
        EvalQuery("q1", "a?", ["a"], tags={"style": "direct"}),
        EvalQuery("q2", "b?", ["b"], tags={"style": "paraphrase"}),
        EvalQuery("q3", "c?", ["c"], tags={"style": "paraphrase"}),
        EvalQuery("q4", "hors sujet", []),
        EvalQuery("q5", "hors sujet 2", []),
    ]
    outcomes = [
        _outcome(["a", "x"], cited=["a"], answer="A [1].", passages=["A"]),
        _outcome(["x", "b"], cited=["x", "b"], answer="X [1]. B [2].", passages=["X", "B"]),
        _outcome([], abstained=True, answer="Je ne sais pas."),
        _outcome([], abstained=True),
        _outcome(["a"], cited=["a"]),
    ]
    report = score(queries, outcomes)
    assert report["recall@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert report["recall@3"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert report["answered_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["abstention_recall"] == 0.5  # q4 abstained, q5 did not
    assert report["abstention_precision"] == 0.5  # abstained on q3 (in scope) and q4
    assert report["citation_precision"] == pytest.approx(2 / 3, abs=1e-4)  # a, x, b cited; a and b relevant
    assert report["faithfulness"] == 1.0
    assert report["by_style"]["paraphrase"]["recall@3"] == 0.5
    assert report["latency_p50_ms"] == 10.0


def test_gate_reports_every_metric_below_its_minimum() -> None:
    report = {"recall@1": 0.7, "mrr@10": 0.9, "latency_p95_ms": 50.0}
    failures = check_gate(
        report, {"_about": "x", "recall@1": 0.8, "mrr@10": 0.85, "latency_p95_ms": 40, "ndcg@10": 0.5}
    )
    assert failures == ["recall@1: 0.7 < 0.8", "latency_p95_ms: 50.0 > 40", "ndcg@10: missing from the report"]
    assert check_gate(report, {"recall@1": 0.7}) == []


def test_selective_answering_formulas_by_hand() -> None:
    # AUROC: positives 0.9, 0.4; negatives 0.5, 0.1 -> pairs won: (0.9>0.5, 0.9>0.1, 0.4>0.1) = 3 of 4
    assert scoring.auroc([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0]) == 0.75
    assert scoring.auroc([0.5, 0.5], [1, 0]) == 0.5  # a tie counts half
    # ECE, 10 bins: {0.95, 0.95} -> rate 1/2, |0.95 - 0.5| = 0.45; {0.15} -> rate 0, 0.15; weights 2/3 and 1/3
    assert abs(scoring.expected_calibration_error([0.95, 0.95, 0.15], [1, 0, 0]) - (0.45 * 2 / 3 + 0.15 / 3)) < 1e-12
    # risk-coverage, most confident first: right, wrong, right -> risks 0, 1/2, 1/3
    curve = scoring.risk_coverage([0.9, 0.8, 0.1], [True, False, True])
    assert [(round(c, 3), round(r, 3)) for _, c, r in curve] == [(0.333, 0.0), (0.667, 0.5), (1.0, 0.333)]
    assert abs(scoring.aurc([0.9, 0.8, 0.1], [True, False, True]) - (0 + 0.5 + 1 / 3) / 3) < 1e-12
