"""Building an index: chunk the corpus, embed what the previous version has not embedded already, and
index the chunks for BM25; and telling whether a built index still matches the settings and sources."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from rag.config import IndexSettings, is_url
from rag.corpus.chunking import chunk_entries
from rag.corpus.curated import Curation
from rag.corpus.entries import Corpus
from rag.corpus.sources import load_corpus
from rag.corpus.web.pages import PageStore
from rag.embedders import Embedder
from rag.embedders.latents import LatentEncoder, Latents
from rag.indexing.faq_index import FaqIndex, lexical_texts, make_vector_index
from rag.indexing.manifest import FORMAT_VERSION, Counts, Manifest, SourceRecord, stamp
from rag.language.analyzer import FrenchAnalyzer
from rag.language.glossary import Glossary
from rag.language.text import split_sentences
from rag.models import Chunk, Entry

Progress = Callable[[int, int], None]
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


def build_options(opts: IndexSettings) -> dict[str, Any]:
    return {name: getattr(opts, name) for name in BUILD_OPTIONS}


def stale_reason(manifest: Manifest, opts: IndexSettings, sources: list[Path | str], embedder_name: str) -> str | None:
    """Why an index no longer matches the settings and sources (None when it does)."""
    if manifest.embedder != embedder_name:
        return f"built with embedder {manifest.embedder}, configured: {embedder_name}"
    changed = [name for name, value in build_options(opts).items() if manifest.options.get(name) != value]
    if changed:
        return f"built with other options: {', '.join(changed)}"
    if manifest.corpus_checksum != load_corpus(sources, PageStore.read(opts.index_dir)).checksum():
        return "the FAQ sources changed"
    if manifest.glossary_checksum != Glossary.for_sources(sources, opts.glossary).checksum():
        return "the glossary changed"
    return None


def views(entries: list[Entry], chunks: list[Chunk], opts: IndexSettings) -> tuple[list[str], list[int]]:
    """The texts to embed and, for each, its chunk: every chunk (question first), each entry's question on
    its own, and (optionally) each sentence of longer chunks."""
    texts = [c.embed_text for c in chunks]
    view_chunk = list(range(len(chunks)))
    first_chunk: dict[str, int] = {}
    for row, chunk in enumerate(chunks):
        first_chunk.setdefault(chunk.entry_id, row)
    for entry in entries:
        # the curated phrasings users asked are searched like the entry's own question, whatever the options
        asked = ([entry.question] if entry.question and opts.question_vectors else []) + entry.alternates
        for text in asked:
            texts.append(text)
            view_chunk.append(first_chunk[entry.id])
    if opts.sentence_vectors:
        for row, chunk in enumerate(chunks):
            sentences = [s for line in chunk.text.split("\n") for s in split_sentences(line) if len(s) > 20]
            if len(sentences) > 1:
                for sentence in sentences:
                    texts.append(f"{chunk.question}\n{sentence}" if chunk.question else sentence)
                    view_chunk.append(row)
    return texts, view_chunk


def text_key(embedder: Embedder, prefix: str, text: str) -> bytes:
    """What a vector depends on: the encoder, its passage prefix and the text."""
    return hashlib.sha1(f"{embedder.name}\x00{prefix}\x00{text}".encode()).digest()


def _embed(
    texts: list[str], keys: list[bytes], embedder: Embedder, batch: int, previous: FaqIndex | None, progress
) -> tuple[np.ndarray, int]:
    """Vectors for ``texts``: those the previous version holds under the same key are reused, not re-embedded."""
    known = previous.key_rows() if previous is not None and previous.vectors.d == embedder.dim else {}
    rows = [known.get(key) for key in keys]
    vectors = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    reused = [i for i, row in enumerate(rows) if row is not None]
    if reused:
        vectors[reused] = previous.vectors.reconstruct_batch(np.array([rows[i] for i in reused], dtype=np.int64))
    todo = [i for i, row in enumerate(rows) if row is None]
    for start in range(0, len(todo), batch):
        part = todo[start : start + batch]
        vectors[part] = embedder.encode_passages([texts[i] for i in part])
        if progress:
            progress(min(start + batch, len(todo)), len(todo))
    if progress and not todo:
        progress(0, 0)
    return vectors, len(reused)


def _previous_latents(previous: FaqIndex | None) -> dict[bytes, int]:
    """The previous version's chunk rows with latent terms, by the key of the chunk's text."""
    if previous is None or previous.latents is None:
        return {}
    return {bytes(key): row for row, key in enumerate(previous.keys[: len(previous.chunks)])}


def _latents(
    texts: list[str],
    keys: list[bytes],
    embedder: LatentEncoder,
    batch: int,
    previous: FaqIndex | None,
    known: dict[bytes, int],
    progress: Progress | None,
) -> Latents:
    """The chunks' latent terms, reusing those of ``previous`` (``known``: its rows by text key)."""
    todo = [i for i, key in enumerate(keys) if key not in known]
    new: dict[int, Latents] = {}
    for start in range(0, len(todo), batch):
        part = todo[start : start + batch]
        rows = embedder.encode_latents([texts[i] for i in part])
        new.update((i, rows.take([j])) for j, i in enumerate(part))
        if progress:
            progress(min(start + batch, len(todo)), len(todo))
    dim = next(iter(new.values())).dim if new else (previous.latents.dim if previous and previous.latents else 0)
    rows = [new[i] if i in new else previous.latents.take([known[key]]) for i, key in enumerate(keys)]
    return Latents.stack(rows, dim)


class _Stages:
    """One progress count over two stages of work: vectors, then latent terms."""

    def __init__(self, progress: Progress | None, second: int) -> None:
        self.progress, self.second_size, self.first_size = progress, second, 0

    def first(self, done: int, total: int) -> None:
        self.first_size = total
        if self.progress:
            self.progress(done, total + self.second_size)

    def second(self, done: int, total: int) -> None:
        if self.progress:
            self.progress(self.first_size + done, self.first_size + total)


def build_index(
    corpus: Corpus,
    embedder: Embedder,
    opts: IndexSettings,
    glossary: Glossary | None = None,
    progress: Progress | None = None,
    previous: FaqIndex | None = None,
    sources: list[SourceRecord] | None = None,
    curation: Curation | None = None,
) -> FaqIndex:
    """Chunk, embed and index a corpus with the team's ``curation`` applied, reusing the vectors of ``previous``
    whose text has not changed. The manifest's checksum is that of the sources, for telling when they change."""
    glossary = glossary or Glossary.empty()
    curation = curation or Curation()
    sources_checksum = corpus.checksum()
    corpus = curation.apply(corpus)
    embedder.load()
    max_tokens = min(opts.chunk_max_tokens, embedder.max_tokens)
    chunks = chunk_entries(corpus.entries, embedder.count_tokens, max_tokens, opts.chunk_overlap_sentences)
    texts, view_chunk = views(corpus.entries, chunks, opts)
    keys = [text_key(embedder, opts.passage_prefix, t) for t in texts]
    # the chunks' texts come first among the views: their keys name their latent terms too
    with_latents = opts.latent_terms and isinstance(embedder, LatentEncoder)
    reusable = _previous_latents(previous) if with_latents else {}
    missing = sum(1 for key in keys[: len(chunks)] if key not in reusable) if with_latents else 0
    stages = _Stages(progress, missing)
    vectors, reused = _embed(texts, keys, embedder, opts.embed_batch_size, previous, stages.first)
    latents = None
    if with_latents:
        chunk_texts, chunk_keys = texts[: len(chunks)], keys[: len(chunks)]
        batch = opts.embed_batch_size
        latents = _latents(chunk_texts, chunk_keys, embedder, batch, previous, reusable, stages.second)
    analyzer = FrenchAnalyzer()
    bm25 = bm25s.BM25(k1=1.2, b=0.75)
    bm25.index([analyzer(glossary.expand(text)) for text in lexical_texts(corpus.entries, chunks)], show_progress=False)
    version, created = stamp()
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        version=version,
        embedder=embedder.name,
        dim=int(vectors.shape[1]),
        options=build_options(opts),
        vector_index="flat-ip" if len(vectors) <= opts.ann_threshold else f"hnsw{opts.hnsw_m}-ip",
        corpus_checksum=sources_checksum,
        glossary_checksum=glossary.checksum(),
        counts=Counts(entries=len(corpus.entries), chunks=len(chunks), vectors=len(vectors), reused=reused),
        latent_terms=latents is not None,
        sources=sources or [],
        created_at=created,
        warnings=corpus.warnings,
        curated=curation.counts() if curation else {},
    )
    asked_out_of_scope = curation.out_of_scope
    out_of_scope = embedder.encode_passages(asked_out_of_scope) if asked_out_of_scope else None
    return FaqIndex(
        manifest=manifest,
        entries=corpus.entries,
        chunks=chunks,
        view_chunk=np.array(view_chunk, dtype=np.int64),
        vectors=make_vector_index(vectors, opts),
        bm25=bm25,
        glossary=glossary,
        keys=np.array(keys, dtype="S20"),
        latents=latents,
        curation=curation,
        out_of_scope=None if out_of_scope is None else np.asarray(out_of_scope, dtype=np.float32),
    )


def source_records(paths: list[Path | str], pages: PageStore | None = None) -> list[SourceRecord]:
    """Each source file's absolute path and checksum, each web source's address and what it gave, for the
    manifest."""
    pages = pages or PageStore()
    return [
        SourceRecord(path=p, sha256=pages.checksum(p))
        if is_url(p)
        else SourceRecord(path=str(Path(p).resolve()), sha256=hashlib.sha256(Path(p).read_bytes()).hexdigest())
        for p in paths
    ]
