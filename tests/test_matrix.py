"""The Matrix (Tchap) bot against a real homeserver: Synapse started on loopback (tests/synapse.py), users
registered on it, the bot following it with matrix-nio."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.channels.matrix import HANDED, MatrixBot
from rag.channels.respond import Responder
from rag.config import Settings
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService
from rag.store import sqlite_store
from rag.store.answer_ids import AnswerIds

from .conftest import Recorded
from .synapse import User, register, synapse, wait_for

pytestmark = pytest.mark.slow
SOLDE = "Comment demander le paiement du solde ?"
UNKNOWN = "zzz qwxv ptlk"


@pytest.fixture(scope="module")
def homeserver(tmp_path_factory) -> Iterator[str]:
    with synapse(tmp_path_factory.mktemp("synapse")) as base:
        yield base


@pytest.fixture
def people(homeserver: str) -> tuple[User, User, User]:
    """The bot's account, a user who asks and a member of the support team (power level 50)."""
    suffix = uuid.uuid4().hex[:12]  # new accounts for each test: ids are never reused on one homeserver
    return tuple(register(homeserver, f"{name}{suffix}") for name in ("faqbot", "alice", "support"))


def _room(alice: User, bot: User, support: User, encrypted: bool = False) -> str:
    body = {
        "name": "Support Ségur",
        "invite": [bot.user_id, support.user_id],
        "power_level_content_override": {"users": {support.user_id: 50}},
    }
    if encrypted:
        body["initial_state"] = [
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
        ]
    room = alice.call("POST", "/createRoom", body)["room_id"]
    support.call("POST", f"/join/{room}", {})
    return room


def _membership(alice: User, room: str, user_id: str) -> str:
    try:
        return alice.call("GET", f"/rooms/{room}/state/m.room.member/{user_id}").get("membership", "")
    except AssertionError:
        return ""


@pytest.fixture
def make_bot(homeserver: str, people, tiny_settings: Settings, hash_embedder, tmp_path: Path):
    """A bot over the tiny FAQ for the bot's account; the same state file and store each time (a restart)."""
    bot_user = people[0]
    settings = tiny_settings.replace(
        matrix_homeserver=homeserver,
        matrix_user_id=bot_user.user_id,
        matrix_access_token=bot_user.token,
        min_confidence=0.5,
        public_url="https://faq.example.org",
    )
    service = QueryService(settings, hash_embedder)
    Publisher(service).build()
    store = sqlite_store(tmp_path / "store.sqlite3").open()
    recorded = Recorded()
    running: list[MatrixBot] = []

    def make() -> MatrixBot:
        bot = MatrixBot(settings, Responder(service, recorded, AnswerIds(b"k")), store.leases, tmp_path / "state.json")
        bot.start()
        running.append(bot)
        return bot

    make.recorded = recorded
    yield make
    for bot in running:
        bot.stop()


def test_questions_are_answered_in_threads_followed_up_and_handed_to_the_support(people, make_bot) -> None:
    bot_user, alice, support = people
    make_bot()
    room = _room(alice, bot_user, support)
    wait_for(lambda: _membership(alice, room, bot_user.user_id) == "join")
    asked = alice.say(room, SOLDE)
    (reply,) = wait_for(lambda: alice.replies(room, bot_user.user_id, asked))
    content = reply["content"]
    assert content["m.relates_to"]["rel_type"] == "m.thread" and content["m.relates_to"]["event_id"] == asked
    assert "https://faq.example.org/entries/solde" in content["body"]
    assert '<a href="https://faq.example.org/entries/solde">' in content["formatted_body"]
    alice.say(room, "Et le délai ?", thread=asked)  # a follow-up, read with the question before it
    wait_for(lambda: len(alice.replies(room, bot_user.user_id, asked)) == 2)
    follow_up = make_bot.recorded.answers[-1][1]
    assert follow_up.resolved and "solde" in follow_up.resolved.lower()

    declined = alice.say(room, UNKNOWN)
    (handed,) = wait_for(lambda: alice.replies(room, bot_user.user_id, declined))
    assert handed["content"]["m.mentions"]["user_ids"] == [support.user_id]
    assert HANDED in handed["content"]["body"] and f"- {UNKNOWN}" in handed["content"]["body"]

    support.say(room, "Je regarde votre question.", thread=declined)  # a person answers in the thread
    alice.say(room, "Merci, et sinon ?", thread=declined)
    later = alice.say(room, SOLDE)  # answered after the messages before it were read
    wait_for(lambda: alice.replies(room, bot_user.user_id, later))
    assert len(alice.replies(room, bot_user.user_id, declined)) == 1  # silent once a person took the thread


def test_a_restart_loses_no_message_and_answers_none_twice(people, make_bot) -> None:
    bot_user, alice, support = people
    first = make_bot()
    room = _room(alice, bot_user, support)
    wait_for(lambda: _membership(alice, room, bot_user.user_id) == "join")
    before = alice.say(room, SOLDE)
    wait_for(lambda: alice.replies(room, bot_user.user_id, before))
    first.stop()
    during = alice.say(room, "Quelle messagerie sécurisée utiliser ?")  # asked while the bot is away
    make_bot()
    wait_for(lambda: alice.replies(room, bot_user.user_id, during))
    after = alice.say(room, SOLDE)
    wait_for(lambda: alice.replies(room, bot_user.user_id, after))
    assert [len(alice.replies(room, bot_user.user_id, e)) for e in (before, during, after)] == [1, 1, 1]


def test_an_encrypted_room_is_declined(people, make_bot) -> None:
    bot_user, alice, support = people
    make_bot()
    room = _room(alice, bot_user, support, encrypted=True)
    wait_for(lambda: _membership(alice, room, bot_user.user_id) == "leave")
    (said,) = [m for m in alice.messages(room) if m["sender"] == bot_user.user_id]
    assert "chiffré" in said["content"]["body"]  # why it left, in the room (the server takes it unencrypted)


def test_a_homeserver_away_is_said_and_followed_again_later(tiny_settings: Settings, hash_embedder, caplog) -> None:
    from .servers import free_port, wait_until

    settings = tiny_settings.replace(
        matrix_homeserver=f"http://127.0.0.1:{free_port()}", matrix_user_id="@faq:localhost", matrix_access_token="t"
    )
    service = QueryService(settings, hash_embedder)
    Publisher(service).build()
    bot = MatrixBot.from_settings(settings, Responder(service, Recorded(), AnswerIds(b"k")), None)
    assert bot is not None
    with caplog.at_level("WARNING", logger="rag.matrix"):
        bot.start()
        wait_until(lambda: any("could not follow" in r.getMessage() for r in caplog.records))
        bot.stop()
    assert not bot.running and sum("could not follow" in r.getMessage() for r in caplog.records) <= 2
