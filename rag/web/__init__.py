"""The web page and HTML views of FAQ entries."""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files
from pathlib import Path

from ..models import Entry
from ..text import URL

STATIC_DIR = Path(__file__).parent / "static"
# the page runs only its own script and talks only to this service; nothing may frame it
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _linkify(text: str) -> str:
    return URL.sub(lambda m: f'<a href="{m.group(0)}" rel="noopener">{m.group(0)}</a>', escape(text))


@cache
def index_page() -> str:
    return files(__package__).joinpath("static", "index.html").read_text(encoding="utf-8")


def entry_page(entry: Entry) -> str:
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
