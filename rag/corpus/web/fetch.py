"""Fetching FAQ pages politely and safely: http(s) only, every request through the egress policy (no private
address unless allowed, :mod:`rag.egress`), robots.txt honoured and a pause between two requests to one host — for
every host a redirect leads to, each hop checked like the first request —, a User-Agent of our own, connect/read/
total deadlines, a size cap, bounded redirects, and conditional requests (``If-None-Match`` / ``If-Modified-Since``)
for pages fetched before."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from rag.egress import EgressPolicy, EgressRefused


@dataclass
class Fetched:
    """A page's answer: ``status`` 200 with its body, 304 (unchanged), or ``error`` saying what went wrong."""

    url: str
    status: int = 0
    body: bytes = b""
    encoding: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    refused: bool = False  # not asked at all: robots.txt, or not a web address

    @property
    def ok(self) -> bool:
        return self.error is None and self.status in (200, 304)


class Fetcher:
    """One client for a sync; ``interval``: seconds between two requests to the same host."""

    def __init__(
        self,
        user_agent: str,
        timeout: float = 20.0,
        max_bytes: int = 5_000_000,
        interval: float = 1.0,
        max_redirects: int = 5,
        policy: EgressPolicy | None = None,
    ) -> None:
        self.user_agent, self.timeout, self.max_bytes, self.interval = user_agent, timeout, max_bytes, interval
        self.max_redirects = max_redirects
        phases = httpx.Timeout(min(timeout, 10.0), connect=min(timeout, 5.0))
        self._client = (policy or EgressPolicy()).client(
            timeout=phases,
            follow_redirects=False,  # followed here, each hop checked like the first request
            headers={"User-Agent": user_agent, "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9"},
        )
        self._robots: dict[str, RobotFileParser | str] = {}
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self.requested: list[str] = []  # every URL asked, robots.txt included, in order

    def close(self) -> None:
        self._client.close()

    def _pause(self, host: str) -> None:
        with self._lock:
            wait = self._last.get(host, 0.0) + self.interval - time.monotonic()
            self._last[host] = time.monotonic() + max(wait, 0.0)
        if wait > 0:
            time.sleep(wait)

    def allowed(self, url: str) -> str | None:
        """None when robots.txt (of ``url``'s own host) lets us fetch ``url``, else why not."""
        parts = urlsplit(url)
        if _not_web(url):
            return _not_web(url)
        root = f"{parts.scheme}://{parts.netloc}"
        if root not in self._robots:
            self._robots[root] = self._read_robots(root)
        robots = self._robots[root]
        if isinstance(robots, str):
            return robots
        return None if robots.can_fetch(self.user_agent, url) else "robots.txt disallows it"

    def _read_robots(self, root: str) -> RobotFileParser | str:
        got = self._get(root + "/robots.txt", {}, robots=False)
        parser = RobotFileParser()
        if got.status == 200:
            parser.parse(got.body.decode("utf-8", "replace").splitlines())
        elif 400 <= got.status < 500:
            parser.parse([])  # no robots.txt: everything is allowed
        else:  # unreachable or failing: nothing is fetched from that host this time (RFC 9309)
            return f"its robots.txt could not be read ({got.error or f'HTTP {got.status}'})"
        return parser

    def fetch(self, url: str, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """The page, asked conditionally when it was fetched before; never raises."""
        refused = self.allowed(url)
        if refused:
            return Fetched(url, error=refused, refused=True)
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return self._get(url, headers)

    def _get(self, url: str, headers: dict[str, str], robots: bool = True) -> Fetched:
        """``url``, following up to ``max_redirects`` redirects, each hop checked: an http(s) address, robots.txt
        (``robots``), the host's pause, the egress policy."""
        deadline, asked = time.monotonic() + self.timeout, url
        for _ in range(self.max_redirects + 1):
            got, location = self._once(url, headers, deadline)
            if location is None:
                got.url = asked  # a page is known by the address its source names
                return got
            target = urljoin(url, location)
            refused = self.allowed(target) if robots else _not_web(target)
            if refused:
                return Fetched(asked, error=f"redirected to {target}, which is not fetched: {refused}", refused=True)
            url = target
        return Fetched(asked, error="too many redirects (a redirect loop?)")

    def _once(self, url: str, headers: dict[str, str], deadline: float) -> tuple[Fetched, str | None]:
        """One request: the page (or its error), and where it redirects to (None when it does not)."""
        self._pause(urlsplit(url).netloc)
        self.requested.append(url)
        try:
            return self._read(url, headers, deadline)
        except EgressRefused as exc:
            return Fetched(url, error=f"refused: {exc}", refused=True), None
        except httpx.TimeoutException:
            return Fetched(url, error=f"no answer in time (RAG_WEB_TIMEOUT {self.timeout:g} s)"), None
        except httpx.HTTPError as exc:
            return Fetched(url, error=f"{type(exc).__name__}: {exc}"), None

    def _read(self, url: str, headers: dict[str, str], deadline: float) -> tuple[Fetched, str | None]:
        with self._client.stream("GET", url, headers=headers) as response:
            if response.is_redirect and response.headers.get("location"):
                return Fetched(url, status=response.status_code), response.headers["location"]
            got = Fetched(
                url,
                status=response.status_code,
                encoding=response.charset_encoding,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
            )
            if response.status_code != 200:
                if response.status_code != 304:
                    got.error = f"HTTP {response.status_code}"
                return got, None
            declared = response.headers.get("content-length") or "0"
            if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
                return Fetched(url, status=200, error=self._too_big()), None
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    return Fetched(url, status=200, error=self._too_big()), None
                if time.monotonic() > deadline:
                    return Fetched(url, error=f"took longer than {self.timeout:g} s (RAG_WEB_TIMEOUT)"), None
                chunks.append(chunk)
            got.body = b"".join(chunks)
            return got, None

    def _too_big(self) -> str:
        return f"larger than {self.max_bytes / 1e6:g} MB (RAG_WEB_MAX_BYTES); skipped"


def _not_web(url: str) -> str | None:
    """Why ``url`` is not fetched at all (None: it is an http(s) address)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"not a web address ({parts.scheme or 'no scheme'}); only http and https are fetched"
    return None
