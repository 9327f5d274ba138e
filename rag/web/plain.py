"""The page without JavaScript: a plain form that posts the question, the answer rendered by the server (its
citations as links, the nearest entries when unsure, the helpdesk when the FAQ does not answer) and the vote as two
forms. When JavaScript runs, the assistant takes the form's place (``data-plain``)."""

from __future__ import annotations

import re
from html import escape

from rag.language.text import URL
from rag.models import Answer

_MARKER = re.compile(r"\[(\d{1,2})\]")
MESSAGES = {
    "merci": "Merci pour votre avis : il aide à améliorer la FAQ.",
    "empty": "Écrivez une question avant d'envoyer.",
    "unknown": "Cette réponse n'est plus connue : posez la question à nouveau.",
}


def plain_form(question: str = "", notice: str = "") -> str:
    """The question form (``POST /``), with a notice (a thank-you, an error) above it."""
    said = f'<p class="status" role="status">{escape(notice)}</p>' if notice else ""
    return (
        f'{said}<form method="post" action="./" class="plain-form">'
        '<label for="plain-q">Votre question</label>'
        f'<textarea id="plain-q" name="q" rows="3" maxlength="2000" required>{escape(question)}</textarea>'
        '<button type="submit">Envoyer la question</button></form>'
    )


def _text(answer: Answer) -> str:
    """The answer's paragraphs: links kept, each ``[n]`` a link to its source below."""
    cited = {c.n for c in answer.citations}

    def paragraph(line: str) -> str:
        html = URL.sub(lambda m: f'<a href="{m.group(0)}" rel="noopener">{m.group(0)}</a>', escape(line))
        return _MARKER.sub(
            lambda m: (
                f'<a class="cite" href="#source-{m.group(1)}" aria-label="source {m.group(1)}">[{m.group(1)}]</a>'
                if int(m.group(1)) in cited
                else m.group(0)
            ),
            html,
        )

    lines = [line for line in answer.answer.split("\n") if line.strip()]
    if answer.note:
        lines.append(answer.note)
    return "".join(f"<p>{paragraph(line)}</p>" for line in lines)


def _sources(answer: Answer) -> str:
    if answer.citations:
        items = "".join(
            f'<li id="source-{c.n}" value="{c.n}"><a href="{escape(c.url or "")}" rel="noopener">'
            f"{escape(c.question or c.url or c.id)}</a></li>"
            for c in answer.citations
        )
        heading = "Sources" if answer.outcome == "answered" else "Les entrées les plus proches"
        return f'<h3>{heading}</h3><ol class="sources">{items}</ol>'
    if answer.outcome == "suggested" and answer.passages:
        items = "".join(
            f'<li><a href="{escape(p.url or "entries/" + p.id)}" rel="noopener">{escape(p.question or p.id)}</a></li>'
            for p in answer.passages[:5]
        )
        return f'<h3>Les entrées les plus proches</h3><ul class="passages">{items}</ul>'
    return ""


def _handoff(answer: Answer) -> str:
    if answer.handoff and answer.handoff.support_url:
        url = escape(answer.handoff.support_url)
        return f'<p>Une personne peut vous répondre : <a href="{url}" rel="noopener">contacter l\'assistance</a>.</p>'
    return ""


def _vote(answer_id: str) -> str:
    buttons = "".join(
        f'<form method="post" action="page/vote" class="vote"><input type="hidden" name="answer_id" '
        f'value="{escape(answer_id)}"><input type="hidden" name="helpful" value="{value}">'
        f'<button type="submit">{label}</button></form>'
        for value, label in (("oui", "Oui"), ("non", "Non"))
    )
    title = '<p id="vote-title">Cette réponse vous a-t-elle été utile ?</p>'
    return f'<div class="choices" role="group" aria-labelledby="vote-title">{title}{buttons}</div>'


def plain_answer(answer: Answer, answer_id: str) -> str:
    """The answer to a question posted by the form, as a section of the page."""
    heading = {
        "answered": "Réponse",
        "suggested": "La FAQ n'a peut-être pas la réponse exacte",
        "declined": "La FAQ ne répond pas à cette question",
    }[answer.outcome]
    return (
        f'<section class="plain-answer" aria-labelledby="answer-title"><h2 id="answer-title" tabindex="-1">'
        f'{escape(heading)}</h2><p class="muted">Votre question : {escape(answer.query)}</p>'
        f'<div class="answer">{_text(answer)}</div>{_sources(answer)}{_handoff(answer)}{_vote(answer_id)}'
        "</section>"
    )
