"""A Chatwoot agent bot: Chatwoot posts its webhook events to ``POST /integrations/chatwoot``; each incoming
message of a conversation the bot holds (``pending``) is answered through Chatwoot's API with citations. On a
decline or a request for a person, the bot leaves a private note for the agents (the question, the entries it
would cite, the confidence, why), tells the user, and opens the conversation to them; so it does for every
pending conversation it will not answer (a message with no text — an attachment, a voice message —, one where an
agent wrote), so none is left outside the agents' list.

An agent bot's token may only create messages and change a conversation's status (Chatwoot refuses it every
read), so the bot reads nothing from Chatwoot: the conversation's status comes with each event, and what it must
know of the conversation — that an agent wrote in it, the contact's earlier questions — it keeps from the events
it receives (agents' messages are sent to the bot too).

Deliveries are checked (Chatwoot's signature with the bot's secret, ``X-Chatwoot-Signature: sha256=HMAC(secret,
"<timestamp>.<body>")`` since Chatwoot 4.13, or the token of the webhook URL for older versions), acknowledged at
once and answered in the background; one delivered twice is answered once. A Chatwoot API that fails is tried
again a bounded number of times; an answer that cannot be posted becomes a handoff.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import threading
import time
import uuid
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
MARKED = 30 * 86_400.0  # seconds a conversation is remembered as one an agent wrote in
CONVERSATIONS = 10_000  # conversations whose earlier questions are remembered here
# channels whose messages render Markdown links; elsewhere (WhatsApp, Instagram, Facebook, SMS…) a link is
# written as its text then its URL
MARKDOWN = {"Channel::WebWidget", "Channel::Api", "Channel::Email"}
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
        # the header with a hyphen: a proxy in front of Chatwoot (nginx by default) drops names with underscores
        self._client = policy.client(timeout=timeout, headers={"Api-Access-Token": token})

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
    secret: str | None,
    url_token: str | None,
    body: bytes,
    headers: dict[str, str],
    query: dict[str, str],
    now: float | None = None,
) -> bool:
    """Whether a delivery comes from Chatwoot: a fresh signature with the bot's secret (Chatwoot 4.13 and later),
    or the token of the webhook's URL (``?token=``, or ``?secret=`` as set up before; for older versions)."""
    signature, timestamp = headers.get("x-chatwoot-signature"), headers.get("x-chatwoot-timestamp", "")
    if secret and signature:
        fresh = _digits(timestamp) and abs((now or time.time()) - int(timestamp)) <= SKEW
        if fresh and same(signature, signed(secret, timestamp, body)):
            return True
    given = query.get("token") or query.get("secret") or ""
    return bool(url_token) and same(given, url_token)


def _digits(text: str) -> bool:
    """A time in seconds: ASCII digits only (``str.isdigit`` accepts « ² » and other digits ``int`` refuses), and
    no more of them than a time has (a longer number overflows a float)."""
    return text.isascii() and text.isdigit() and len(text) <= 12


def same(given: str, expected: str) -> bool:
    """Two secrets compared in constant time, as bytes (``compare_digest`` refuses non-ASCII text)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


class Marks:
    """Conversations an agent wrote in: remembered here and, with a store, by every replica (as a long claim)."""

    def __init__(self, leases: LeaseStore | None) -> None:
        self.leases, self._local = leases, set()

    def mark(self, name: str) -> None:
        self._local.add(name)
        if self.leases is not None:
            with contextlib.suppress(StoreUnavailable):  # away: this process remembers it
                self.leases.claim(name, "marked", MARKED)

    def marked(self, name: str) -> bool:
        if name in self._local or self.leases is None:
            return name in self._local
        probe = f"probe:{uuid.uuid4().hex}"
        try:
            if self.leases.claim(name, probe, 0.001):  # free: nobody marked it
                self.leases.release(name, probe)
                return False
        except StoreUnavailable:
            return False
        return True


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
        self.marks = Marks(leases)
        self._asked: OrderedDict[str, list[str]] = OrderedDict()  # a conversation's earlier questions
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
        is nothing to do (another event, the bot's own message, a delivery seen already here). An agent's
        message is remembered: the bot answers nothing more in that conversation."""
        if _from_agent(event):
            self.marks.mark(_conversation_key(event))
            return False
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

    def _earlier(self, key: str, question: str) -> list[str]:
        """The contact's earlier questions in this conversation (as this process received them); ``question``
        joins them."""
        with self._lock:
            asked = self._asked.pop(key, [])
            self._asked[key] = [*asked, question][-6:]
            while len(self._asked) > CONVERSATIONS:
                self._asked.popitem(last=False)
        return [text for text in asked if text != question][-5:]

    def answer(self, event: dict[str, Any]) -> None:
        account, conversation = int(event["account"]["id"]), int(event["conversation"]["id"])
        question = str(event.get("content") or "").strip()
        key = _conversation_key(event)
        if self.marks.marked(key):  # an agent wrote here: theirs, and in their list
            self._hand_off(account, conversation, question, None, "agent_wrote")
            return
        if not question:  # an attachment, a voice message: for a person to look at
            self._hand_off(account, conversation, question, None, "no_text")
            return
        asked = Question(query=question, history=self._earlier(key, question))
        answer = self.responder.respond(asked, "chatwoot", listen_address(self.query.settings)).answer
        markdown = (event.get("conversation") or {}).get("channel") in MARKDOWN
        if answer.handoff is not None:
            if answer.outcome == "suggested":  # the nearest entries for the user, then the agents take over
                try:
                    self.client.post(account, conversation, _reply(answer, markdown))
                except ChatwootError as exc:
                    log.warning("the suggested entries could not be posted (%s)", exc)
            self._hand_off(account, conversation, question, answer, answer.handoff.reason)
            return
        try:
            self.client.post(account, conversation, _reply(answer, markdown))
            self.count("answered")
        except ChatwootError as exc:
            log.warning("the answer could not be posted (%s): handing the conversation to the agents", exc)
            self._hand_off(account, conversation, question, answer, "api_unavailable")

    def _hand_off(self, account: int, conversation: int, question: str, answer: Answer | None, why: str) -> None:
        """A private note for the agents, a word to the user (unless an agent already wrote to them), and the
        conversation opened to the agents."""
        lang = detect(question) if question and detect(question) in HANDED_OFF else "fr"
        steps = [lambda: self.client.post(account, conversation, self._note(question, why), private=True)]
        if why != "agent_wrote":
            steps.append(lambda: self.client.post(account, conversation, HANDED_OFF[lang]))
        steps.append(lambda: self.client.open(account, conversation))
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
            "agent_wrote": "un conseiller a déjà écrit dans cette conversation",
            "no_text": "le message n'a pas de texte (une pièce jointe, un message vocal)",
        }
        lines = [f"Question : {question or '(sans texte)'}", f"Transmise parce que {reasons.get(why, why)}."]
        if not question:
            return "\n".join(lines)
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


def _ids_of(event: dict[str, Any]) -> bool:
    return isinstance((event.get("account") or {}).get("id"), int) and isinstance(
        (event.get("conversation") or {}).get("id"), int
    )


def _conversation_key(event: dict[str, Any]) -> str:
    return f"chatwoot:agent:{event['account']['id']}:{event['conversation']['id']}"


def _from_agent(event: dict[str, Any]) -> bool:
    """A message a person of the team wrote (public or a private note), as Chatwoot sends it to the bot."""
    sender = event.get("sender") or {}
    return (
        event.get("event") == "message_created"
        and event.get("message_type") in ("outgoing", 1)
        and sender.get("type") == "user"
        and _ids_of(event)
    )


def _to_answer(event: dict[str, Any]) -> bool:
    """A contact's public message in a conversation the bot holds (``pending``, as the event says)."""
    sender = event.get("sender") or {}
    return (
        event.get("event") == "message_created"
        and event.get("message_type") in ("incoming", 0)
        and not event.get("private")
        and sender.get("type", "contact") == "contact"
        and (event.get("conversation") or {}).get("status") == "pending"
        and _ids_of(event)
    )


def _reply(answer: Answer, markdown: bool = True) -> str:
    """The answer with its numbered sources: Markdown links where the channel renders them, else the title then the
    URL (a Markdown link on WhatsApp, Instagram or Facebook keeps only its URL)."""
    if markdown:
        sources = [f"[{c.n}] [{c.question or c.id}]({c.url})" for c in answer.citations if c.url]
    else:
        sources = [f"[{c.n}] {c.question + ' : ' if c.question else ''}{c.url}" for c in answer.citations if c.url]
    return answer.answer + ("\n\n" + "\n".join(sources) if sources else "")
