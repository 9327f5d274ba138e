"""Tell French from English questions, and the fixed messages in each."""

from __future__ import annotations

import re

_EN = {
    "the",
    "what",
    "how",
    "is",
    "are",
    "do",
    "does",
    "can",
    "which",
    "when",
    "where",
    "who",
    "why",
    "should",
    "my",
    "i",
    "to",
    "of",
    "for",
    "with",
    "and",
    "or",
    "a",
    "an",
    "it",
    "in",
    "be",
    "must",
}
_FR = {
    "le",
    "la",
    "les",
    "un",
    "une",
    "des",
    "du",
    "de",
    "est",
    "que",
    "qui",
    "quoi",
    "comment",
    "pour",
    "avec",
    "et",
    "ou",
    "je",
    "nous",
    "vous",
    "mon",
    "ma",
    "mes",
    "dois",
    "peut",
    "quel",
    "quelle",
    "quels",
    "quelles",
    "en",
    "au",
    "aux",
    "sur",
    "ce",
    "cette",
    "il",
    "on",
    "faut",
}

MESSAGES = {
    "fr": {
        "abstain": "Je n'ai pas trouvé de réponse à cette question dans la FAQ {faq}. "
        "Reformulez-la, ou contactez le support si elle porte sur un point que la FAQ ne traite pas.",
        "smalltalk": "Bonjour ! Je réponds aux questions sur la FAQ {faq}, avec un lien vers chaque entrée "
        "citée. Posez votre question en une phrase.",
        "sources": "Sources",
    },
    "en": {
        "abstain": "I could not find an answer to this question in the {faq} FAQ. "
        "Try rephrasing it, or contact support if the FAQ does not cover this point.",
        "smalltalk": "Hello! I answer questions about the {faq} FAQ, with a link to each entry I cite. "
        "Ask your question in a sentence.",
        "sources": "Sources",
        "quoted_in": "The FAQ is written in {language}: the answer quotes it as it is.",
    },
}
MESSAGES["fr"]["quoted_in"] = "La FAQ est rédigée en {language} : la réponse la cite telle quelle."
MESSAGES["fr"]["support"] = "Support : {url}"
MESSAGES["fr"]["person"] = "Je vous mets en relation avec un conseiller."
MESSAGES["en"]["person"] = "I will put you in touch with a person."
MESSAGES["fr"]["person_form"] = "Transmettez cette conversation au support : un conseiller reprendra votre demande."
MESSAGES["en"]["person_form"] = "Send this conversation to the helpdesk: a person will take your request over."
MESSAGES["en"]["support"] = "Support: {url}"
MESSAGES["fr"]["suggest"] = (
    "Je ne suis pas certain que la FAQ réponde à cette question. Ces entrées pourraient vous aider :"
)
MESSAGES["en"]["suggest"] = "I am not sure the FAQ answers this question. These entries might help:"
# a language's name, as written in another: NAMES[reader][language]
NAMES = {"fr": {"fr": "français", "en": "anglais"}, "en": {"fr": "French", "en": "English"}}


def detect(text: str, default: str = "fr") -> str:
    """``"en"`` when the text reads as English, else ``default`` (French)."""
    words = re.findall(r"[a-zà-ÿ']+", text.lower())
    en = sum(w in _EN for w in words)
    fr = sum(w in _FR for w in words) + 2 * bool(re.search(r"[éèêàùçôî]", text.lower()))
    return "en" if en > fr else default


def quoted_in(reader: str, faq: str) -> str | None:
    """A note for a reader whose language is not the FAQ's, saying the answer quotes the FAQ as it is."""
    if reader == faq:
        return None
    names = NAMES.get(reader, NAMES["fr"])
    return message("quoted_in", reader, language=names.get(faq, faq))


def message(key: str, lang: str, **values: str) -> str:
    text = MESSAGES.get(lang, MESSAGES["fr"])[key]
    return text.format(**values) if values else text
