"""The built index on disk: versions side by side and a pointer to the one in service.

::

    <index dir>/current            -> versions/<version>   (a symbolic link, replaced atomically)
    <index dir>/versions/<version>/manifest.json, entries.jsonl, chunks.jsonl, views.npy, keys.npy,
                                   vectors.faiss, bm25/, glossary.json, latents.npz (when the encoder has them)
    <index dir>/.tmp-<id>/          a version being written (removed if the build dies)

A version is written in full in a temporary folder, renamed into ``versions/``, then the pointer is
swapped: at every instant ``current`` names a complete version, so a killed build never leaves the
service without an index. The folder is the service's own: it refuses to write into one that holds
anything else. Loading checks every file and says, in one line, which one is wrong and what to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import bm25s
import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from .config import IndexSettings
from .errors import ConfigError, IndexNotReady
from .glossary import Glossary
from .latents import Latents
from .models import Chunk, Entry
from .sources import load_corpus

FORMAT_VERSION = 5
MANIFEST = "manifest.json"
CURRENT = "current"
VERSIONS = "versions"
MAX_FACET_VALUES = 100
KEEP_VERSIONS = 2  # the one in service and the one before it (a replica may still be reading it)
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
    "latent_terms",
)
VERSION_FILES = (MANIFEST, "entries.jsonl", "chunks.jsonl", "views.npy", "keys.npy", "vectors.faiss", "glossary.json")
LATENTS = "latents.npz"  # the chunks' latent terms, when the encoder has them
# an index folder of an earlier layout held one version's files directly: they are the service's own too
OWN_NAMES = {CURRENT, VERSIONS, ".lock", "bm25", "keys.npy", LATENTS, *VERSION_FILES}


class _Counts(BaseModel):
    entries: int
    chunks: int
    vectors: int
    reused: int = 0


class _Source(BaseModel):
    path: str
    sha256: str


class Manifest(BaseModel):
    """What a manifest must hold to be loaded."""

    model_config = ConfigDict(extra="allow")

    format_version: int
    version: str
    embedder: str
    dim: int
    options: dict[str, Any]
    vector_index: str
    corpus_checksum: str
    glossary_checksum: str
    counts: _Counts
    sources: list[_Source]
    created_at: str
    warnings: list[str] = []


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
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="S20"))  # vector row -> what it encodes
    latents: Latents | None = None  # chunk row -> its latent terms, when the encoder has them

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
        return self.manifest["version"]

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

    def chunk_terms(self, row: int, analyzer: Callable[[str], list[str]]) -> frozenset[str]:
        """The BM25 terms of a chunk (its text with the glossary's expansions), computed once per chunk."""
        terms = self._chunk_terms.get(row)
        if terms is None:
            terms = frozenset(analyzer(self.glossary.expand(self.chunks[row].embed_text)))
            self._chunk_terms[row] = terms
        return terms

    def key_rows(self) -> dict[bytes, int]:
        return {bytes(key): row for row, key in enumerate(self.keys)}

    @cached_property
    def latent_norms(self) -> np.ndarray:
        return self.latents.norms() if self.latents is not None else np.zeros(0)

    @cached_property
    def latent_known(self) -> np.ndarray:
        """The largest weight each latent term takes anywhere in the FAQ."""
        return self.latents.column_max() if self.latents is not None else np.zeros(0, dtype=np.float32)


def version_dir(directory: Path) -> Path:
    """The folder of the version in service: ``current``'s target, or the folder itself (one version)."""
    directory = Path(directory)
    pointer = directory / CURRENT
    return pointer.resolve() if pointer.is_symlink() or pointer.exists() else directory


def check_target(directory: Path) -> None:
    """Refuse to write an index over anything that is not an index: a user's files are never replaced."""
    directory = Path(directory)
    if not directory.exists() and not directory.is_symlink():
        return
    if not directory.is_dir():
        raise ConfigError(f"{directory} is a file, not an index folder; choose another --index-dir (nothing changed)")
    found = {p.name for p in directory.iterdir()}
    strangers = sorted(n for n in found - OWN_NAMES if not n.startswith(".tmp-"))
    if strangers or (found and not found & {CURRENT, VERSIONS, MANIFEST}):
        raise ConfigError(
            f"{directory} holds files that are not an index ({', '.join(strangers[:5]) or 'no manifest'}); "
            "choose an empty or new folder for --index-dir (nothing was changed)"
        )


@contextlib.contextmanager
def _writer(directory: Path) -> Iterator[None]:
    """One writer at a time per index folder, across processes."""
    with open(directory / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_version(index: FaqIndex, folder: Path) -> None:
    folder.mkdir()
    for name, rows in (("entries.jsonl", index.entries), ("chunks.jsonl", index.chunks)):
        with (folder / name).open("w", encoding="utf-8") as fh:
            fh.writelines(row.model_dump_json() + "\n" for row in rows)
    np.save(folder / "views.npy", index.view_chunk)
    np.save(folder / "keys.npy", index.keys)
    faiss.write_index(index.vectors, str(folder / "vectors.faiss"))
    index.bm25.save(str(folder / "bm25"), show_progress=False)
    (folder / "glossary.json").write_text(json.dumps(index.glossary.terms, ensure_ascii=False, indent=1))
    if index.latents is not None:
        index.latents.save(folder / LATENTS)
    # the manifest is written last: a folder without one is never taken for an index
    (folder / MANIFEST).write_text(json.dumps(index.manifest, ensure_ascii=False, indent=2))


def save_index(index: FaqIndex, directory: Path) -> Path:
    """Write a new version beside the others, then point ``current`` at it in one atomic step."""
    directory = Path(directory)
    check_target(directory)
    (directory / VERSIONS).mkdir(parents=True, exist_ok=True)
    with _writer(directory):
        for orphan in directory.glob(".tmp-*"):  # left by builds that died: no writer is running now
            _remove(orphan)
        tmp = directory / f".tmp-{uuid.uuid4().hex[:8]}"
        try:
            _write_version(index, tmp)
            target = directory / VERSIONS / index.version
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        pointer = directory / f".tmp-{uuid.uuid4().hex[:8]}"
        pointer.symlink_to(Path(VERSIONS) / index.version)
        os.replace(pointer, directory / CURRENT)
        _clean(directory, keep=index.version)
    return target


def _clean(directory: Path, keep: str) -> None:
    """Drop the files of an earlier one-version layout and all but the newest versions."""
    for name in OWN_NAMES - {CURRENT, VERSIONS, ".lock"}:
        _remove(directory / name)
    versions = sorted((p for p in (directory / VERSIONS).iterdir() if p.name != keep), reverse=True)
    for old in versions[KEEP_VERSIONS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of the version in service, checked; :class:`IndexNotReady` names what is wrong."""
    path = version_dir(directory) / MANIFEST
    if not path.exists():
        raise IndexNotReady(f"no index at {directory} (no {MANIFEST}). {REBUILD_HINT}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexNotReady(f"the index manifest {path} is unreadable ({exc}). {REBUILD_HINT}") from None
    found = manifest.get("format_version") if isinstance(manifest, dict) else None
    if found != FORMAT_VERSION:
        raise IndexNotReady(
            f"the index at {directory} has format version {found}, this version reads {FORMAT_VERSION}. {REBUILD_HINT}"
        )
    try:
        Manifest.model_validate(manifest)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise IndexNotReady(f"the index manifest {path} is invalid ({where}: {first['msg']}). {REBUILD_HINT}") from None
    return manifest


def manifest_sources(directory: Path) -> list[Path]:
    """The FAQ files an index was built from (the newest readable version that names existing files)."""
    directory = Path(directory)
    candidates = [version_dir(directory)]
    if (directory / VERSIONS).is_dir():
        candidates += sorted((directory / VERSIONS).iterdir(), reverse=True)
    for folder in candidates:
        try:
            sources = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("sources", [])
            paths = [Path(s["path"]) for s in sources]
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
        if paths and all(p.is_file() for p in paths):
            return paths
    return []


def stale_reason(manifest: dict[str, Any], opts: IndexSettings, sources: list[Path], embedder_name: str) -> str | None:
    """Why an index no longer matches the settings and sources (None when it does)."""
    if manifest.get("embedder") != embedder_name:
        return f"built with embedder {manifest.get('embedder')}, configured: {embedder_name}"
    built = manifest.get("options", {})
    changed = [name for name, value in build_options(opts).items() if built.get(name) != value]
    if changed:
        return f"built with other options: {', '.join(changed)}"
    if manifest.get("corpus_checksum") != load_corpus(sources).checksum():
        return "the FAQ sources changed"
    if manifest.get("glossary_checksum") != Glossary.for_sources(sources, opts.glossary).checksum():
        return "the glossary changed"
    return None


def load_index(directory: Path, embedder_name: str | None = None, dim: int | None = None) -> FaqIndex:
    """Load the version in service; refuse one built with another embedder, or one that is incomplete."""
    manifest = read_manifest(directory)
    folder = version_dir(directory)
    if embedder_name is not None and manifest["embedder"] != embedder_name:
        raise IndexNotReady(
            f"the index at {directory} was built with embedder '{manifest['embedder']}', "
            f"but the configured embedder is '{embedder_name}'. Run `rag index` to rebuild it, "
            "or set RAG_EMBEDDER to the embedder it was built with."
        )
    if dim is not None and manifest["dim"] != dim:
        raise IndexNotReady(f"the index has {manifest['dim']}-dim vectors, the embedder {dim}. {REBUILD_HINT}")
    parts = _read_parts(folder)
    _check(folder, manifest, *parts)
    entries, chunks, view_chunk, keys, vectors, bm25, glossary, latents = parts
    if isinstance(vectors, faiss.IndexHNSWFlat):
        vectors.hnsw.efSearch = max(vectors.hnsw.efSearch, 16)
    return FaqIndex(manifest, entries, chunks, view_chunk, vectors, bm25, glossary, keys, latents)


def _read_parts(folder: Path) -> tuple[Any, ...]:
    current = MANIFEST
    try:
        current = "entries.jsonl"
        entries = [Entry.model_validate_json(line) for line in (folder / current).open(encoding="utf-8")]
        current = "chunks.jsonl"
        chunks = [Chunk.model_validate_json(line) for line in (folder / current).open(encoding="utf-8")]
        current = "views.npy"
        view_chunk = np.load(folder / current)
        current = "keys.npy"
        keys = np.load(folder / current)
        current = "vectors.faiss"
        vectors = faiss.read_index(str(folder / current))
        current = "bm25"
        bm25 = bm25s.BM25.load(str(folder / current), show_progress=False)
        current = "glossary.json"
        glossary = Glossary(json.loads((folder / current).read_text(encoding="utf-8")))
        current = LATENTS
        latents = Latents.load(folder / current) if (folder / current).exists() else None
    except Exception as exc:  # any unreadable part means the same thing to the user
        raise IndexNotReady(
            f"the index file {folder / current} is unreadable or corrupt ({exc}). {REBUILD_HINT}"
        ) from (None)
    return entries, chunks, view_chunk, keys, vectors, bm25, glossary, latents


def _check(
    folder: Path, manifest: dict[str, Any], entries, chunks, view_chunk, keys, vectors, bm25, glossary, latents
) -> None:
    """The parts agree with the manifest and with each other."""
    counts = manifest["counts"]
    problem = None
    ids = {e.id for e in entries}
    if counts["entries"] != len(entries) or counts["chunks"] != len(chunks):
        problem = "entries.jsonl or chunks.jsonl does not hold the number of rows the manifest says"
    elif any(c.entry_id not in ids for c in chunks):
        problem = "chunks.jsonl names an entry that entries.jsonl does not hold"
    elif counts["vectors"] != vectors.ntotal or vectors.d != manifest["dim"]:
        problem = "vectors.faiss does not hold the vectors the manifest says"
    elif view_chunk.ndim != 1 or len(view_chunk) != vectors.ntotal or not np.issubdtype(view_chunk.dtype, np.integer):
        problem = "views.npy does not map every vector to a chunk"
    elif len(view_chunk) and (view_chunk.min() < 0 or view_chunk.max() >= len(chunks)):
        problem = "views.npy points outside chunks.jsonl"
    elif len(keys) != vectors.ntotal:
        problem = "keys.npy does not name every vector"
    elif int(bm25.scores["num_docs"]) != len(chunks):
        problem = "bm25/ does not index every chunk"
    elif latents is not None and len(latents) != len(chunks):
        problem = f"{LATENTS} does not hold the latent terms of every chunk"
    if problem:
        raise IndexNotReady(f"the index at {folder} is inconsistent: {problem}. {REBUILD_HINT}")
