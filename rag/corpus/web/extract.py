"""A FAQ web page read into question/answer pairs, by the first structure that matches: schema.org ``FAQPage``
(JSON-LD, then microdata), the French State design system's accordions (``fr-accordion``), ``<details>`` /
``<summary>``, definition lists, and headings followed by their content. Answers become clean text: one line
per paragraph, ``- `` before list items, links kept as ``text (URL)``; ``javascript:`` and other non-web links
are dropped and said."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from bs4 import BeautifulSoup, Tag
from bs4.element import NavigableString
from lxml import etree

BLOCKS = {"p", "div", "section", "article", "ul", "ol", "li", "dl", "dt", "dd", "table", "tr", "br", "blockquote"}
BLOCKS |= {"h1", "h2", "h3", "h4", "h5", "h6", "pre", "details", "summary", "figure", "header", "footer"}
DROPPED = ["script", "style", "noscript", "template", "svg", "iframe", "nav"]
MIN_ANSWER = 2  # characters: shorter is no answer


@dataclass
class Pair:
    """One question and its answer as found on a page, with the anchor that points at the question."""

    question: str
    answer: str
    anchor: str
    links: list[str] = field(default_factory=list)


@dataclass
class Page:
    """What a page gave: its pairs, the structure they came from, and what was dropped on the way."""

    pairs: list[Pair]
    structure: str | None
    canonical: str | None = None
    notes: list[str] = field(default_factory=list)


def slug(text: str) -> str:
    """A stable anchor from a question's words (« Qui signe la VA ? » → ``qui-signe-la-va``)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:80] or "question"


def _squash(text: str) -> str:
    return re.sub(r"[ \t\u00a0]+", " ", text).strip()


class _Text:
    """Clean text of an element (see the module's text), with the links found in it."""

    def __init__(self, base: str, notes: list[str]) -> None:
        self.base, self.notes = base, notes
        self.links: list[str] = []

    def of(self, node: Tag | str) -> str:
        if isinstance(node, str):
            node = BeautifulSoup(node, "lxml")
        parts: list[str] = []
        self._walk(node, parts)
        lines = [_squash(line) for line in "".join(parts).split("\n")]
        return "\n".join(line for line in lines if line)

    def _walk(self, node: Tag, parts: list[str]) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                if type(child) is NavigableString:  # not a comment, CDATA or doctype
                    parts.append(str(child).replace("\n", " "))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name
            if name == "a":
                self._link(child, parts)
                continue
            if name in BLOCKS:
                parts.append("\n")
            if name == "li":
                parts.append("- ")
            self._walk(child, parts)
            if name in BLOCKS:
                parts.append("\n")

    def _link(self, anchor: Tag, parts: list[str]) -> None:
        label = _squash(anchor.get_text(" "))
        href = str(anchor.get("href") or "").strip()
        scheme = href.split(":", 1)[0].lower() if ":" in href else ""
        if href and scheme and scheme not in {"http", "https", "mailto", "tel"}:
            self.notes.append(f"a {scheme}: link in an answer was dropped (« {label[:40]} »)")
            parts.append(label)
            return
        if not href or href.startswith("#") or scheme in {"mailto", "tel"}:
            parts.append(label)
            return
        url = urljoin(self.base, href)
        self.links.append(url)
        parts.append(label if label == url else f"{label} ({url})" if label else url)


def _pair(question: str, answer: Tag | str, anchor: str | None, text: _Text) -> Pair | None:
    question = _squash(question.replace("\n", " "))
    text.links = []
    body = text.of(answer)
    if not question or len(body) < MIN_ANSWER:
        return None
    return Pair(question, body, anchor or slug(question), list(dict.fromkeys(text.links)))


def _types(item: dict[str, Any]) -> set[str]:
    kind = item.get("@type", [])
    return {str(k).rsplit("/", 1)[-1] for k in (kind if isinstance(kind, list) else [kind])}


def _json_ld_items(soup: BeautifulSoup, notes: list[str]) -> Iterator[dict[str, Any]]:
    for script in soup.find_all("script", type=re.compile(r"application/ld\+json", re.I)):
        try:
            data = json.loads(script.string or "")
        except ValueError:
            notes.append("a JSON-LD block is not valid JSON; it was skipped")
            continue
        stack = data if isinstance(data, list) else [data]
        while stack:
            item = stack.pop(0)
            if isinstance(item, dict):
                yield item
                stack.extend(v for k, v in item.items() if k == "@graph" and isinstance(v, list))


def _ids(soup: BeautifulSoup) -> dict[str, str]:
    """The id of the element that holds each question's text on the page, for anchors that point at it."""
    found: dict[str, str] = {}
    for node in soup.find_all(id=True):
        label = _squash(node.get_text(" "))
        if 3 < len(label) < 300:
            found.setdefault(label, str(node["id"]))
        parent = node.find_parent(id=True)
        if parent is not None and label:
            found.setdefault(label, str(parent["id"]))
    return found


def _anchor_from(url: Any) -> str | None:
    fragment = urldefrag(str(url))[1] if url else ""
    return fragment or None


def from_json_ld(soup: BeautifulSoup, text: _Text) -> list[Pair]:
    ids = None
    pairs = []
    for item in _json_ld_items(soup, text.notes):
        if "FAQPage" not in _types(item):
            continue
        entities = item.get("mainEntity", [])
        for question in entities if isinstance(entities, list) else [entities]:
            if not isinstance(question, dict):
                continue
            accepted = question.get("acceptedAnswer") or question.get("suggestedAnswer") or {}
            accepted = accepted[0] if isinstance(accepted, list) and accepted else accepted
            name = str(question.get("name") or "")
            body = str(accepted.get("text") or "") if isinstance(accepted, dict) else ""
            anchor = _anchor_from(question.get("url") or question.get("@id"))
            if anchor is None:
                ids = _ids(soup) if ids is None else ids
                anchor = ids.get(_squash(name))
            found = _pair(name, body, anchor, text)
            if found:
                pairs.append(found)
    return pairs


def _prop(node: Tag, name: str) -> Tag | None:
    return node.find(attrs={"itemprop": re.compile(rf"(^|\s){name}(\s|$)")})


def from_microdata(soup: BeautifulSoup, text: _Text) -> list[Pair]:
    pairs = []
    for page in soup.find_all(attrs={"itemtype": re.compile(r"schema\.org/FAQPage", re.I)}):
        for question in page.find_all(attrs={"itemtype": re.compile(r"schema\.org/Question", re.I)}):
            name, answer = _prop(question, "name"), _prop(question, "acceptedAnswer")
            body = _prop(answer, "text") if answer is not None else None
            if name is None or body is None:
                continue
            anchor = question.get("id") or name.get("id")
            found = _pair(name.get_text(" "), body, str(anchor) if anchor else None, text)
            if found:
                pairs.append(found)
    return pairs


def from_dsfr(soup: BeautifulSoup, text: _Text) -> list[Pair]:
    pairs = []
    for section in soup.select(".fr-accordion"):
        button = section.select_one(".fr-accordion__btn") or section.select_one(".fr-accordion__title")
        target = button.get("aria-controls") if button is not None else None
        body = section.find(id=target) if target else section.select_one(".fr-collapse")
        if button is None or body is None:
            continue
        anchor = section.get("id") or target
        found = _pair(button.get_text(" "), body, str(anchor) if anchor else None, text)
        if found:
            pairs.append(found)
    return pairs


def from_details(soup: BeautifulSoup, text: _Text) -> list[Pair]:
    pairs = []
    for details in soup.find_all("details"):
        summary = details.find("summary")
        if summary is None:
            continue
        question = summary.get_text(" ")
        summary.extract()
        anchor = details.get("id") or summary.get("id")
        found = _pair(question, details, str(anchor) if anchor else None, text)
        if found:
            pairs.append(found)
    return pairs


def from_definitions(soup: BeautifulSoup, text: _Text) -> list[Pair]:
    pairs = []
    for term in soup.select("dl > dt"):
        answers = []
        for sibling in term.find_next_siblings():
            if sibling.name != "dd":
                break
            answers.append(str(sibling))
        anchor = term.get("id")
        found = _pair(term.get_text(" "), "".join(answers), str(anchor) if anchor else None, text)
        if found:
            pairs.append(found)
    return pairs


def from_headings(soup: BeautifulSoup, text: _Text) -> list[Pair]:
    """Headings and what follows each until the next heading of its level or above; when some headings end
    with a question mark, those only."""
    root = soup.find("main") or soup.body or soup
    headings = root.find_all(re.compile(r"^h[2-4]$"))
    asked = [h for h in headings if h.get_text(" ").strip().endswith("?")]
    pairs = []
    for heading in asked or headings:
        level = int(heading.name[1])
        content = []
        for sibling in heading.find_next_siblings():
            if re.fullmatch(r"h[1-6]", sibling.name or "") and int(sibling.name[1]) <= level:
                break
            if asked and (sibling.name or "").startswith("h") and sibling.get_text(" ").strip().endswith("?"):
                break
            content.append(str(sibling))
        anchor = heading.get("id") or (heading.find_parent("section") or {}).get("id")
        found = _pair(heading.get_text(" "), "".join(content), str(anchor) if anchor else None, text)
        if found:
            pairs.append(found)
    return pairs


STRUCTURES: list[tuple[str, Callable[[BeautifulSoup, _Text], list[Pair]]]] = [
    ("schema.org FAQPage (JSON-LD)", from_json_ld),
    ("schema.org FAQPage (microdata)", from_microdata),
    ("DSFR accordions", from_dsfr),
    ("details/summary", from_details),
    ("definition list", from_definitions),
    ("headings", from_headings),
]


def _canonical(soup: BeautifulSoup, url: str, notes: list[str], anywhere: bool) -> str | None:
    """The page's canonical address when it names one on the page's own site (scheme and host), or anywhere for a
    page the operator saved as a file; a fetched page's canonical on another site is ignored and said — it would move
    the entries' links and ids there."""
    found = soup.find("link", rel="canonical")
    href = str(found.get("href") or "").strip() if found is not None else ""
    if not href:
        return None
    target, own = urlsplit(urljoin(url, href)), urlsplit(url)
    if not anywhere and (target.scheme, target.netloc) != (own.scheme, own.netloc):
        notes.append(f"a canonical link to another site ({target.scheme}://{target.netloc}) was ignored")
        return None
    return target.geturl()


def read_page(html: bytes | str, url: str, encoding: str | None = None, saved: bool = False) -> Page:
    """The question/answer pairs of a page (``url``: where links are resolved from); every anchor is unique.
    ``saved``: a page the operator saved as a file, whose canonical address is believed wherever it points."""
    soup = BeautifulSoup(html, "lxml", from_encoding=encoding if isinstance(html, bytes) else None)
    notes = _malformed(html)
    if soup.original_encoding and soup.original_encoding.lower() not in {"utf-8", "ascii", "utf8"}:
        notes.append(f"read as {soup.original_encoding} (the page's encoding)")
    canonical = _canonical(soup, url, notes, anywhere=saved)
    base = canonical or url
    for structure, reader in STRUCTURES[:1]:  # JSON-LD lives in the scripts the cleaning below removes
        pairs = reader(soup, _Text(base, notes))
        if pairs:
            return Page(_unique(pairs), structure, canonical=base if canonical else None, notes=notes)
    for selector in DROPPED:
        for node in soup.select(selector):
            node.decompose()
    for structure, reader in STRUCTURES[1:]:
        pairs = reader(soup, _Text(base, notes))
        if pairs:
            return Page(_unique(pairs), structure, canonical=base if canonical else None, notes=notes)
    return Page([], None, canonical=base if canonical else None, notes=notes)


def _malformed(html: bytes | str) -> list[str]:
    """One line when the markup is broken (tags closed out of order, stray end tags): it is read as browsers
    read it, and said."""
    parser = etree.HTMLParser(recover=True)
    etree.fromstring(html.encode() if isinstance(html, str) else html, parser)
    errors = [e for e in parser.error_log if e.type_name != "HTML_UNKNOWN_TAG"]
    if not errors:
        return []
    first = errors[0]
    return [f"malformed HTML ({len(errors)} problems, first line {first.line}: {first.message}); read as browsers do"]


def _unique(pairs: list[Pair]) -> list[Pair]:
    seen: dict[str, int] = {}
    for pair in pairs:
        count = seen.get(pair.anchor, 0)
        seen[pair.anchor] = count + 1
        if count:
            pair.anchor = f"{pair.anchor}-{count + 1}"
    return pairs
