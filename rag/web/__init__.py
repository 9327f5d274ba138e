"""The web page and HTML views of FAQ entries."""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files
from pathlib import Path

from rag.language.text import URL
from rag.models import Entry

PER_PAGE = 50

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
def _template(name: str = "index.html") -> str:
    return files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def privacy_notice(store_questions: bool, retention_days: float) -> str:
    """What the page tells users about what is kept of their questions (GDPR: information of the person)."""
    if not store_questions:
        return "Les questions ne sont pas conservées : seul leur nombre est compté."
    days = f"{retention_days:g}"
    return (
        f"Les questions et les avis sont conservés {days} jours pour améliorer la FAQ, sans les adresses, "
        "numéros et identifiants détectés. N'y écrivez pas de données personnelles."
    )


def admin_page(faq_name: str) -> str:
    """The gap report's page (it asks for the admin token, then calls the admin API)."""
    return _template("admin.html").replace("{faq_name}", escape(faq_name))


# how the Ségur FAQ's facets read (sent to the widget); another FAQ's fields read as their names
FACET_LABELS = {
    "type_offre": "Type d'offre",
    "couloir": "Couloir Ségur",
    "dispositif": "Dispositif Ségur",
    "produit": "Produit ou service",
    "thematique": "Thématique",
    "theme": "Thème",
    "sous_theme": "Sous-thème",
}


def index_page(faq_name: str, privacy: str = "", plain: str = "") -> str:
    """The page: the FAQ's name, the assistant (the widget, inline; ``plain``, the form and the answer rendered
    here, in its place without JavaScript) and what is kept of the questions."""
    page = _template()
    for key, value in {"faq_name": escape(faq_name), "privacy": escape(privacy)}.items():
        page = page.replace("{" + key + "}", value)
    return page.replace("{plain}", plain)  # last: what users wrote is never read as a placeholder


def entries_page(faq_name: str, entries: list[Entry], page: int, pages: int) -> str:
    """A browsable list of the FAQ's entries, one page at a time."""
    items = "".join(
        f'<li><a href="entries/{escape(e.id)}">{escape(e.question or e.answer[:120])}</a></li>' for e in entries
    )
    nav = []
    if page > 1:
        nav.append(f'<a href="entries?page={page - 1}" rel="prev">← Page précédente</a>')
    if page < pages:
        nav.append(f'<a href="entries?page={page + 1}" rel="next">Page suivante →</a>')
    return f"""<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>FAQ {escape(faq_name)} — toutes les entrées</title><link rel="stylesheet" href="static/style.css"></head>
<body><main class="entry"><p><a href="./">← Poser une question</a></p>
<h1>FAQ {escape(faq_name)} : toutes les entrées</h1><p class="muted">Page {page} sur {pages}</p>
<ol start="{(page - 1) * PER_PAGE + 1}">{items}</ol><nav class="pages">{" · ".join(nav)}</nav></main></body></html>"""


def entry_page(entry: Entry) -> str:
    """A small standalone page showing one FAQ entry."""
    paragraphs = "".join(f"<p>{_linkify(line)}</p>" for line in entry.answer.split("\n") if line.strip())
    title = escape(entry.question or "Réponse de la FAQ")
    meta = "".join(f"<li><b>{escape(str(k))}</b> : {escape(str(v))}</li>" for k, v in entry.metadata.items())
    return f"""<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="stylesheet" href="../static/style.css"></head>
<body><main class="entry"><p><a href="../">← Poser une question</a></p>
<h1>{title}</h1><article>{paragraphs}</article>
{f"<ul class='meta'>{meta}</ul>" if meta else ""}
<p class="muted">Entrée <code>{escape(entry.id)}</code> · source {escape(entry.source)}{checked_on(entry.checked_on)}
</p>
</main></body></html>"""


def checked_on(day: str | None) -> str:
    """« · vérifié le 30/11/2026 » for an entry whose web page was checked that day (nothing otherwise)."""
    if not day or len(day) != 10:
        return ""
    return f" · vérifié le {escape(day[8:10])}/{escape(day[5:7])}/{escape(day[:4])}"
