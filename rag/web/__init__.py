"""The web page and HTML views of FAQ entries."""

from __future__ import annotations

import re
from functools import cache
from html import escape
from importlib.resources import files
from pathlib import Path

from ..schemas import EntryResponse

STATIC_DIR = Path(__file__).parent / "static"
_LINKS = re.compile(r"(https?://[^\s<>\"')\]]+)")


def _linkify(text: str) -> str:
    return _LINKS.sub(lambda m: f'<a href="{m.group(1)}" rel="noopener">{m.group(1)}</a>', escape(text))


@cache
def index_page() -> str:
    return files(__package__).joinpath("static", "index.html").read_text(encoding="utf-8")


def entry_page(entry: EntryResponse) -> str:
    """A small standalone page showing one FAQ entry."""
    paragraphs = "".join(f"<p>{_linkify(line)}</p>" for line in entry.answer.split("\n") if line.strip())
    title = escape(entry.question or "Réponse de la FAQ")
    meta = "".join(f"<li><b>{escape(str(k))}</b> : {escape(str(v))}</li>" for k, v in entry.metadata.items())
    return f"""<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="stylesheet" href="/static/style.css"></head>
<body><main class="entry"><p><a href="/">← Poser une question</a></p>
<h1>{title}</h1><article>{paragraphs}</article>
{f"<ul class='meta'>{meta}</ul>" if meta else ""}
<p class="muted">Entrée <code>{escape(entry.id)}</code> · source {escape(entry.source)}</p></main></body></html>"""
