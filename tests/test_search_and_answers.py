"""Searching and answering over the tiny FAQ: results and links, fusion, glossary, filters, the threshold,
extractive answers, small talk and follow-ups."""

import json
from pathlib import Path

import pytest

from rag.errors import UnknownFilter

from .conftest import Q


@pytest.fixture(autouse=True)
def glossary(tiny_jsonl: Path) -> None:
    (tiny_jsonl.parent / "glossary.json").write_text(json.dumps({"groups": [["ASP", "organisme payeur"]]}))


def test_results_carry_id_question_text_score_facets_and_link(make_service) -> None:
    service = make_service()
    result = service.search(Q("paiement du solde", 2))
    top = result.results[0]
    assert not result.abstained
    assert (top.id, top.question) == ("solde", "Comment demander le paiement du solde ?")
    assert top.text.startswith("La demande de solde") and top.url == "/entries/solde"
    assert top.metadata == {"theme": "financement"}
    assert result.results[0].score >= result.results[1].score
    assert service.search(Q("pro santé connect", 1)).results[0].url == "https://example.org/faq/psc"
    assert service.search(Q("solde", 1), base_url="http://h:1").results[0].url == "http://h:1/entries/solde"


def test_public_url_prefixes_service_links(make_service) -> None:
    hit = make_service(public_url="https://faq.example.org/").search(Q("solde", 1)).results[0]
    assert hit.url == "https://faq.example.org/entries/solde"


@pytest.mark.parametrize("fusion", ["rrf", "linear", "dense", "bm25"])
def test_every_fusion_mode_ranks_the_obvious_entry_first(make_service, fusion: str) -> None:
    assert make_service(fusion=fusion).search(Q("messagerie sécurisée MSSanté", 3)).results[0].id == "mss"


def test_glossary_expansion_reaches_an_entry_through_an_acronym(make_service) -> None:
    on, off = make_service(fusion="bm25"), make_service(fusion="bm25", expand_queries=False)
    # passages are expanded at index time too, so the everyday words reach the entry either way
    assert on.search(Q("organisme payeur", 1)).results[0].id == "solde"
    assert off.search(Q("organisme payeur", 1)).results[0].id == "solde"
    assert (
        on.search(Q("organisme payeur", 1)).results[0].bm25_score
        > off.search(Q("organisme payeur", 1)).results[0].bm25_score
    )


def test_glossary_runs_once_per_query(make_service, monkeypatch) -> None:
    service = make_service()
    calls = []
    glossary = service.index.glossary
    original = glossary.expand
    monkeypatch.setattr(glossary, "expand", lambda text: calls.append(text) or original(text))
    service.ask(Q("organisme payeur du solde", 3))
    assert calls.count("organisme payeur du solde") == 1  # not again for the encoder, the answer or the cache


def test_filters_restrict_results_and_unknown_fields_are_refused(make_service) -> None:
    service = make_service()
    result = service.search(Q("paiement du solde", 5, {"theme": "messagerie"}))
    assert [h.id for h in result.results] == ["mss"]
    assert service.search(Q("solde", 5, {"theme": ["messagerie", "financement"]})).results[0].id == "solde"
    assert service.search(Q("solde", 5, {"theme": "aucun"})).abstained
    with pytest.raises(UnknownFilter, match="colour"):
        service.search(Q("solde", 5, {"colour": "red"}))


def test_declines_below_the_threshold_and_keeps_the_ranking_for_eval(make_service) -> None:
    question = "versement du solde par le payeur"
    confidence = make_service().retrieve(Q(question)).confidence
    assert 0.0 < confidence < 0.99
    strict = make_service(min_confidence=(1 + confidence) / 2)
    assert strict.search(Q(question, 3)).abstained and strict.search(Q(question, 3)).results == []
    assert strict.retrieve(Q(question, 3)).results[0].id == "solde"
    assert not make_service(min_confidence=confidence / 2).search(Q(question, 3)).abstained


def test_extractive_answer_only_cites_retrieved_entries(make_service) -> None:
    service = make_service()
    answer = service.ask(Q("paiement du solde à l'ASP", 2))
    retrieved = [h.id for h in answer.passages]
    assert answer.citations and {c.id for c in answer.citations} <= set(retrieved)
    for citation in answer.citations:
        assert f"[{citation.n}]" in answer.answer
        assert retrieved[citation.n - 1] == citation.id
    assert "[3]" not in answer.answer
    assert "solde" in answer.answer


def test_declined_answer_says_so_in_the_question_language(make_service) -> None:
    service = make_service(min_confidence=0.5)
    french = service.ask(Q("Quelle est la recette de la tarte tatin ?", 3))
    english = service.ask(Q("What is the recipe of apple pie?", 3))
    assert french.abstained and french.citations == [] and "pas trouvé" in french.answer
    assert english.abstained and "could not find" in english.answer


@pytest.mark.parametrize("text", ["Bonjour", "bonjour !", "Merci beaucoup", "Au revoir", "Hello", "ok merci"])
def test_small_talk_gets_a_polite_reply_without_sources(make_service, text: str) -> None:
    answer = make_service().ask(Q(text))
    assert answer.abstained and answer.citations == [] and answer.confidence == 0.0
    assert "FAQ" in answer.answer


def test_a_question_that_greets_is_still_a_question(make_service) -> None:
    answer = make_service().ask(Q("Bonjour, comment demander le paiement du solde ?"))
    assert not answer.abstained and answer.citations


def test_a_reader_of_another_language_is_told_the_sources_are_quoted_as_they_are(make_service) -> None:
    service = make_service()
    english = service.ask(Q("How do I request the payment of the solde?", 2))
    assert english.note == "The FAQ is written in French: the answer quotes it as it is."
    assert english.citations and "[1]" in english.answer and english.note not in english.answer
    assert service.ask(Q("Comment demander le paiement du solde ?", 2)).note is None


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Et pour la radiologie ?", True),
        ("And for pharmacies?", True),
        ("Et ensuite ?", True),
        ("Pour la biologie ?", True),
        ("Quelle messagerie sécurisée faut-il utiliser pour les comptes rendus ?", False),
        ("Comment déposer une demande de solde pour le couloir Hôpital ?", False),
    ],
)
def test_what_counts_as_an_elliptical_follow_up(question: str, expected: bool) -> None:
    from rag.query.conversation import elliptical

    assert elliptical(question) is expected


def test_a_follow_up_is_read_with_the_question_before(make_service) -> None:
    service = make_service(min_confidence=0.0)
    history = ["Comment demander le paiement du solde ?"]
    follow = service.ask(Q("Et ensuite ?", 2, history=history))
    assert follow.resolved == "Comment demander le paiement du solde ? Et ensuite ?"
    assert follow.passages[0].id == "solde"
    switch = service.ask(Q("Quelle messagerie sécurisée utiliser ?", 2, history=history))
    assert switch.resolved is None and switch.passages[0].id == "mss"


def test_the_answer_prefers_sentences_with_the_question_s_own_words() -> None:
    from rag.answer.extractive import ExtractiveGenerator
    from rag.config import AnswerSettings
    from rag.models import Hit, SearchResult

    text = "Organisme payeur. Organisme payeur agréé par l'État pour les paiements. Le dossier non signé est refusé."
    hit = Hit(id="e", question=None, text=text, score=1.0, url="/entries/e")
    # "signé" is the question's own word; "organisme payeur" came from the glossary (the question said "ASP")
    result = SearchResult(
        query="dossier ASP signé ?",
        abstained=False,
        results=[hit],
        terms=["sign", "organ", "payeur"],
        own_terms=["sign"],
    )
    answer = ExtractiveGenerator(AnswerSettings(answer_sentences=2)).answer(result)
    assert "non signé" in answer.answer and "agréé" not in answer.answer
