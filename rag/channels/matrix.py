"""A Matrix bot (Tchap, the State's messenger, is Matrix): a bot account that answers in the rooms it is invited to.

Each question posted in a room is answered in a thread under it, with its sources as links; a follow-up in the
thread is read with the questions before it. When the FAQ does not answer, or is not sure, or a person is asked
for, the bot mentions the room's support members (power level ``RAG_MATRIX_SUPPORT_LEVEL`` or more) with the
transcript, or posts it in a support room (``RAG_MATRIX_SUPPORT_ROOM``). Once someone other than the asker has
written in a thread, the bot stays silent there. Encrypted rooms are refused (the bot reads no encrypted messages).

It follows the homeserver's ``/sync`` with matrix-nio on a job of its own; the sync token and the threads it keeps
are written after each round (atomically), so a restart loses no message, and each message is answered under a
lease (shared by replicas through the store), so none is answered twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from html import escape
from pathlib import Path
from typing import Any

from rag.channels.respond import Responder
from rag.config import Settings
from rag.jobs import Job, Lease, LeaseStore
from rag.models import Answer, Question
from rag.query.service import listen_address

log = logging.getLogger("rag.matrix")
RETRY_AFTER = 5.0  # seconds before following the homeserver again after a failure
SYNC_MS = 2000  # a long poll short enough for the job to stop within its deadline
ANSWERED = 86_400.0  # seconds an answered message stays claimed: seen again (a restart), it is not answered
THREADS = 2000  # threads remembered
SEEN_BEFORE = 120_000  # ms: on the very first start, older messages are history, not questions
HANDED = "Je passe la main à l'équipe :"
ENCRYPTED = (
    "Ce salon est chiffré : je ne peux pas y lire les questions. Invitez-moi dans un salon sans chiffrement "
    "(les réponses de la FAQ sont publiques)."
)


class MatrixBot(Job):
    name = "matrix"

    def __init__(self, settings: Settings, responder: Responder, leases: LeaseStore | None, state: Path) -> None:
        super().__init__(interval=0.01)
        channels = settings.channels
        self.homeserver, self.user_id = channels.matrix_homeserver.rstrip("/"), channels.matrix_user_id
        self.token, self.support_room = channels.matrix_access_token or "", channels.matrix_support_room
        self.support_level = channels.matrix_support_level
        self.responder, self.leases, self.state_path = responder, leases, state
        self.base = listen_address(settings)  # links use RAG_PUBLIC_URL when it is set
        self.since: str | None = None
        self.threads: dict[str, dict[str, Any]] = {}
        self._client: Any = None
        self._aio: asyncio.AbstractEventLoop | None = None
        self._started_ms = int(time.time() * 1000)

    @classmethod
    def from_settings(cls, settings: Settings, responder: Responder, leases: LeaseStore | None) -> MatrixBot | None:
        channels = settings.channels
        if not (channels.matrix_homeserver and channels.matrix_user_id and channels.matrix_access_token):
            return None
        return cls(settings, responder, leases, settings.index.index_dir.parent / "matrix-state.json")

    def start(self) -> None:
        self._read_state()
        super().start()

    def stop(self, timeout: float = SYNC_MS / 1000 + 5) -> None:
        super().stop(timeout)
        if self._aio is not None and self._client is not None and not self._aio.is_closed():
            self._aio.run_until_complete(self._client.close())
            self._aio.close()

    def tick(self) -> None:
        if self._aio is None:
            self._aio = asyncio.new_event_loop()
        try:
            self._aio.run_until_complete(self._round())
        except Exception as exc:  # the homeserver away or failing: said once a round, tried again a little later
            log.warning("the Matrix bot could not follow %s: %s", self.homeserver, exc)
            self._stop.wait(RETRY_AFTER)

    def _read_state(self) -> None:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            self.since, self.threads = state.get("since"), state.get("threads", {})
        except (OSError, ValueError, AttributeError):
            self.since, self.threads = None, {}

    def _write_state(self) -> None:
        """The sync token and the threads, together, atomically: what a restart starts from."""
        kept = dict(list(self.threads.items())[-THREADS:])
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"since": self.since, "threads": kept}, ensure_ascii=False), encoding="utf-8")
        os.replace(temporary, self.state_path)

    async def _round(self) -> None:
        from nio import AsyncClient, AsyncClientConfig, SyncError

        if self._client is None:
            # every call bounded, and tried once: the job's own loop tries again (nio would retry for minutes)
            config = AsyncClientConfig(max_timeouts=1, max_limit_exceeded=1, request_timeout=SYNC_MS / 1000 + 10)
            self._client = AsyncClient(self.homeserver, self.user_id, config=config)
            self._client.access_token, self._client.user_id = self.token, self.user_id
        first = self.since is None
        response = await self._client.sync(timeout=SYNC_MS, since=self.since, full_state=first)
        if isinstance(response, SyncError):
            log.warning("the Matrix homeserver refused a sync: %s", response.message)
            self._stop.wait(RETRY_AFTER)
            return
        for room_id, invited in response.rooms.invite.items():
            await self._invited(room_id, [e.source for e in invited.invite_state if hasattr(e, "source")])
        for room_id, joined in response.rooms.join.items():
            for event in joined.timeline.events:
                source = getattr(event, "source", None)
                if isinstance(source, dict) and not (first and self._old(source)):
                    await self._message(room_id, source)
        self.since = response.next_batch
        self._write_state()

    def _old(self, source: dict[str, Any]) -> bool:
        return int(source.get("origin_server_ts") or 0) < self._started_ms - SEEN_BEFORE

    async def _invited(self, room_id: str, state: list[dict[str, Any]]) -> None:
        """Join a room the bot is invited to; an encrypted one is left at once, with a word saying why."""
        from nio import RoomGetStateEventError

        if not any(e.get("type") == "m.room.encryption" for e in state):
            await self._client.join(room_id)
            found = await self._client.room_get_state_event(room_id, "m.room.encryption")
            if isinstance(found, RoomGetStateEventError):
                return
        await self._refuse_encrypted(room_id)

    async def _refuse_encrypted(self, room_id: str) -> None:
        log.warning("left the encrypted room %s: this bot reads no encrypted messages", room_id)
        content = {"msgtype": "m.notice", "body": ENCRYPTED}
        await self._client.room_send(room_id, "m.room.message", content)
        await self._client.room_leave(room_id)

    async def _message(self, room_id: str, source: dict[str, Any]) -> None:
        content, sender, event_id = source.get("content") or {}, source.get("sender"), source.get("event_id")
        if source.get("type") == "m.room.encryption":  # encryption turned on: the bot could read nothing more
            await self._refuse_encrypted(room_id)
            return
        if source.get("type") != "m.room.message" or sender == self.user_id or not event_id:
            return
        body = str(content.get("body") or "").strip()
        relates = content.get("m.relates_to") or {}
        root = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
        if root is None:
            if content.get("msgtype") != "m.text" or not body:
                return
            root, thread = event_id, {"room": room_id, "asker": sender, "questions": [], "human": False}
            self.threads[root] = thread
        else:
            thread = self.threads.get(root)
            if thread is None or thread["human"]:
                return  # not a thread the bot started, or a person took it
            if sender != thread["asker"]:
                thread["human"] = True  # someone answered: the bot stays silent here from now on
                return
            if content.get("msgtype") != "m.text" or not body:
                return
        await self._answer_once(room_id, root, event_id, body, thread)

    async def _answer_once(self, room_id: str, root: str, event_id: str, body: str, thread: dict[str, Any]) -> None:
        history = list(thread["questions"][-5:])
        thread["questions"].append(body)
        if self.leases is None:
            await self._answer(room_id, root, event_id, body, history, thread)
            return
        loop = asyncio.get_running_loop()
        answered = self._answer(room_id, root, event_id, body, history, thread)
        lease = Lease(self.leases, f"matrix:{event_id}", ttl=60.0, keep=ANSWERED)
        # the lease is held in a worker thread while this loop answers and sends: released if that fails
        taken, _ = await asyncio.to_thread(lease.run, lambda: asyncio.run_coroutine_threadsafe(answered, loop).result())
        if not taken:
            answered.close()  # another replica (or this one, before a restart) answered it

    def _reply_for(self, body: str, history: list[str]) -> Answer:
        return self.responder.respond(Question(query=body, history=history), "matrix", self.base).answer

    async def _answer(
        self, room_id: str, root: str, event_id: str, body: str, history: list[str], thread: dict[str, Any]
    ) -> None:
        await self._send_reply(room_id, root, event_id, self._reply_for(body, history), thread)

    async def _send_reply(self, room_id: str, root: str, event_id: str, answer: Answer, thread: dict[str, Any]) -> None:
        text, html = _rendered(answer)
        mentions: list[str] = []
        if answer.handoff is not None:
            transcript = thread["questions"]
            if self.support_room:
                await self._to_support_room(room_id, root, transcript)
            else:
                mentions = await self._support_members(room_id, exclude={thread["asker"]})
            if mentions:
                links = ", ".join(f'<a href="https://matrix.to/#/{escape(u)}">{escape(u)}</a>' for u in mentions)
                asked = "\n".join(f"- {q}" for q in transcript)
                text += f"\n\n{HANDED} {', '.join(mentions)}\nQuestions :\n{asked}"
                items = "".join(f"<li>{escape(q)}</li>" for q in transcript)
                html += f"<p>{HANDED} {links}</p><p>Questions :</p><ul>{items}</ul>"
        content = {
            "msgtype": "m.notice",
            "body": text,
            "format": "org.matrix.custom.html",
            "formatted_body": html,
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": event_id},
            },
            "m.mentions": {"user_ids": mentions},
        }
        await self._send(room_id, content)

    async def _send(self, room_id: str, content: dict[str, Any]) -> None:
        from nio import RoomSendError

        sent = await self._client.room_send(room_id, "m.room.message", content)
        if isinstance(sent, RoomSendError):  # raised: the message's lease is released, a later round tries again
            raise RuntimeError(f"the homeserver refused the message: {sent.message}")

    async def _support_members(self, room_id: str, exclude: set[str]) -> list[str]:
        """The room's members whose power level is at least the support level (the bot and the asker aside)."""
        from nio import RoomGetStateEventError

        levels = await self._client.room_get_state_event(room_id, "m.room.power_levels")
        if isinstance(levels, RoomGetStateEventError):
            return []
        users = (levels.content or {}).get("users") or {}
        return sorted(
            u for u, level in users.items() if level >= self.support_level and u not in exclude | {self.user_id}
        )

    async def _to_support_room(self, room_id: str, root: str, transcript: list[str]) -> None:
        link = f"https://matrix.to/#/{room_id}/{root}"
        asked = "\n".join(f"- {q}" for q in transcript)
        body = f"Une question attend une personne dans {link}\nQuestions :\n{asked}"
        items = "".join(f"<li>{escape(q)}</li>" for q in transcript)
        html = f'<p>Une question attend une personne : <a href="{escape(link)}">la conversation</a></p><ul>{items}</ul>'
        content = {"msgtype": "m.notice", "body": body, "format": "org.matrix.custom.html", "formatted_body": html}
        await self._send(self.support_room, content)


def _rendered(answer: Answer) -> tuple[str, str]:
    """The answer as plain text and as HTML: its text, then its numbered sources as links."""
    text, html = answer.answer, "".join(f"<p>{escape(line)}</p>" for line in answer.answer.split("\n") if line)
    if answer.citations:
        heading = "Sources" if answer.outcome == "answered" else "Les entrées les plus proches"
        text += f"\n\n{heading} :\n" + "\n".join(
            f"[{c.n}] {c.question or c.id} — {c.url}" for c in answer.citations if c.url
        )
        items = "".join(
            f'<li><a href="{escape(c.url or "")}">{escape(c.question or c.id)}</a></li>'
            for c in answer.citations
            if c.url
        )
        html += f"<p>{heading} :</p><ol>{items}</ol>"
    return text, html
