"""Load FAQ entries from files: the Ségur plain-text export, JSON/JSONL, CSV and Markdown.

Every loader returns :class:`Entry` objects with stable ids; every problem in a file is raised as a
:class:`SourceError` naming the file and the line or record.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rag.config import is_url
from rag.corpus.entries import Corpus, content_id
from rag.errors import SourceError
from rag.language.text import extract_links
from rag.models import Entry

if TYPE_CHECKING:
    from rag.corpus.web.pages import PageStore

SEPARATOR = "Cette réponse vous a-t-elle été utile ?"
FILTER_PREFIX = "Votre question concerne"
SUFFIXES = (".txt", ".jsonl", ".json", ".csv", ".md", ".markdown", ".html", ".htm")
RESERVED = {"id", "question", "answer", "url", "links"}


def _read_text(path: Path) -> str:
    if not path.exists():
        raise SourceError(path, "file not found; check the path")
    if path.is_dir():
        raise SourceError(path, "is a folder; give FAQ files (.txt, .jsonl, .json, .csv, .md)")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = _guess_encoding(path, data, exc)
    if not text.strip():
        raise SourceError(path, "the file is empty; it must hold at least one FAQ entry")
    return text


def _guess_encoding(path: Path, data: bytes, error: UnicodeDecodeError) -> str:
    """Files saved by spreadsheets and old editors (cp1252, Latin-1…): their encoding is detected, the
    Western European ones first when the bytes fit them (short French texts fit several code pages)."""
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    western = [m for m in matches if m.encoding in {"cp1252", "latin_1", "iso8859_15"}]
    best = western[0] if western else matches.best()
    if best is None or best.encoding in {"utf_8", "utf_8_sig"}:
        line = data[: error.start].count(b"\n") + 1
        raise SourceError(
            path,
            f"byte {error.start} is not valid UTF-8 and the encoding is unknown; save it as UTF-8",
            where=f"line {line}",
        )
    return str(best)


def _entry(record: Any, path: Path, where: str) -> Entry:
    if not isinstance(record, dict):
        raise SourceError(path, f"expected an object with an 'answer', got {type(record).__name__}", where=where)
    answer = record.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise SourceError(path, "the record has no 'answer' (a non-empty text is required)", where=where)
    question = record.get("question")
    if question is not None and not isinstance(question, str):
        raise SourceError(path, "'question' must be a text", where=where)
    question = question.strip() if question and question.strip() else None
    url = record.get("url")
    if url is not None and not isinstance(url, str):
        raise SourceError(path, "'url' must be a text", where=where)
    raw_id = record.get("id")
    if raw_id is not None and not isinstance(raw_id, (str, int)):
        raise SourceError(path, "'id' must be a text or a number", where=where)
    entry_id = str(raw_id).strip() if raw_id is not None and str(raw_id).strip() else None
    answer = answer.strip()
    links = record.get("links") if isinstance(record.get("links"), list) else []
    return Entry(
        id=entry_id or content_id(question, answer),
        question=question,
        answer=answer,
        url=url.strip() or None if url else None,
        links=list(dict.fromkeys([*map(str, links), *extract_links(answer)])),
        metadata={k: v for k, v in record.items() if k not in RESERVED and v is not None},
        source=path.name,
    )


def load_segur_export(path: Path) -> Iterator[Entry]:
    """The site's plain-text export: answers separated by the "was this useful?" line."""
    text = _read_text(path)
    lines = text.splitlines()
    if not any(line.strip() == SEPARATOR for line in lines):
        raise SourceError(path, f"no line '{SEPARATOR}' separates the answers; is this an FAQ export?")
    block: list[str] = []
    start = 1
    for number, line in enumerate(lines, start=1):
        if line.strip() == SEPARATOR:
            body = "\n".join(block).strip()
            if not body:
                raise SourceError(path, "an answer is empty (two separators in a row)", where=f"line {number}")
            yield _entry({"answer": body}, path, f"line {start}")
            block, start = [], number + 1
        elif line.strip().startswith(FILTER_PREFIX) and not any(b.strip() for b in block):
            start = number + 1  # the site's filter questions lead the export; they are not an answer
        else:
            block.append(line)
    if "\n".join(block).strip():
        yield _entry({"answer": "\n".join(block).strip()}, path, f"line {start}")


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, record)`` for each non-blank line; malformed JSON is a :class:`SourceError`."""
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(path, f"malformed JSON: {exc.msg} (column {exc.colno})", where=f"line {number}") from None


def load_jsonl(path: Path) -> Iterator[Entry]:
    for number, record in read_jsonl(path):
        yield _entry(record, path, f"line {number}")


def load_json(path: Path) -> Iterator[Entry]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(path, f"malformed JSON: {exc.msg} (column {exc.colno})", where=f"line {exc.lineno}") from None
    if isinstance(data, dict):
        data = data.get("entries", data.get("faq"))
    if not isinstance(data, list):
        raise SourceError(path, "expected a list of entries, or an object with an 'entries' list")
    for number, record in enumerate(data, start=1):
        yield _entry(record, path, f"record {number}")


def load_csv(path: Path) -> Iterator[Entry]:
    """A header row, then one entry per row; the separator (``,`` ``;`` tab ``|``) is detected, and the
    reserved column names (``answer``, ``question``, ``id``, ``url``) match whatever their case."""
    text = _read_text(path)
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [h.strip() for h in reader.fieldnames or []]
        names = {h: h.lower() if h.lower() in RESERVED else h for h in header}
        reader.fieldnames = [names[h] for h in header]
        if "answer" not in reader.fieldnames:
            raise SourceError(path, f"the header has no 'answer' column (found: {', '.join(header)})", where="line 1")
        for record in reader:
            where = f"line {reader.line_num}"
            if None in record:
                raise SourceError(path, f"the row has more fields than the header's {len(header)}", where=where)
            yield _entry({k: (v if v != "" else None) for k, v in record.items()}, path, where)
    except csv.Error as exc:
        raise SourceError(path, f"malformed CSV: {exc}", where=f"line {reader.line_num}") from None


def load_markdown(path: Path) -> Iterator[Entry]:
    """One ``## Question`` heading per entry; the text below it, up to the next heading, is the answer."""
    text = _read_text(path)
    question: str | None = None
    body: list[str] = []
    start = 0
    found = False

    def flush() -> Entry | None:
        if question is None:
            return None
        return _entry({"question": question, "answer": "\n".join(body).strip()}, path, f"line {start}")

    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("## "):
            entry = flush()
            if entry:
                yield entry
            question, body, start, found = line[3:].strip(), [], number, True
        elif line.startswith("# ") and question is None:
            continue
        else:
            body.append(line)
    entry = flush()
    if entry:
        yield entry
    if not found:
        raise SourceError(path, "no '## ' heading found; write one '## Question' heading per entry")


def load_html(path: Path) -> Iterator[Entry]:
    """A FAQ page saved as a file, read like a web page (its canonical link, when it has one, gives the URLs)."""
    from rag.corpus.web.extract import read_page
    from rag.corpus.web.pages import entry_id

    if not path.exists():
        raise SourceError(path, "file not found; check the path")
    page = read_page(path.read_bytes(), path.resolve().as_uri(), saved=True)
    if not page.pairs:
        raise SourceError(path, "no FAQ structure found (FAQPage, fr-accordion, details, dl, headings)")
    where = page.canonical
    for pair in page.pairs:
        yield Entry(
            id=entry_id(where or path.name, pair.anchor),
            question=pair.question,
            answer=pair.answer,
            url=f"{where.split('#', 1)[0]}#{pair.anchor}" if where else None,
            links=pair.links,
            source=path.name,
        )


LOADERS = {
    ".txt": load_segur_export,
    ".html": load_html,
    ".htm": load_html,
    ".jsonl": load_jsonl,
    ".json": load_json,
    ".csv": load_csv,
    ".md": load_markdown,
    ".markdown": load_markdown,
}


def _overlay(path: Path) -> dict[str, dict[str, Any]]:
    """Optional ``<source>.meta.jsonl`` beside a source: extra fields (a question title, a URL…) by id."""
    meta = path.with_name(path.name + ".meta.jsonl")
    if not meta.exists():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for number, record in read_jsonl(meta):
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise SourceError(meta, "each line must be an object with an 'id'", where=f"line {number}")
        out[record["id"]] = record
    return out


def load_file(path: Path) -> list[Entry]:
    """Load one source file, choosing the reader by its extension."""
    path = Path(path)
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise SourceError(path, f"unknown file type '{path.suffix}'; use one of {', '.join(SUFFIXES)}")
    entries = list(loader(path))
    overlay = _overlay(path)
    if overlay:
        entries = [_apply(entry, overlay.get(entry.id)) for entry in entries]
    return entries


def _apply(entry: Entry, extra: dict[str, Any] | None) -> Entry:
    if not extra:
        return entry
    update: dict[str, Any] = {}
    if extra.get("question") and not entry.question:
        update["question"] = str(extra["question"])
    if extra.get("url") and not entry.url:
        update["url"] = str(extra["url"])
    meta = {k: v for k, v in extra.items() if k not in RESERVED}
    if meta:
        update["metadata"] = {**entry.metadata, **meta}
    return entry.model_copy(update=update)


def safe_url(url: str) -> bool:
    """Only web links (``http``, ``https``) and relative ones: never ``javascript:``, ``data:`` or others."""
    scheme = urlsplit(url.strip()).scheme.lower()
    return scheme in {"http", "https"} or (not scheme and not url.strip().lower().startswith("//"))


def _safe_links(entry: Entry, path: Path, warnings: list[str]) -> Entry:
    links = [link for link in entry.links if safe_url(link)]
    if entry.url and not safe_url(entry.url):
        warnings.append(f"{path}: entry {entry.id} has a link that is not http(s) ({entry.url[:40]}); it was dropped")
        return entry.model_copy(update={"url": None, "links": links})
    return entry.model_copy(update={"links": links}) if len(links) != len(entry.links) else entry


def _entries(source: Path | str, pages: PageStore | None) -> list[Entry]:
    """A file's entries, or what a web page or sitemap gave at the last sync (``pages``)."""
    if not is_url(source):
        return load_file(Path(source))
    if pages is None or not pages.tried(str(source)):
        raise SourceError(source, "has not been read yet; run `rag sync` (or `rag index`) to fetch it")
    return pages.entries(str(source))  # none when it failed: the sync's report said why


def load_corpus(paths: Iterable[Path | str], pages: PageStore | None = None) -> Corpus:
    """Load every source (web ones from ``pages``); keep a repeated entry once and report it.

    An entry repeated with the same id (or, without ids, the same content) is kept once. Two
    records with their own distinct ids but the same text are both kept (each has its own link),
    with a warning. One id on two different texts is an error.
    """
    entries: dict[str, Entry] = {}
    by_content: dict[str, str] = {}
    warnings: list[str] = []
    paths = [p if is_url(p) else Path(p) for p in paths]
    if not paths:
        raise SourceError("<none>", "no source given; pass --source FILE or set RAG_SOURCES")
    for path in paths:
        for entry in _entries(path, pages):
            entry = _safe_links(entry, path, warnings)
            key = content_id(entry.question, entry.answer)
            known = entries.get(entry.id)
            if known is not None:
                if content_id(known.question, known.answer) != key:
                    raise SourceError(path, f"id '{entry.id}' is used by two different entries; ids must be unique")
                warnings.append(f"{path}: entry {entry.id} appears twice; kept once")
                continue
            if key in by_content:
                warnings.append(f"{path}: entry {entry.id} has the same text as entry {by_content[key]}")
            by_content.setdefault(key, entry.id)
            entries[entry.id] = entry
    return Corpus(entries=list(entries.values()), warnings=warnings)
