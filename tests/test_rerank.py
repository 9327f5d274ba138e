"""The optional reranking stage, with a real CrossEncoder built offline from the packaged MiniLM weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import Settings
from rag.embedders.sentence_transformers import packaged_minilm_path
from rag.errors import ConfigError
from rag.query.rerank import CrossEncoderReranker
from rag.query.service import QueryService

from .conftest import Q

pytestmark = pytest.mark.slow
QUESTION = "Comment déposer une demande de solde ?"


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory) -> Path:
    """A cross-encoder made from the packaged encoder and a fresh scoring head, saved as a local folder."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    model = CrossEncoder(packaged_minilm_path(), num_labels=1, device="cpu")
    folder = tmp_path_factory.mktemp("reranker") / "cross-encoder"
    model.save(str(folder))
    return folder


def test_the_reranker_reorders_the_best_entries_by_its_own_scores(segur_index: Path, cross_encoder: Path) -> None:
    plain = QueryService(Settings(index_dir=segur_index))
    plain.load()
    reranked = QueryService(Settings(index_dir=segur_index, reranker=f"st:{cross_encoder}", rerank_depth=20))
    reranked.load()
    before = plain.retrieve(Q(QUESTION, 20))
    after = reranked.retrieve(Q(QUESTION, 20))
    assert {h.id for h in after.results} == {h.id for h in before.results}  # the same entries, reordered
    scores = [h.rerank_score for h in after.results]
    assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)
    texts = {h.id: h for h in before.results}
    expected = CrossEncoderReranker(f"st:{cross_encoder}").scores(
        QUESTION, [f"{texts[h.id].question}\n{texts[h.id].text}" for h in after.results]
    )
    assert [round(float(s), 4) for s in expected] == scores
    # the confidence describes the entry shown first (tests/test_llm_stages.py): here another one
    assert after.results[0].id != before.results[0].id and after.confidence != before.confidence


def test_a_missing_reranker_model_is_one_clear_error(segur_index: Path, tmp_path: Path) -> None:
    service = QueryService(Settings(index_dir=segur_index, reranker=f"st:{tmp_path / 'nowhere'}"))
    with pytest.raises(ConfigError, match="cannot load the reranker"):
        service.load()
