"""The Chatwoot agent bot over real HTTP: the service on one loopback port, a stand-in of Chatwoot's API on
another (tests/chatwoot_standin.py), fed with webhook events shaped and signed as Chatwoot sends them."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from rag.config import Settings
from rag.http import create_app
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

from .chatwoot_standin import TOKEN, ChatwootStandIn, signed_delivery
from .servers import running, wait_until

SOLDE = "Comment demander le paiement du solde ?"


URL_TOKEN = "url-token-789"


@pytest.fixture
def chatwoot() -> Iterator[tuple[ChatwootStandIn, str]]:
    standin = ChatwootStandIn()
    with running(standin.app, ready_path=None) as base:
        yield standin, base
    assert standin.refused == []  # no call Chatwoot refuses a bot's token was made


@pytest.fixture
def bot(chatwoot, tiny_settings: Settings, hash_embedder) -> Iterator[tuple[ChatwootStandIn, httpx.Client]]:
    standin, chatwoot_url = chatwoot
    settings = tiny_settings.replace(
        chatwoot_url=chatwoot_url,
        chatwoot_bot_token=TOKEN,
        chatwoot_webhook_secret=standin.secret,  # copied from Chatwoot's bot settings
        chatwoot_url_token=URL_TOKEN,
        chatwoot_retries=2,
        chatwoot_timeout=2,
        min_confidence=0.5,
        public_url="https://faq.example.org",
    )
    service = QueryService(settings, hash_embedder)
    Publisher(service).build()
    with running(create_app(settings, service), ready_path="/ready") as base, httpx.Client(base_url=base) as client:
        yield standin, client


def _outcome(client: httpx.Client, outcome: str) -> float:
    found = re.search(
        rf'^rag_chatwoot_messages_total{{outcome="{outcome}"}} ([0-9.]+)$', client.get("/metrics").text, re.M
    )
    return float(found.group(1)) if found else 0.0


def _deliver(
    standin: ChatwootStandIn, client: httpx.Client, event: dict, secret: str | None = None, delivery: str | None = None
) -> httpx.Response:
    return client.post("/integrations/chatwoot", **signed_delivery(event, secret or standin.secret, delivery))


def test_a_pending_conversation_gets_a_cited_answer(bot) -> None:
    standin, client = bot
    standin.conversation(1)
    reply = _deliver(standin, client, standin.contact_says(1, SOLDE))
    assert reply.status_code == 200 and reply.json() == {"accepted": True}
    wait_until(lambda: standin.posted(1))
    (message,) = standin.posted(1)
    assert not message["private"] and message["message_type"] == "outgoing"
    assert "[1]" in message["content"] and "https://faq.example.org/entries/solde" in message["content"]
    assert standin.toggles(1) == []


@pytest.mark.parametrize("question", ["Je voudrais parler à un conseiller, svp", "zzz qwxv ptlk"])
def test_a_decline_or_a_request_for_a_person_hands_the_conversation_over(bot, question: str) -> None:
    standin, client = bot
    standin.conversation(2)
    _deliver(standin, client, standin.contact_says(2, question))
    wait_until(lambda: standin.toggles(2) == ["open"])
    (note,) = standin.posted(2, private=True)
    assert note["content"].startswith(f"Question : {question}") and "Confiance" in note["content"]
    (told,) = standin.posted(2, private=False)
    assert "conseiller" in told["content"]
    assert standin.conversations[2].status == "open"
    before = len(standin.calls)
    _deliver(standin, client, standin.contact_says(2, SOLDE) | {"conversation": {"id": 2, "status": "open"}})
    assert len(standin.calls) == before  # open: the agents' conversation, the bot stays out


@pytest.mark.parametrize("status", ["open", "resolved"])
def test_no_reply_once_the_conversation_is_the_agents(bot, status: str) -> None:
    """The status comes with the event (a bot may not read the conversation): not pending, not the bot's."""
    standin, client = bot
    standin.conversation(3, status=status)
    assert _deliver(standin, client, standin.contact_says(3, SOLDE)).json() == {"accepted": False}
    assert standin.calls == []


def test_an_agents_message_stops_the_bot_and_the_conversation_goes_to_the_agents(bot) -> None:
    standin, client = bot
    standin.conversation(4)
    agent = standin.agent_says(4, "Bonjour, je m'occupe de votre demande.")
    assert _deliver(standin, client, agent).json() == {"accepted": False}  # an agent's message is never answered
    assert _deliver(standin, client, standin.contact_says(4, SOLDE)).json() == {"accepted": True}
    wait_until(lambda: standin.toggles(4) == ["open"])  # still pending: handed over, never left unseen
    assert standin.posted(4, private=False) == []  # nothing said in the agent's stead
    (note,) = standin.posted(4, private=True)
    assert "un conseiller a déjà écrit" in note["content"]


def test_a_message_with_no_text_is_handed_over(bot) -> None:
    standin, client = bot
    standin.conversation(14)
    assert _deliver(standin, client, standin.contact_says(14, None, attachment=True)).json() == {"accepted": True}
    wait_until(lambda: standin.toggles(14) == ["open"])
    (note,) = standin.posted(14, private=True)
    assert "pas de texte" in note["content"]


def test_sources_are_plain_text_where_the_channel_has_no_markdown(bot) -> None:
    standin, client = bot
    standin.conversation(15)
    event = standin.contact_says(15, SOLDE)
    event["conversation"]["channel"] = "Channel::Whatsapp"
    _deliver(standin, client, event)
    wait_until(lambda: standin.posted(15))
    (message,) = standin.posted(15)
    assert "](" not in message["content"] and "Comment demander le paiement du solde ? : https://" in message["content"]


def test_a_delivery_received_twice_is_answered_once(bot) -> None:
    standin, client = bot
    standin.conversation(5)
    event = standin.contact_says(5, SOLDE)
    first = _deliver(standin, client, event, delivery="d-5")
    again = _deliver(standin, client, event, delivery="d-5")
    assert first.json() == {"accepted": True} and again.json() == {"accepted": False}
    wait_until(lambda: len(standin.posted(5)) == 1)
    wait_until(lambda: _outcome(client, "duplicate") == 1)
    assert len(standin.posted(5)) == 1


def test_an_api_that_fails_is_retried_a_bounded_number_of_times_then_the_conversation_is_handed_over(bot) -> None:
    standin, client = bot
    standin.conversation(6)
    standin.fail["messages"] = 3  # the answer and its two retries
    _deliver(standin, client, standin.contact_says(6, SOLDE))
    wait_until(lambda: standin.toggles(6) == ["open"], timeout=30)
    posts = standin.posted(6)
    assert len(posts) == 5  # three tries of the answer, then the note and the word to the user
    assert [p["private"] for p in posts[3:]] == [True, False]
    assert "l'API de Chatwoot" in posts[3]["content"]
    assert _outcome(client, "handed_off") == 1


def test_a_forged_or_stale_delivery_is_refused(bot) -> None:
    standin, client = bot
    standin.conversation(8)
    event = standin.contact_says(8, SOLDE)
    invented = _deliver(standin, client, event, secret="a-secret-the-operator-made-up")
    assert invented.status_code == 401 and invented.json()["error"]["code"] == "invalid_signature"
    stale = signed_delivery(event, standin.secret)
    stale["headers"]["X-Chatwoot-Timestamp"] = "1000000000"
    assert client.post("/integrations/chatwoot", **stale).status_code == 401
    assert client.post("/integrations/chatwoot", json=event).status_code == 401
    assert client.post(f"/integrations/chatwoot?secret={standin.secret}", json=event).status_code == 401
    assert client.post(f"/integrations/chatwoot?token={URL_TOKEN}", json=event).json() == {"accepted": True}
    wait_until(lambda: len(standin.posted(8)) == 1)  # the URL's token, for Chatwoot versions that do not sign
    assert [c for c in standin.calls if c[0] == "POST"] == [c for c in standin.calls if c[0] == "POST"][:1]


def test_a_chatwoot_older_than_4_13_is_heard_with_the_url_token(tiny_settings: Settings, hash_embedder) -> None:
    standin = ChatwootStandIn(version=(4, 12))
    with running(standin.app, ready_path=None) as chatwoot_url:
        settings = tiny_settings.replace(
            chatwoot_url=chatwoot_url, chatwoot_bot_token=TOKEN, chatwoot_url_token=URL_TOKEN, min_confidence=0.5
        )
        service = QueryService(settings, hash_embedder)
        Publisher(service).build()
        with running(create_app(settings, service), ready_path="/ready") as base:
            standin.conversation(16)
            delivery = standin.deliver(standin.contact_says(16, SOLDE))
            assert "X-Chatwoot-Signature" not in delivery["headers"]
            assert httpx.post(base + "/integrations/chatwoot", **delivery).status_code == 401
            sent = httpx.post(base + f"/integrations/chatwoot?token={URL_TOKEN}", **delivery)
            assert sent.json() == {"accepted": True}
            wait_until(lambda: standin.posted(16))
    assert standin.refused == []


def test_without_chatwoot_settings_the_webhook_does_not_exist(tiny_settings: Settings, hash_embedder) -> None:
    service = QueryService(tiny_settings, hash_embedder)
    Publisher(service).build()
    with running(create_app(tiny_settings, service), ready_path="/ready") as base:
        assert httpx.post(base + "/integrations/chatwoot", json={"event": "message_created"}).status_code == 404


def test_a_delivery_sent_to_two_replicas_is_answered_once(chatwoot, tiny_settings: Settings, hash_embedder) -> None:
    standin, chatwoot_url = chatwoot
    settings = tiny_settings.replace(
        chatwoot_url=chatwoot_url,
        chatwoot_bot_token=TOKEN,
        chatwoot_webhook_secret=standin.secret,
        min_confidence=0.5,
    )
    services = [QueryService(settings, hash_embedder) for _ in range(2)]
    Publisher(services[0]).build()
    services[1].load()
    standin.conversation(9)
    event = standin.contact_says(9, SOLDE)
    with (
        running(create_app(settings, services[0]), ready_path="/ready") as one,
        running(create_app(settings, services[1]), ready_path="/ready") as two,
    ):
        first = httpx.post(one + "/integrations/chatwoot", **signed_delivery(event, standin.secret, "d-9"))
        again = httpx.post(two + "/integrations/chatwoot", **signed_delivery(event, standin.secret, "d-9"))
        assert first.status_code == again.status_code == 200  # both acknowledged: Chatwoot never sends it again
        # one replica takes the delivery's lease and answers, the other finds it taken
        wait_until(lambda: _counted(one, "duplicate") + _counted(two, "duplicate") == 1)
        wait_until(lambda: _counted(one, "answered") + _counted(two, "answered") == 1)
    assert len(standin.posted(9)) == 1


def _counted(base: str, outcome: str) -> int:
    text = httpx.get(base + "/metrics").text
    line = next(
        (x for x in text.splitlines() if x.startswith(f'rag_chatwoot_messages_total{{outcome="{outcome}"}}')), ""
    )
    return int(float(line.split()[-1])) if line else 0


def test_small_talk_is_recorded_without_its_text_as_on_every_channel(bot, tiny_settings: Settings) -> None:
    from rag.store import sqlite_store

    standin, client = bot
    standin.conversation(11)
    _deliver(standin, client, standin.contact_says(11, "Bonjour"))
    wait_until(lambda: standin.posted(11))
    store = sqlite_store(tiny_settings.feedback_path).open()
    wait_until(lambda: store.db.run("SELECT channel, query FROM answers") != [])
    assert store.db.run("SELECT channel, query FROM answers") == [("chatwoot", "")]
    assert store.answers.question_log(low_confidence=2.0) == []  # never a gap question


def test_a_delivery_that_failed_is_answered_when_sent_again(chatwoot, tiny_settings: Settings, hash_embedder) -> None:
    """Answering fails (the index still loading, say): the delivery's lease is released, so the redelivery is
    answered instead of being refused for a day."""
    from rag.channels.chatwoot import ChatwootBot, ChatwootClient
    from rag.channels.respond import Responder
    from rag.errors import IndexNotReady
    from rag.store import sqlite_store
    from rag.store.answer_ids import AnswerIds

    from .conftest import Recorded

    standin, chatwoot_url = chatwoot
    service = QueryService(tiny_settings.replace(min_confidence=0.5), hash_embedder)
    responder = Responder(service, Recorded(), AnswerIds(b"k"))
    store = sqlite_store(tiny_settings.feedback_path).open()
    counter = Outcomes()
    counted = counter.seen
    bot = ChatwootBot(responder, ChatwootClient(chatwoot_url, TOKEN), store.leases, counter)
    standin.conversation(12)
    event = standin.contact_says(12, SOLDE)
    assert bot.accept(event, "d-12")  # the index is not loaded yet: answering fails
    wait_until(lambda: counted == ["failed"])
    assert store.db.run("SELECT COUNT(*) FROM leases")[0][0] == 0 and not standin.posted(12)
    with pytest.raises(IndexNotReady):
        service.index  # noqa: B018 - still loading
    Publisher(service).build()
    assert bot.accept(event, "d-12")  # Chatwoot (or an operator) sends it again
    wait_until(lambda: standin.posted(12))
    assert counted == ["failed", "answered"]
    bot.close()


class Outcomes:
    """A stand-in of a Prometheus counter labelled by outcome: what was counted, in order."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def labels(self, outcome: str) -> Outcomes:
        self._next = outcome
        return self

    def inc(self) -> None:
        self.seen.append(self._next)
