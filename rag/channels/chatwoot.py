"""A Chatwoot agent bot: Chatwoot posts its webhook events to ``POST /integrations/chatwoot``; each incoming
message of a conversation the bot holds (``pending``) is answered through Chatwoot's API with citations. On a
decline or a request for a person, the bot leaves a private note for the agents (the question, the entries it
would cite, the confidence, why), tells the user, and opens the conversation to them. It never replies to a
conversation that is ``open`` or ``resolved``, nor once a human agent has written in it (both read from
Chatwoot itself before every reply, so every replica agrees).

Deliveries are checked (Chatwoot's signature, ``X-Chatwoot-Signature: sha256=HMAC(secret, "<timestamp>.<body>")``,
or the ``?secret=`` of the webhook URL for versions that do not sign), acknowledged at once and answered in the
background; one delivered twice is answered once. A Chatwoot API that fails is tried again a bounded number of
times; an answer that cannot be posted becomes a handoff.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from rag.channels.respond import Responder
from rag.config import Settings
from rag.egress import EgressPolicy
from rag.errors import StoreUnavailable
from rag.jobs import Lease, LeaseStore
from rag.language.detect import detect
from rag.models import Answer, Question
from rag.query.service import listen_address

log = logging.getLogger("rag.chatwoot")
SKEW = 300  # seconds a signed delivery's timestamp may differ from this machine's clock
REMEMBERED = 10_000  # deliveries remembered to answer each once
DELIVERY_LEASE = 60.0  # seconds a delivery is claimed at a time while it is being answered
DELIVERED = 86_400.0  # seconds an answered delivery stays claimed: a redelivery within a day is not answered
OUTGOING = 1  # Chatwoot's message_type of an agent's (or a bot's) message, as its API lists them
HANDED_OFF = {
    "fr": "Je transmets votre question à un conseiller, qui vous répondra ici.",
    "en": "I am passing your question to a member of our team, who will answer you here.",
}


class ChatwootError(Exception):
    """Chatwoot's API did not do what was asked, after the retries."""


class ChatwootClient:
    """The calls the bot makes, each bounded by ``timeout`` and tried ``retries`` more times on 429, 5xx and lost
    connections, with a doubling wait."""

    def __init__(
        self, base_url: str, token: str, timeout: float = 5.0, retries: int = 2, policy: EgressPolicy | None = None
    ) -> None:
        self.base = base_url.rstrip("/")
        self.retries = retries
        policy = policy or EgressPolicy(trusted_urls=[base_url])
        self._client = policy.client(timeout=timeout, headers={"api_access_token": token})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        problem = ""
        for attempt in range(self.retries + 1):
            try:
                response = self._client.request(method, f"{self.base}{path}", json=body)
                if response.status_code < 400:
                    return response.json() if response.content else {}
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break
            except (httpx.HTTPError, ValueError) as exc:
                problem = type(exc).__name__
            if attempt < self.retries:
                time.sleep(0.25 * 2**attempt)
        raise ChatwootError(f"{method} {path}: {problem}")

    def _conversation(self, account: int, conversation: int) -> str:
        return f"/api/v1/accounts/{account}/conversations/{conversation}"

    def status(self, account: int, conversation: int) -> str:
        return str(self._call("GET", self._conversation(account, conversation)).get("status", ""))

    def messages(self, account: int, conversation: int) -> list[dict[str, Any]]:
        return list(self._call("GET", self._conversation(account, conversation) + "/messages").get("payload", []))

    def post(self, account: int, conversation: int, content: str, private: bool = False) -> None:
        body = {"content": content, "message_type": "outgoing", "private": private}
        self._call("POST", self._conversation(account, conversation) + "/messages", body)

    def open(self, account: int, conversation: int) -> None:
        self._call("POST", self._conversation(account, conversation) + "/toggle_status", {"status": "open"})

    def close(self) -> None:
        self._client.close()


def signed(secret: str, timestamp: str, body: bytes) -> str:
    """Chatwoot's signature of a delivery."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def authentic(
    secret: str, body: bytes, headers: dict[str, str], query: dict[str, str], now: float | None = None
) -> bool:
    """Whether a delivery comes from Chatwoot: its signature (fresh), else the secret of the webhook's URL."""
    signature, timestamp = headers.get("x-chatwoot-signature"), headers.get("x-chatwoot-timestamp", "")
    if signature:
        fresh = _digits(timestamp) and abs((now or time.time()) - int(timestamp)) <= SKEW
        return fresh and same(signature, signed(secret, timestamp, body))
    return same(query.get("secret", ""), secret)


def _digits(text: str) -> bool:
    """A time in seconds: ASCII digits only (``str.isdigit`` accepts « ² » and other digits ``int`` refuses), and
    no more of them than a time has (a longer number overflows a float)."""
    return text.isascii() and text.isdigit() and len(text) <= 12


def same(given: str, expected: str) -> bool:
    """Two secrets compared in constant time, as bytes (``compare_digest`` refuses non-ASCII text)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def _is_human(message: dict[str, Any]) -> bool:
    sender = message.get("sender") or {}
    return message.get("message_type") in (OUTGOING, "outgoing") and sender.get("type") == "user"


class ChatwootBot:
    """Answers the incoming messages of pending conversations (see the module's text)."""

    def __init__(
        self,
        responder: Responder,
        client: ChatwootClient,
        leases: LeaseStore | None,
        counter: Any = None,
        workers: int = 2,
    ) -> None:
        """``leases``: where replicas agree that one of them answers a delivery (None: this process alone);
        ``counter``: a Prometheus counter labelled by what the bot did."""
        self.responder, self.query, self.client, self.leases = responder, responder.query, client, leases
        self.counter = counter
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="chatwoot")

    @classmethod
    def from_settings(
        cls, settings: Settings, responder: Responder, leases: LeaseStore | None, counter: Any = None
    ) -> ChatwootBot | None:
        channels = settings.channels
        if not (channels.chatwoot_url and channels.chatwoot_bot_token):
            return None
        client = ChatwootClient(
            channels.chatwoot_url,
            channels.chatwoot_bot_token,
            channels.chatwoot_timeout,
            channels.chatwoot_retries,
            EgressPolicy.from_settings(settings),
        )
        return cls(responder, client, leases, counter)

    def count(self, outcome: str) -> None:
        if self.counter is not None:
            self.counter.labels(outcome).inc()

    def accept(self, event: dict[str, Any], delivery: str | None) -> bool:
        """Take a delivery: True when it is a message to answer (answered in the background), False when there
        is nothing to do (another event, the bot's own or an agent's message, a delivery seen already here)."""
        if not _to_answer(event):
            return False
        key = delivery or f"message:{event.get('id')}"
        with self._lock:
            seen = key in self._seen
            self._seen[key] = None
            while len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
        if seen:
            self.count("duplicate")
            return False
        self._pool.submit(self._answer_once, key, event)
        return True

    def _answer_once(self, key: str, event: dict[str, Any]) -> None:
        """Answer under a lease of the delivery: one replica answers it; if answering fails, the lease is
        released (a redelivery can be answered); once answered, it is kept a day (a redelivery is not)."""
        try:
            if self.leases is None:
                self.answer(event)
                return
            try:
                taken, _ = Lease(self.leases, f"chatwoot:{key}", ttl=DELIVERY_LEASE, keep=DELIVERED).run(
                    lambda: self.answer(event)
                )
            except StoreUnavailable:  # the store away: this process's memory alone decides
                self.answer(event)
                return
            if not taken:
                self.count("duplicate")
        except Exception:  # the top of a worker thread: said in the log; a redelivery may be answered
            with self._lock:
                self._seen.pop(key, None)
            self.count("failed")
            log.exception("a Chatwoot message could not be answered")

    def answer(self, event: dict[str, Any]) -> None:
        account, conversation = int(event["account"]["id"]), int(event["conversation"]["id"])
        question = str(event.get("content") or "").strip()
        try:
            if self.client.status(account, conversation) != "pending":
                self.count("skipped")
                return
            history = self.client.messages(account, conversation)
        except ChatwootError as exc:
            log.warning("Chatwoot's API failed (%s): handing the conversation to the agents", exc)
            self._hand_off(account, conversation, question, None, "api_unavailable")
            return
        if any(_is_human(m) for m in history):
            self.count("skipped")
            return
        earlier = [str(m.get("content") or "") for m in history if m.get("message_type") in (0, "incoming")]
        earlier = [text for text in earlier if text.strip() and text.strip() != question][-5:]
        asked = Question(query=question, history=earlier)
        answer = self.responder.respond(asked, "chatwoot", listen_address(self.query.settings)).answer
        if answer.handoff is not None:
            if answer.outcome == "suggested":  # the nearest entries for the user, then the agents take over
                try:
                    self.client.post(account, conversation, _reply(answer))
                except ChatwootError as exc:
                    log.warning("the suggested entries could not be posted (%s)", exc)
            self._hand_off(account, conversation, question, answer, answer.handoff.reason)
            return
        try:
            self.client.post(account, conversation, _reply(answer))
            self.count("answered")
        except ChatwootError as exc:
            log.warning("the answer could not be posted (%s): handing the conversation to the agents", exc)
            self._hand_off(account, conversation, question, answer, "api_unavailable")

    def _hand_off(self, account: int, conversation: int, question: str, answer: Answer | None, why: str) -> None:
        """A private note for the agents, a word to the user, and the conversation opened to the agents."""
        lang = detect(question) if detect(question) in HANDED_OFF else "fr"
        steps = [
            lambda: self.client.post(account, conversation, self._note(question, why), private=True),
            lambda: self.client.post(account, conversation, HANDED_OFF[lang]),
            lambda: self.client.open(account, conversation),
        ]
        failed = 0
        for step in steps:
            try:
                step()
            except ChatwootError as exc:
                failed += 1
                log.error("handing conversation %s over failed at one step: %s", conversation, exc)
        self.count("handed_off" if not failed else "handoff_failed")

    def _note(self, question: str, why: str) -> str:
        """What the agent reads: the question, why it is theirs, the entries the bot would cite."""
        reasons = {
            "declined": "la FAQ ne répond pas à cette question",
            "asked": "l'utilisateur demande à parler à un conseiller",
            "unsure": "la FAQ y répond peut-être, sans certitude : les entrées les plus proches lui ont été proposées",
            "api_unavailable": "l'API de Chatwoot n'a pas répondu à temps",
        }
        lines = [f"Question : {question}", f"Transmise parce que {reasons.get(why, why)}."]
        try:
            ranked = self.query.retrieve(Question(query=question, k=3))
            lines.append(f"Confiance : {ranked.confidence:.2f}")
            for n, hit in enumerate(self.query.link(ranked, listen_address(self.query.settings)).results, start=1):
                lines.append(f"[{n}] {hit.question or hit.id} — {hit.url}")
        except Exception as exc:  # the note goes without the entries rather than not at all
            log.warning("the entries for the note could not be found: %s", exc)
        return "\n".join(lines)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


def _to_answer(event: dict[str, Any]) -> bool:
    """A contact's public message in a conversation the bot holds."""
    sender = event.get("sender") or {}
    return (
        event.get("event") == "message_created"
        and event.get("message_type") in ("incoming", 0)
        and not event.get("private")
        and sender.get("type", "contact") == "contact"
        and (event.get("conversation") or {}).get("status") == "pending"
        and bool(str(event.get("content") or "").strip())
        and isinstance((event.get("account") or {}).get("id"), int)
        and isinstance((event.get("conversation") or {}).get("id"), int)
    )


def _reply(answer: Answer) -> str:
    """The answer with its numbered sources as links (Chatwoot renders Markdown)."""
    sources = [f"[{c.n}] [{c.question or c.id}]({c.url})" for c in answer.citations if c.url]
    return answer.answer + ("\n\n" + "\n".join(sources) if sources else "")
