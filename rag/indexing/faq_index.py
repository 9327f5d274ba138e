"""An index version in memory — entries, chunks, vectors, BM25, glossary, latent terms and the confidence fitted
on the FAQ — and its files (:meth:`FaqIndex.save`, :meth:`FaqIndex.load`)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import bm25s
import faiss
import numpy as np

from rag.config import IndexSettings
from rag.corpus.curated import Curation
from rag.embedders.latents import Latents
from rag.errors import IndexNotReady
from rag.indexing.calibration import Calibration
from rag.indexing.manifest import Manifest
from rag.indexing.versions import (
    ANY,
    CALIBRATION,
    CURATION,
    LATENTS,
    MANIFEST,
    OUT_OF_SCOPE,
    REBUILD_HINT,
    publish,
    read_manifest,
    version_dir,
)
from rag.language.analyzer import FrenchAnalyzer
from rag.language.glossary import Glossary
from rag.models import Chunk, Entry

MAX_FACET_VALUES = 100
_analyzer = FrenchAnalyzer()


def lexical_texts(entries: list[Entry], chunks: list[Chunk]) -> list[str]:
    """What BM25 indexes of each chunk: its text, question first, and on an entry's first chunk the entry's
    curated phrasings."""
    alternates = {e.id: e.alternates for e in entries if e.alternates}
    texts, seen = [], set()
    for chunk in chunks:
        extra = alternates.get(chunk.entry_id) if chunk.entry_id not in seen else None
        seen.add(chunk.entry_id)
        texts.append("\n".join([chunk.embed_text, *extra]) if extra else chunk.embed_text)
    return texts


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

    manifest: Manifest
    entries: list[Entry]
    chunks: list[Chunk]
    view_chunk: np.ndarray  # vector row -> chunk row
    vectors: faiss.Index
    bm25: bm25s.BM25
    glossary: Glossary
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="S20"))  # vector row -> what it encodes
    latents: Latents | None = None  # chunk row -> its latent terms, when the encoder has them
    calibration: Calibration | None = None  # the confidence fitted on this FAQ, when it was
    curation: Curation = field(default_factory=Curation)  # the team's decisions this version was built with
    out_of_scope: np.ndarray | None = None  # the vectors of the questions marked out of scope (passage-encoded)

    def __post_init__(self) -> None:
        self.by_id = {e.id: i for i, e in enumerate(self.entries)}
        self.chunk_entry = np.array([self.by_id[c.entry_id] for c in self.chunks], dtype=np.int64)
        self.view_entry = self.chunk_entry[self.view_chunk]
        self.metadata_fields = {key for entry in self.entries for key in entry.metadata} | {"source"}
        # inverse document frequency of every BM25 term; a term the FAQ never uses weighs as one in half a chunk
        doc_freq = np.diff(np.asarray(self.bm25.scores["indptr"]))
        chunks = int(self.bm25.scores["num_docs"])
        vocabulary = self.bm25.vocab_dict.items()
        self.idf = {t: math.log((chunks + 1) / (doc_freq[i] + 0.5)) for t, i in vocabulary if i < len(doc_freq)}
        self.unknown_idf = math.log((chunks + 1) / 0.5)
        self._chunk_terms: dict[int, frozenset[str]] = {}

    @property
    def version(self) -> str:
        return self.manifest.version

    def entry(self, entry_id: str) -> Entry | None:
        i = self.by_id.get(entry_id)
        return None if i is None else self.entries[i]

    @cached_property
    def facets(self) -> dict[str, dict[str, int]]:
        """Each metadata field with few enough distinct values to filter on (at most :data:`MAX_FACET_VALUES`),
        and how many entries have each; computed once per index."""
        counts: dict[str, dict[str, int]] = {}
        for entry in self.entries:
            fields = {**entry.metadata, "source": entry.source}
            for name, value in fields.items():
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, str | int | bool):
                        values = counts.setdefault(name, {})
                        values[str(item)] = values.get(str(item), 0) + 1
        return {f: dict(sorted(v.items())) for f, v in sorted(counts.items()) if len(v) <= MAX_FACET_VALUES}

    @cached_property
    def short_questions(self) -> list[str]:
        """The entries' questions, shortest first (those over 90 characters left out): example questions."""
        return sorted((e.question for e in self.entries if e.question and len(e.question) <= 90), key=len)

    @cached_property
    def out_of_scope_terms(self) -> list[frozenset[str]]:
        """The terms of each question marked out of scope (in the order of :attr:`out_of_scope`'s rows)."""
        return [frozenset(_analyzer(q)) for q in self.curation.out_of_scope]

    @cached_property
    def lexical_texts(self) -> list[str]:
        return lexical_texts(self.entries, self.chunks)

    def chunk_terms(self, row: int) -> frozenset[str]:
        """The BM25 terms of a chunk (its text with the glossary's expansions), computed once per chunk."""
        terms = self._chunk_terms.get(row)
        if terms is None:
            terms = frozenset(_analyzer(self.glossary.expand(self.lexical_texts[row])))
            self._chunk_terms[row] = terms
        return terms

    @cached_property
    def entry_chunks(self) -> list[np.ndarray]:
        """Each entry's chunk rows."""
        order = np.argsort(self.chunk_entry, kind="stable")
        bounds = np.searchsorted(self.chunk_entry[order], np.arange(len(self.entries) + 1))
        return [order[bounds[i] : bounds[i + 1]] for i in range(len(self.entries))]

    @cached_property
    def term_entries(self) -> dict[str, int]:
        """In how many entries each BM25 term appears."""
        counts: dict[str, int] = {}
        for rows in self.entry_chunks:
            for term in frozenset().union(*(self.chunk_terms(int(r)) for r in rows)):
                counts[term] = counts.get(term, 0) + 1
        return counts

    def known(self, excluded: frozenset[int] = frozenset()) -> Callable[[str], bool]:
        """Whether the FAQ uses a term, the ``excluded`` entries left out."""
        if not excluded:
            return self.idf.__contains__
        theirs: dict[str, int] = {}
        for entry in excluded:
            for term in frozenset().union(*(self.chunk_terms(int(r)) for r in self.entry_chunks[entry])):
                theirs[term] = theirs.get(term, 0) + 1
        return lambda term: term in self.idf and self.term_entries.get(term, 0) > theirs.get(term, 0)

    def latent_known_without(self, excluded: frozenset[int]) -> np.ndarray:
        """The largest weight each latent term takes in the FAQ, the ``excluded`` entries left out."""
        if not excluded or self.latents is None:
            return self.latent_known
        rows = np.nonzero(~np.isin(self.chunk_entry, list(excluded)))[0]
        return self.latents.column_max(rows)

    def key_rows(self) -> dict[bytes, int]:
        return {bytes(key): row for row, key in enumerate(self.keys)}

    @cached_property
    def latent_norms(self) -> np.ndarray:
        return self.latents.norms() if self.latents is not None else np.zeros(0)

    @cached_property
    def latent_known(self) -> np.ndarray:
        """The largest weight each latent term takes anywhere in the FAQ."""
        return self.latents.column_max() if self.latents is not None else np.zeros(0, dtype=np.float32)

    def save(self, directory: Path, parent: object = ANY) -> Path:
        """Write this version beside the others in ``directory`` and make it the one in service (when ``parent``,
        the version it was built from, is still the one in service)."""
        return publish(directory, self.version, self._write, parent)

    def _write(self, folder: Path) -> None:
        for name, rows in (("entries.jsonl", self.entries), ("chunks.jsonl", self.chunks)):
            with (folder / name).open("w", encoding="utf-8") as fh:
                fh.writelines(row.model_dump_json() + "\n" for row in rows)
        np.save(folder / "views.npy", self.view_chunk)
        np.save(folder / "keys.npy", self.keys)
        faiss.write_index(self.vectors, str(folder / "vectors.faiss"))
        self.bm25.save(str(folder / "bm25"), show_progress=False)
        (folder / "glossary.json").write_text(json.dumps(self.glossary.terms, ensure_ascii=False, indent=1))
        if self.latents is not None:
            self.latents.save(folder / LATENTS)
        if self.calibration is not None:
            self.calibration.save(folder / CALIBRATION)
        if self.curation:
            (folder / CURATION).write_text(self.curation.to_jsonl(), encoding="utf-8")
        if self.out_of_scope is not None:
            np.save(folder / OUT_OF_SCOPE, self.out_of_scope)
        # the manifest is written last: a folder without one is never taken for an index
        (folder / MANIFEST).write_text(self.manifest.model_dump_json(indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, embedder_name: str | None = None, dim: int | None = None) -> FaqIndex:
        """The version in service; refuse one built with another embedder, or one that is incomplete, naming
        the file that is wrong and what to do."""
        manifest = read_manifest(directory)
        if embedder_name is not None and manifest.embedder != embedder_name:
            raise IndexNotReady(
                f"the index at {directory} was built with embedder '{manifest.embedder}', "
                f"but the configured embedder is '{embedder_name}'. Run `rag index` to rebuild it, "
                "or set RAG_EMBEDDER to the embedder it was built with."
            )
        if dim is not None and manifest.dim != dim:
            raise IndexNotReady(f"the index has {manifest.dim}-dim vectors, the embedder {dim}. {REBUILD_HINT}")
        folder = version_dir(directory)
        parts = _read_parts(folder)
        problem = _inconsistency(manifest, parts)
        if problem:
            raise IndexNotReady(f"the index at {folder} is inconsistent: {problem}. {REBUILD_HINT}")
        index = cls(manifest, **parts)
        if isinstance(index.vectors, faiss.IndexHNSWFlat):
            index.vectors.hnsw.efSearch = max(index.vectors.hnsw.efSearch, 16)
        return index


def _inconsistency(manifest: Manifest, parts: dict[str, Any]) -> str | None:
    """What in the parts disagrees with the manifest or with the other parts (None when all agree)."""
    counts, vectors, chunks, views = manifest.counts, parts["vectors"], parts["chunks"], parts["view_chunk"]
    ids = {e.id for e in parts["entries"]}
    if counts.entries != len(parts["entries"]) or counts.chunks != len(chunks):
        return "entries.jsonl or chunks.jsonl does not hold the number of rows the manifest says"
    if any(c.entry_id not in ids for c in chunks):
        return "chunks.jsonl names an entry that entries.jsonl does not hold"
    if counts.vectors != vectors.ntotal or vectors.d != manifest.dim:
        return "vectors.faiss does not hold the vectors the manifest says"
    if views.ndim != 1 or len(views) != vectors.ntotal or not np.issubdtype(views.dtype, np.integer):
        return "views.npy does not map every vector to a chunk"
    if len(views) and (views.min() < 0 or views.max() >= len(chunks)):
        return "views.npy points outside chunks.jsonl"
    if len(parts["keys"]) != vectors.ntotal:
        return "keys.npy does not name every vector"
    if int(parts["bm25"].scores["num_docs"]) != len(chunks):
        return "bm25/ does not index every chunk"
    if parts["latents"] is not None and len(parts["latents"]) != len(chunks):
        return f"{LATENTS} does not hold the latent terms of every chunk"
    scope = parts["out_of_scope"]
    if scope is not None and (scope.ndim != 2 or scope.shape != (len(parts["curation"].out_of_scope), vectors.d)):
        return f"{OUT_OF_SCOPE} does not hold a vector for every question marked out of scope"
    return None


def _read_parts(folder: Path) -> dict[str, Any]:
    """Every file of a version, read and checked on its own; any unreadable one is named."""
    parts: dict[str, Any] = {}
    current = MANIFEST
    try:
        current = "entries.jsonl"
        parts["entries"] = [Entry.model_validate_json(line) for line in (folder / current).open(encoding="utf-8")]
        current = "chunks.jsonl"
        parts["chunks"] = [Chunk.model_validate_json(line) for line in (folder / current).open(encoding="utf-8")]
        current = "views.npy"
        parts["view_chunk"] = np.load(folder / current)
        current = "keys.npy"
        parts["keys"] = np.load(folder / current)
        current = "vectors.faiss"
        parts["vectors"] = faiss.read_index(str(folder / current))
        current = "bm25"
        parts["bm25"] = bm25s.BM25.load(str(folder / current), show_progress=False)
        current = "glossary.json"
        parts["glossary"] = Glossary(json.loads((folder / current).read_text(encoding="utf-8")))
        current = LATENTS
        parts["latents"] = Latents.load(folder / current) if (folder / current).exists() else None
        current = CALIBRATION
        parts["calibration"] = Calibration.read(folder / current) if (folder / current).exists() else None
        current = CURATION
        parts["curation"] = Curation.read(folder / current) if (folder / current).exists() else Curation()
        current = OUT_OF_SCOPE
        parts["out_of_scope"] = np.load(folder / current) if (folder / current).exists() else None
    except Exception as exc:  # any unreadable part means the same thing to the user
        raise IndexNotReady(
            f"the index file {folder / current} is unreadable or corrupt ({exc}). {REBUILD_HINT}"
        ) from None
    return parts
