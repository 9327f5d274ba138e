"""The built index: entries, chunks, a FAISS vector index and a BM25 index, saved as plain files
with a manifest and loaded with checks that say what to do when they fail."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import faiss
import numpy as np

from .analyzer import FrenchAnalyzer
from .chunking import chunk_entries
from .config import IndexSettings
from .embedders import Embedder
from .errors import ConfigError, IndexNotReady
from .glossary import Glossary
from .models import Chunk, Entry
from .sources import Corpus, load_corpus
from .text import split_sentences

FORMAT_VERSION = 4
MANIFEST = "manifest.json"
REBUILD_HINT = "Run `rag index` to build it again."
# the settings that shape an index: all recorded in its manifest, any change means a rebuild
BUILD_OPTIONS = (
    "embedder",
    "query_prefix",
    "passage_prefix",
    "chunk_max_tokens",
    "chunk_overlap_sentences",
    "ann_threshold",
    "hnsw_m",
    "hnsw_ef_search",
    "question_vectors",
    "sentence_vectors",
)
INDEX_FILES = {MANIFEST, "entries.jsonl", "chunks.jsonl", "views.npy", "vectors.faiss", "bm25", "glossary.json"}

Progress = Callable[[int, int], None]


def build_options(opts: IndexSettings) -> dict[str, Any]:
    return {name: getattr(opts, name) for name in BUILD_OPTIONS}


def make_vector_index(vectors: np.ndarray, opts: IndexSettings) -> faiss.Index:
    """Exact inner product for small corpora; HNSW (inner product) above ``ann_threshold`` vectors."""
    dim = vectors.shape[1]
    if len(vectors) <= opts.ann_threshold:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, opts.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, opts.hnsw_m * 2)
        index.hnsw.efSearch = opts.hnsw_ef_search
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


@dataclass
class FaqIndex:
    """Everything retrieval needs, in memory."""

    manifest: dict[str, Any]
    entries: list[Entry]
    chunks: list[Chunk]
    view_chunk: np.ndarray  # vector row -> chunk row
    vectors: faiss.Index
    bm25: bm25s.BM25
    glossary: Glossary

    def __post_init__(self) -> None:
        self.by_id = {e.id: i for i, e in enumerate(self.entries)}
        self.chunk_entry = np.array([self.by_id[c.entry_id] for c in self.chunks], dtype=np.int64)
        self.view_entry = self.chunk_entry[self.view_chunk]
        self.metadata_fields = {key for entry in self.entries for key in entry.metadata} | {"source"}
        # inverse document frequency of every BM25 term; a term the FAQ never uses weighs as a term of one half-chunk
        doc_freq = np.diff(np.asarray(self.bm25.scores["indptr"]))
        chunks = int(self.bm25.scores["num_docs"])
        self.idf = {
            t: math.log((chunks + 1) / (doc_freq[i] + 0.5))
            for t, i in self.bm25.vocab_dict.items()
            if i < len(doc_freq)
        }
        self.unknown_idf = math.log((chunks + 1) / 0.5)

    @property
    def version(self) -> str:
        return f"{self.manifest['corpus_checksum'][:12]}-{self.manifest['created_at']}"

    def entry(self, entry_id: str) -> Entry | None:
        i = self.by_id.get(entry_id)
        return None if i is None else self.entries[i]


def build_index(
    corpus: Corpus,
    embedder: Embedder,
    opts: IndexSettings,
    glossary: Glossary | None = None,
    progress: Progress | None = None,
) -> FaqIndex:
    """Chunk, embed and index a corpus."""
    glossary = glossary or Glossary.empty()
    embedder.load()
    max_tokens = min(opts.chunk_max_tokens, embedder.max_tokens)
    chunks = chunk_entries(corpus.entries, embedder.count_tokens, max_tokens, opts.chunk_overlap_sentences)
    texts = [c.embed_text for c in chunks]
    view_chunk = list(range(len(chunks)))
    if opts.question_vectors:
        first_chunk = {}
        for row, chunk in enumerate(chunks):
            first_chunk.setdefault(chunk.entry_id, row)
        for entry in corpus.entries:
            if entry.question:
                texts.append(entry.question)
                view_chunk.append(first_chunk[entry.id])
    if opts.sentence_vectors:
        for row, chunk in enumerate(chunks):
            sentences = [s for line in chunk.text.split("\n") for s in split_sentences(line) if len(s) > 20]
            if len(sentences) > 1:
                for sentence in sentences:
                    texts.append(f"{chunk.question}\n{sentence}" if chunk.question else sentence)
                    view_chunk.append(row)
    parts = []
    batch = opts.embed_batch_size
    for start in range(0, len(texts), batch):
        parts.append(embedder.encode_passages(texts[start : start + batch]))
        if progress:
            progress(min(start + batch, len(texts)), len(texts))
    vectors = np.vstack(parts).astype(np.float32)
    analyzer = FrenchAnalyzer()
    bm25 = bm25s.BM25(k1=1.2, b=0.75)
    bm25.index([analyzer(glossary.expand(c.embed_text)) for c in chunks], show_progress=False)
    manifest = {
        "format_version": FORMAT_VERSION,
        "embedder": embedder.name,
        "dim": int(vectors.shape[1]),
        "options": build_options(opts),
        "vector_index": "flat-ip" if len(vectors) <= opts.ann_threshold else f"hnsw{opts.hnsw_m}-ip",
        "corpus_checksum": corpus.checksum(),
        "glossary_checksum": glossary.checksum(),
        "counts": {"entries": len(corpus.entries), "chunks": len(chunks), "vectors": len(vectors)},
        "sources": sorted({e.source for e in corpus.entries}),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "warnings": corpus.warnings,
    }
    return FaqIndex(
        manifest=manifest,
        entries=corpus.entries,
        chunks=chunks,
        view_chunk=np.array(view_chunk, dtype=np.int64),
        vectors=make_vector_index(vectors, opts),
        bm25=bm25,
        glossary=glossary,
    )


def _write_jsonl(path: Path, rows: list[Any]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(row.model_dump_json() + "\n")


def check_target(directory: Path) -> None:
    """Refuse to write an index over anything that is not an index: a user's files are never replaced."""
    directory = Path(directory)
    if not directory.exists() and not directory.is_symlink():
        return
    if not directory.is_dir():
        raise ConfigError(
            f"{directory} is a file, not an index folder; choose another --index-dir (nothing was changed)"
        )
    found = {p.name for p in directory.iterdir()}
    if found and (MANIFEST not in found or found - INDEX_FILES):
        strangers = ", ".join(sorted(found - INDEX_FILES)[:5]) or "no manifest"
        raise ConfigError(
            f"{directory} holds files that are not an index ({strangers}); "
            "choose an empty or new folder for --index-dir (nothing was changed)"
        )


def save_index(index: FaqIndex, directory: Path) -> Path:
    """Write to a temporary folder beside ``directory``, then swap it in by renaming."""
    directory = Path(directory)
    check_target(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_jsonl(tmp / "entries.jsonl", index.entries)
        _write_jsonl(tmp / "chunks.jsonl", index.chunks)
        np.save(tmp / "views.npy", index.view_chunk)
        faiss.write_index(index.vectors, str(tmp / "vectors.faiss"))
        index.bm25.save(str(tmp / "bm25"), show_progress=False)
        (tmp / "glossary.json").write_text(json.dumps(index.glossary.terms, ensure_ascii=False, indent=1))
        # the manifest is written last: a folder without one is never taken for an index
        (tmp / MANIFEST).write_text(json.dumps(index.manifest, ensure_ascii=False, indent=2))
        old = None
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(directory, old)
        os.rename(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise IndexNotReady(f"no index at {directory} (no {MANIFEST}). {REBUILD_HINT}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexNotReady(f"the index manifest {path} is unreadable ({exc}). {REBUILD_HINT}") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        found = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise IndexNotReady(
            f"the index at {directory} has format version {found}, this version reads {FORMAT_VERSION}. {REBUILD_HINT}"
        )
    return manifest


def stale_reason(manifest: dict[str, Any], opts: IndexSettings, embedder_name: str) -> str | None:
    """Why an index no longer matches the settings and sources (None when it does)."""
    if manifest.get("embedder") != embedder_name:
        return f"built with embedder {manifest.get('embedder')}, configured: {embedder_name}"
    built = manifest.get("options", {})
    changed = [name for name, value in build_options(opts).items() if built.get(name) != value]
    if changed:
        return f"built with other options: {', '.join(changed)}"
    corpus = load_corpus(opts.sources)
    if manifest.get("corpus_checksum") != corpus.checksum():
        return "the FAQ sources changed"
    if manifest.get("glossary_checksum") != Glossary.for_sources(opts.sources, opts.glossary).checksum():
        return "the glossary changed"
    return None


def load_index(directory: Path, embedder_name: str | None = None, dim: int | None = None) -> FaqIndex:
    """Load a saved index; refuse one built with another embedder, or one that is incomplete."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if embedder_name is not None and manifest.get("embedder") != embedder_name:
        raise IndexNotReady(
            f"the index at {directory} was built with embedder '{manifest.get('embedder')}', "
            f"but the configured embedder is '{embedder_name}'. Run `rag index` to rebuild it, "
            "or set RAG_EMBEDDER to the embedder it was built with."
        )
    if dim is not None and manifest.get("dim") != dim:
        raise IndexNotReady(f"the index has {manifest.get('dim')}-dim vectors, the embedder {dim}. {REBUILD_HINT}")
    try:
        entries = [Entry.model_validate_json(line) for line in (directory / "entries.jsonl").open(encoding="utf-8")]
        chunks = [Chunk.model_validate_json(line) for line in (directory / "chunks.jsonl").open(encoding="utf-8")]
        view_chunk = np.load(directory / "views.npy")
        vectors = faiss.read_index(str(directory / "vectors.faiss"))
        bm25 = bm25s.BM25.load(str(directory / "bm25"), show_progress=False)
        glossary = Glossary(json.loads((directory / "glossary.json").read_text(encoding="utf-8")))
    except Exception as exc:  # any unreadable part means the same thing to the user
        raise IndexNotReady(f"the index at {directory} is incomplete or corrupt ({exc}). {REBUILD_HINT}") from None
    counts = manifest.get("counts", {})
    if (
        counts.get("entries") != len(entries)
        or counts.get("chunks") != len(chunks)
        or counts.get("vectors") != vectors.ntotal
        or len(view_chunk) != vectors.ntotal
        or vectors.d != manifest.get("dim")
    ):
        raise IndexNotReady(f"the index at {directory} does not match its manifest's counts. {REBUILD_HINT}")
    if isinstance(vectors, faiss.IndexHNSWFlat):
        vectors.hnsw.efSearch = max(vectors.hnsw.efSearch, 16)
    return FaqIndex(manifest, entries, chunks, view_chunk, vectors, bm25, glossary)
