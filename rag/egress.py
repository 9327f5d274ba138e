"""One way out: every request the service sends (FAQ web pages, the helpdesk's webhook, Chatwoot, the LLM, an
embeddings server) goes through :class:`EgressPolicy`. Each connection — the first request and every redirect hop —
resolves its host and connects only to addresses that are public, unless the host (or ``host:port``) is allowed:
listed in ``RAG_EGRESS_ALLOW``, or the base URL of a server the operator configured (``RAG_LLM_BASE_URL``,
``RAG_EMBEDDINGS_BASE_URL``, ``RAG_CHATWOOT_URL``, ``RAG_HANDOFF_WEBHOOK``). The address checked is the address
connected to: a name that resolves to a public address when checked and to a private one when used cannot slip
through. Proxies from the environment are not used."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class EgressRefused(httpx.ConnectError):
    """A request to an address the service may not reach: to its callers, a connection that could not be made."""


def public(address: Address) -> bool:
    """Whether an address is on the public internet: not private, loopback, link-local, multicast, reserved or
    unspecified (an IPv4 address written as IPv6 is judged as IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _key(host: str, port: int | None = None) -> str:
    host = host.strip().lower().strip("[]")
    return f"{host}:{port}" if port else host


def host_port(url: str) -> str | None:
    """``host:port`` of a URL (its scheme's port when it names none); None when it is not http(s)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return _key(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


class EgressPolicy:
    """Which hosts the service may reach beyond the public internet (see the module's text)."""

    def __init__(self, allow: Iterable[str] = (), trusted_urls: Iterable[str] = ()) -> None:
        """``allow``: ``host`` or ``host:port`` entries; ``trusted_urls``: base URLs configured by the operator."""
        self.allowed = {_entry(entry) for entry in allow if entry.strip()}
        self.allowed |= {hp for url in trusted_urls if url and (hp := host_port(url))}

    @classmethod
    def from_settings(cls, settings: Any) -> EgressPolicy:
        urls = (
            settings.llm.base_url,
            settings.embeddings.base_url,
            settings.channels.chatwoot_url,
            settings.channels.handoff_webhook,
        )
        return cls(settings.egress.allow, [u for u in urls if u])

    def permits(self, host: str, port: int) -> bool:
        """Whether ``host:port`` is allowed to be private (listed, or a configured server's)."""
        return _key(host) in self.allowed or _key(host, port) in self.allowed

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host:port``; :class:`EgressRefused` when one of them is not public and
        the host is not allowed (a name with one private address among public ones is refused whole)."""
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        resolved = list(dict.fromkeys(info[4][0] for info in found))
        if not self.permits(host, port):
            private = [a for a in resolved if not public(ipaddress.ip_address(a.split("%")[0]))]
            if private:
                raise EgressRefused(
                    f"{host}:{port} resolves to a private or reserved address ({private[0]}); the service does not "
                    "reach inside its network unless the host is listed in RAG_EGRESS_ALLOW"
                )
        return resolved

    def transport(self, **options: Any) -> httpx.HTTPTransport:
        """An httpx transport whose every connection goes through this policy."""
        return _GuardedTransport(self, **options)

    def client(self, **options: Any) -> httpx.Client:
        """An httpx client whose every request (and redirect hop) goes through this policy."""
        limits = options.pop("limits", httpx.Limits())
        return httpx.Client(transport=self.transport(limits=limits), trust_env=False, **options)


def _entry(entry: str) -> str:
    """An allow-list entry as a key: ``host`` or ``host:port`` (an IPv6 address in brackets to give a port)."""
    head, sep, tail = entry.strip().rpartition(":")
    if sep and tail.isascii() and tail.isdigit() and head and (":" not in head or head.endswith("]")):
        return _key(head, int(tail))
    return _key(entry)


class _Backend(httpcore.NetworkBackend):
    """Connects only to the addresses the policy gives for a host."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy, self.inner = policy, httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self.policy.addresses(host, port):
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"no address for {host}")

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise EgressRefused("the service does not connect to local sockets")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, policy: EgressPolicy, limits: httpx.Limits = httpx.Limits(), **options: Any) -> None:
        super().__init__(limits=limits, trust_env=False, **options)
        self._pool = httpcore.ConnectionPool(
            ssl_context=self._pool._ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_Backend(policy),
        )
