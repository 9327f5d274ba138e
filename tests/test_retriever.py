from pathlib import Path

import pytest

from rag.answer import ExtractiveGenerator
from rag.glossary import Glossary
from rag.retriever import HybridRetriever, RetrievalParams, UnknownFilter
from rag.sources import load_corpus
from rag.store import BuildOptions, build_index


@pytest.fixture
def tiny_index(tiny_jsonl: Path, hash_embedder):
    glossary = Glossary([["ASP", "organisme payeur"]])
    return build_index(load_corpus([tiny_jsonl]), hash_embedder, BuildOptions(), glossary)


def test_results_carry_id_question_text_score_and_link(tiny_index, hash_embedder) -> None:
    result = HybridRetriever(tiny_index, hash_embedder, RetrievalParams(min_score=0.0)).search("paiement du solde", 2)
    top = result.results[0]
    assert not result.abstained
    assert (top.id, top.question) == ("solde", "Comment demander le paiement du solde ?")
    assert top.text.startswith("La demande de solde") and top.url == "/entries/solde"
    assert result.results[0].score >= result.results[1].score
    psc = HybridRetriever(tiny_index, hash_embedder, RetrievalParams(min_score=0.0)).search("pro santé connect", 1)
    assert psc.results[0].url == "https://example.org/faq/psc"


def test_public_url_prefixes_service_links(tiny_index, hash_embedder) -> None:
    params = RetrievalParams(min_score=0.0, public_url="https://faq.example.org/")
    hit = HybridRetriever(tiny_index, hash_embedder, params).search("solde", 1).results[0]
    assert hit.url == "https://faq.example.org/entries/solde"


@pytest.mark.parametrize("fusion", ["rrf", "linear", "dense", "bm25"])
def test_every_fusion_mode_ranks_the_obvious_entry_first(tiny_index, hash_embedder, fusion: str) -> None:
    retriever = HybridRetriever(tiny_index, hash_embedder, RetrievalParams(fusion=fusion, min_score=0.0))
    assert retriever.search("messagerie sécurisée MSSanté", 3).results[0].id == "mss"


def test_glossary_expansion_reaches_an_entry_through_an_acronym(tiny_index, hash_embedder) -> None:
    on = HybridRetriever(tiny_index, hash_embedder, RetrievalParams(fusion="bm25", min_score=0.0))
    off = HybridRetriever(
        tiny_index, hash_embedder, RetrievalParams(fusion="bm25", min_score=0.0, expand_queries=False)
    )
    assert "ASP" in on.prepare("organisme payeur") and off.prepare("organisme payeur") == "organisme payeur"
    # passages are expanded at index time too, so the everyday words reach the entry either way
    assert on.search("organisme payeur", 1).results[0].id == "solde"
    assert off.search("organisme payeur", 1).results[0].id == "solde"
    assert (
        on.search("organisme payeur", 1).results[0].bm25_score > off.search("organisme payeur", 1).results[0].bm25_score
    )


def test_filters_restrict_results_and_unknown_fields_are_refused(tiny_index, hash_embedder) -> None:
    retriever = HybridRetriever(tiny_index, hash_embedder, RetrievalParams(min_score=0.0))
    result = retriever.search("paiement du solde", 5, {"theme": "messagerie"})
    assert [h.id for h in result.results] == ["mss"]
    assert retriever.search("solde", 5, {"theme": ["messagerie", "financement"]}).results[0].id == "solde"
    assert retriever.search("solde", 5, {"theme": "aucun"}).abstained
    with pytest.raises(UnknownFilter, match="colour"):
        retriever.search("solde", 5, {"colour": "red"})


def test_abstains_below_the_threshold(tiny_index, hash_embedder) -> None:
    retriever = HybridRetriever(tiny_index, hash_embedder, RetrievalParams(min_score=0.5))
    result = retriever.search("recette de la tarte tatin", 3)
    assert result.abstained and result.results == []
    assert not retriever.search("demande de solde ASP vérification aptitude", 3).abstained


def test_extractive_answer_only_cites_retrieved_entries(tiny_index, hash_embedder) -> None:
    retriever = HybridRetriever(tiny_index, hash_embedder, RetrievalParams(min_score=0.0))
    result = retriever.search("paiement du solde à l'ASP", 2)
    answer = ExtractiveGenerator().answer(result)
    retrieved = {h.id for h in result.results}
    assert answer.citations and {c.id for c in answer.citations} <= retrieved
    for citation in answer.citations:
        assert f"[{citation.n}]" in answer.answer
        assert result.results[citation.n - 1].id == citation.id
    assert "[3]" not in answer.answer
    assert "solde" in answer.answer


def test_abstained_answer_says_so_in_the_question_language(tiny_index, hash_embedder) -> None:
    retriever = HybridRetriever(tiny_index, hash_embedder, RetrievalParams(min_score=float("inf")))
    french = ExtractiveGenerator().answer(retriever.search("Quelle est la recette de la tarte tatin ?", 3))
    english = ExtractiveGenerator().answer(retriever.search("What is the recipe of apple pie?", 3))
    assert french.abstained and french.citations == [] and "pas trouvé" in french.answer
    assert english.abstained and "could not find" in english.answer
