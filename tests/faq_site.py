"""A small FAQ website for the web-source tests, served on loopback: one page per structure the reader knows,
written as public FAQ pages write them — schema.org ``FAQPage`` in JSON-LD (as service-public.fr and many CMS
emit it) and in microdata, the DSFR's ``fr-accordions-group`` of gouv.fr sites, ``<details>``, a definition
list, headings — plus a sitemap, a robots.txt, pages that fail in every way a sync meets, ETags and
Last-Modified answered with 304, and a log of every request."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

LAST_MODIFIED = "Mon, 30 Nov 2026 08:00:00 GMT"


def _page(title: str, body: str, head: str = "") -> str:
    return f"""<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>{title}</title>{head}</head>
<body><header><nav><a href="/">Accueil</a> <a href="/contact">Contact</a></nav></header>
<main id="contenu"><h1>{title}</h1>{body}</main><footer><p>Mentions légales</p></footer></body></html>"""


JSON_LD = {
    "@context": "https://schema.org",
    "@type": "FAQPage",
    "mainEntity": [
        {
            "@type": "Question",
            "name": "Qui peut demander le forfait de financement ?",
            "acceptedAnswer": {
                "@type": "Answer",
                "text": "<p>Les éditeurs dont la solution est référencée.</p><ul><li>en ville</li>"
                "<li>à l'hôpital</li></ul>",
            },
        },
        {
            "@type": "Question",
            "name": "Où déposer la demande ?",
            "acceptedAnswer": {
                "@type": "Answer",
                "text": 'Sur la plateforme <a href="https://portail.example.fr/depot">de dépôt</a> de l\'ASP.',
            },
        },
    ],
}

PAGES: dict[str, str] = {
    "/faq/financement.html": _page(
        "Financement",
        '<div class="accordion"><h2 id="forfait">Qui peut demander le forfait de financement ?</h2>'
        "<p>Les éditeurs dont la solution est référencée.</p>"
        '<h2 id="depot">Où déposer la demande ?</h2><p>Sur la plateforme de dépôt.</p></div>',
        head=f'<script type="application/ld+json">{json.dumps(JSON_LD, ensure_ascii=False)}</script>',
    ),
    "/faq/microdata.html": _page(
        "Référencement",
        '<div itemscope itemtype="https://schema.org/FAQPage">'
        '<div id="delai" itemscope itemprop="mainEntity" itemtype="https://schema.org/Question">'
        '<h2 itemprop="name">Quel est le délai de référencement ?</h2>'
        '<div itemscope itemprop="acceptedAnswer" itemtype="https://schema.org/Answer">'
        '<div itemprop="text"><p>Le référencement est instruit en deux mois.</p></div></div></div>'
        '<div id="refus" itemscope itemprop="mainEntity" itemtype="https://schema.org/Question">'
        '<h2 itemprop="name">Que faire après un refus ?</h2>'
        '<div itemscope itemprop="acceptedAnswer" itemtype="https://schema.org/Answer">'
        '<div itemprop="text"><p>Déposez une nouvelle demande corrigée.</p></div></div></div></div>',
    ),
    "/faq/dsfr.html": _page(
        "Questions fréquentes",
        '<div class="fr-accordions-group">'
        '<section class="fr-accordion"><h3 class="fr-accordion__title">'
        '<button class="fr-accordion__btn" aria-expanded="false" aria-controls="accordion-va">'
        "Qui signe la vérification d'aptitude ?</button></h3>"
        '<div class="fr-collapse" id="accordion-va"><p>Le client signe la VA après l\'installation.</p>'
        '<p>Voir <a href="javascript:alert(1)">ce lien</a> et <a href="/guide.pdf">le guide</a>.</p></div>'
        "</section>"
        '<section class="fr-accordion"><h3 class="fr-accordion__title">'
        '<button class="fr-accordion__btn" aria-expanded="false" aria-controls="accordion-solde">'
        "Quand le solde est-il versé ?</button></h3>"
        '<div class="fr-collapse" id="accordion-solde"><p>Le solde est versé après la VA signée.</p></div>'
        "</section></div>",
    ),
    "/faq/details.html": _page(
        "Messagerie",
        '<details id="mss"><summary>Faut-il une messagerie sécurisée ?</summary><p>Oui, MSSanté est requise.</p>'
        "</details><details><summary>Comment tester l'envoi ?</summary><p>Envoyez un message de test.</p></details>",
    ),
    "/faq/glossaire.html": _page(
        "Glossaire",
        '<dl><dt id="dmp">Qu\'est-ce que le DMP ?</dt><dd>Le dossier médical partagé.</dd>'
        "<dt>Qu'est-ce que l'INS ?</dt><dd>L'identité nationale de santé.</dd><dd>Elle est qualifiée.</dd></dl>",
    ),
    "/faq/titres.html": _page(
        "Couloirs",
        '<section id="biologie"><h2>Le couloir biologie est-il ouvert ?</h2><p>Oui, depuis 2023.</p>'
        "<ul><li>laboratoires</li><li>plateaux</li></ul></section>"
        '<h2 id="radiologie">Et la radiologie ?</h2><p>Le couloir imagerie est ouvert aussi.</p>',
    ),
    "/about.html": _page("À propos", "<p>Ce site présente le programme.</p>"),
    "/private/interne.html": _page("Interne", "<details><summary>Secret ?</summary><p>Oui.</p></details>"),
    "/faq/cassee.html": "<html><body><main><details><summary>Page cassée ?</summary>"
    "<p>Oui, mais <b><i>lisible</b></i>.</details></span>"
    "<div><span>non fermé",
}

EXPECTED = {  # question -> the path#anchor its entry points at
    "Qui peut demander le forfait de financement ?": "/faq/financement.html#forfait",
    "Où déposer la demande ?": "/faq/financement.html#depot",
    "Quel est le délai de référencement ?": "/faq/microdata.html#delai",
    "Que faire après un refus ?": "/faq/microdata.html#refus",
    "Qui signe la vérification d'aptitude ?": "/faq/dsfr.html#accordion-va",
    "Quand le solde est-il versé ?": "/faq/dsfr.html#accordion-solde",
    "Faut-il une messagerie sécurisée ?": "/faq/details.html#mss",
    "Comment tester l'envoi ?": "/faq/details.html#comment-tester-l-envoi",
    "Qu'est-ce que le DMP ?": "/faq/glossaire.html#dmp",
    "Qu'est-ce que l'INS ?": "/faq/glossaire.html#qu-est-ce-que-l-ins",
    "Le couloir biologie est-il ouvert ?": "/faq/titres.html#biologie",
    "Et la radiologie ?": "/faq/titres.html#radiologie",
}
SITEMAP_PATHS = [*(p for p in PAGES if p.startswith("/faq/") and p != "/faq/cassee.html"), "/private/interne.html"]


@dataclass
class FaqSite:
    """The website; change ``pages`` to edit it, ``status`` to make a page fail, ``slow`` to make it hang."""

    pages: dict[str, str] = field(default_factory=lambda: dict(PAGES))
    status: dict[str, int] = field(default_factory=dict)
    slow: set[str] = field(default_factory=set)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> where it redirects (any address)
    requests: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    base: str = ""

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/robots.txt", self.robots),
                Route("/sitemap.xml", self.sitemap),
                Route("/loop", self.loop),
                Route("/latin1.html", self.latin1),
                Route("/huge.html", self.huge),
                Route("/{path:path}", self.page),
            ]
        )

    def asked(self, path: str) -> list[dict[str, str]]:
        """The headers of every request for ``path``."""
        return [headers for p, headers, _ in self.requests if p == path]

    def times(self, path: str) -> list[float]:
        """When each request for ``path`` arrived (monotonic seconds)."""
        return [at for p, _, at in self.requests if p == path]

    def _log(self, request: Request) -> None:
        self.requests.append((request.url.path, {k.lower(): v for k, v in request.headers.items()}, time.monotonic()))

    async def robots(self, request: Request) -> Response:
        self._log(request)
        return Response("User-agent: *\nDisallow: /private/\n", media_type="text/plain")

    async def sitemap(self, request: Request) -> Response:
        self._log(request)
        urls = "".join(f"<url><loc>{self.base}{p}</loc></url>" for p in [*SITEMAP_PATHS, "/about.html"])
        urls += "<url><loc>http://169.254.169.254/latest/meta-data/</loc></url>"  # another host: never fetched
        namespace = "http://www.sitemaps.org/schemas/sitemap/0.9"
        body = f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="{namespace}">{urls}</urlset>'
        return Response(body, media_type="application/xml")

    async def loop(self, request: Request) -> Response:
        self._log(request)
        return Response(status_code=302, headers={"Location": "/loop"})

    async def latin1(self, request: Request) -> Response:
        self._log(request)
        body = _page(
            "Écarts",
            "<details><summary>Où trouver l'échéancier ?</summary><p>Dans l'espace éditeur, "
            "rubrique « échéances ».</p></details>",
        )
        return Response(
            body.replace('charset="utf-8"', 'charset="iso-8859-1"').encode("latin-1"),
            media_type="text/html; charset=iso-8859-1",
        )

    async def huge(self, request: Request) -> StreamingResponse:
        self._log(request)

        async def chunks():
            yield b"<html><body><details><summary>Grande page ?</summary><p>"
            for _ in range(50):
                yield b"x" * 1_000_000

        return StreamingResponse(chunks(), media_type="text/html")

    async def page(self, request: Request) -> Response:
        self._log(request)
        path = request.url.path
        if path in self.redirects:
            return Response(status_code=302, headers={"Location": self.redirects[path]})
        if path in self.slow:
            await asyncio.sleep(5)
        if path in self.status:
            return Response("indisponible", status_code=self.status[path])
        if path not in self.pages:
            return Response("introuvable", status_code=404)
        body = self.pages[path].encode()
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(
            body, media_type="text/html; charset=utf-8", headers={"ETag": etag, "Last-Modified": LAST_MODIFIED}
        )
