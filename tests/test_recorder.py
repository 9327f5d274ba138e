"""Answers and votes recorded off the request's path: the local spool while the store is away, replayed in order
when it answers again, votes on answers still on their way kept, what can be kept nowhere refused."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest

from rag.errors import StoreUnavailable, UnknownAnswer
from rag.models import Answer, Citation, Hit
from rag.store import sqlite_store as SqliteStore
from rag.store.answer_ids import AnswerIds
from rag.store.answers import answer_row
from rag.store.recorder import Recorder
from rag.store.spool import Spool

from .servers import wait_until

new_answer_id = AnswerIds(b"test").issue


def _answer(query: str = "Comment déposer une demande de solde ?") -> Answer:
    hit = Hit(id="solde", text="t", score=1.0, url="/entries/solde")
    return Answer(query=query, answer="a [1]", abstained=False, citations=[Citation(n=1, id="solde")], passages=[hit])


def test_the_spool_replays_in_order_and_keeps_what_must_wait(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for n in range(5):
        spool.append({"n": n})
    assert spool.pending == 5 and len(list((tmp_path / "spool").glob("*.jsonl"))) == 1
    seen: list[int] = []

    def apply(record: dict) -> bool:
        seen.append(record["n"])
        return record["n"] != 3  # record 3 waits for something

    assert spool.replay(apply) == (4, 1) and seen == [0, 1, 2, 3, 4] and spool.pending == 0
    spool.append({"n": 5})  # goes on while the kept one waits in the file handed over
    seen.clear()
    assert spool.replay(lambda r: seen.append(r["n"]) or True) == (2, 0) and sorted(seen) == [3, 5]
    assert list((tmp_path / "spool").glob("*.jsonl")) == []


def test_records_under_replay_still_count_as_waiting_until_written(tmp_path: Path) -> None:
    """What the readiness probe says (nothing spooled) must not be true before the replay has written everything."""
    spool = Spool(tmp_path)
    for n in range(3):
        spool.append({"n": n})
    seen: list[int] = []

    def apply(record: dict) -> bool:
        seen.append(spool.pending + spool.waiting)
        return record["n"] != 1

    assert spool.replay(apply) == (2, 1)
    assert seen == [3, 3, 3] and (spool.pending, spool.waiting, spool.kept) == (0, 1, 1)
    assert spool.replay(lambda record: True) == (1, 0) and spool.waiting == 0


def test_the_spool_stops_at_the_first_failure_and_keeps_the_rest(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for n in range(4):
        spool.append({"n": n})

    def apply(record: dict) -> bool:
        if record["n"] == 2:
            raise StoreUnavailable("away")
        return True

    assert spool.replay(apply) == (2, 2)
    assert spool.replay(lambda r: True) == (2, 0)


def _write_and_die(folder: str) -> None:
    Spool(Path(folder)).append({"from": "a process killed before it could replay"})
    os._exit(0)  # no clean-up: the file stays, and its lock goes with the process


def test_the_files_of_a_process_that_died_are_replayed_by_another(tmp_path: Path) -> None:
    held = Spool(tmp_path)
    held.append({"from": "a live process"})  # locked by its owner: never taken
    process = multiprocessing.get_context("fork").Process(target=_write_and_die, args=(str(tmp_path),))
    process.start()
    process.join(30)
    seen: list[dict] = []
    survivor = Spool(tmp_path)
    assert survivor.replay(lambda r: seen.append(r) or True) == (1, 0)
    assert seen == [{"from": "a process killed before it could replay"}]
    assert len(list(tmp_path.glob("*.jsonl"))) == 1  # the live process's own


def test_what_cannot_be_written_anywhere_is_a_retryable_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("x")
    with pytest.raises(StoreUnavailable) as raised:
        Spool(tmp_path / "not-a-folder").append({"n": 1})
    assert raised.value.status == 503 and raised.value.headers == {"Retry-After": "5"}


@pytest.fixture
def away(tmp_path: Path):
    """A real SQLite store that cannot be opened while its path is a folder (as on a full disk)."""
    path = tmp_path / "feedback.sqlite3"
    path.mkdir()
    store = SqliteStore(path)
    recorder = Recorder(store, Spool(tmp_path / "spool"), wait=2.0)
    recorder.start()
    yield recorder, path
    recorder.close()
    store.close()


def test_while_the_store_is_away_answers_and_votes_are_kept_and_written_when_it_returns(away) -> None:
    recorder, path = away
    given = [new_answer_id() for _ in range(3)]
    for answer_id in given:
        recorder.record_answer(answer_id, _answer())
    assert recorder.add_feedback(given[0], True, None) is None  # kept in the spool: acknowledged
    assert recorder.add_feedback(given[1], False, "incomplet") is None
    assert recorder.add_feedback(given[1], True, "en fait oui") is None  # the latest wins
    wait_until(lambda: recorder.spooled == 6)
    assert recorder.state in {"unavailable", "spooling"} and recorder.last_error
    shutil.rmtree(path)  # the store can be written again
    wait_until(lambda: recorder.replayed == 6 and recorder.pending == 0, timeout=30)
    rows = {r["answer_id"]: (r["helpful"], r["comment"]) for r in recorder.store.votes.all()}
    assert rows == {given[0]: (True, None), given[1]: (True, "en fait oui")}
    assert recorder.state == "ok" and recorder.dropped == 0


def test_a_vote_right_after_its_answer_waits_for_the_answer_s_record(tmp_path: Path) -> None:
    recorder = Recorder(SqliteStore(tmp_path / "fb.sqlite3"), Spool(tmp_path / "spool"), wait=5.0)
    recorder.start()
    try:
        answer_id = new_answer_id()
        recorder.record_answer(answer_id, _answer())
        assert recorder.add_feedback(answer_id, True, None) is False  # written to the store, not spooled
        assert recorder.add_feedback(answer_id, False, None) is True
        assert recorder.spooled == 0
    finally:
        recorder.close()


def test_a_vote_on_an_answer_still_on_its_way_is_kept_and_one_on_an_id_never_given_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "fb.sqlite3")
    recorder = Recorder(store, Spool(tmp_path / "spool"), wait=0.1)
    recorder.start()
    try:
        with pytest.raises(UnknownAnswer):
            recorder.add_feedback("0" * 40, True, None)  # given in 1970: no answer of that age waits anywhere
        with pytest.raises(UnknownAnswer):
            recorder.add_feedback("nope", True, None)
        elsewhere = new_answer_id()  # given moments ago by another replica, its record still in that one's spool
        assert recorder.add_feedback(elsewhere, True, None) is None
        time.sleep(1.0)  # the writer tries the spool meanwhile: the vote must wait for its answer
        wait_until(lambda: recorder.pending == 1, timeout=5)  # read between two replays, not in the middle of one
        assert recorder.replayed == 0
        store.answers.insert(answer_row(elsewhere, _answer()))  # the other replica's spool reaches the store
        wait_until(lambda: recorder.pending == 0, timeout=30)
        assert [r["answer_id"] for r in store.votes.all()] == [elsewhere]
    finally:
        recorder.close()


def test_answer_ids_carry_the_time_they_were_given() -> None:
    first, second = new_answer_id(), new_answer_id()
    assert len(first) == 40 and int(first[:12], 16) <= int(second[:12], 16)
    assert abs(int(first[:12], 16) / 1000 - time.time()) < 5
    assert json.loads(json.dumps(first)) == first


def test_two_workers_replaying_one_spool_folder_race_without_failing(tmp_path: Path) -> None:
    """The files of a process that died are replayed by whichever worker takes them first; the other finds them gone
    (or already removed once it holds their lock) and goes on."""
    import threading

    folder = tmp_path / "spool"
    for n in range(40):  # files of processes that died: unlocked, on disk
        dead = Spool(folder)
        dead.append({"n": n})
        dead._own.close()
    applied: list[int] = []
    failures: list[BaseException] = []

    def worker() -> None:
        spool = Spool(folder)
        for _ in range(20):
            try:
                spool.replay(lambda record: applied.append(record["n"]) or True)
            except BaseException as exc:  # what the recorder would report as the store unavailable
                failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == [] and set(applied) == set(range(40)) and list(folder.glob("*.jsonl")) == []


def test_a_spool_file_removed_by_another_worker_after_it_was_listed_is_skipped(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "spool"
    dead = Spool(folder)
    dead.append({"n": 1})
    dead._own.close()
    gone = folder / "replayed-by-the-other-worker.jsonl"  # listed, then removed before it is looked at
    listed = Path.glob
    monkeypatch.setattr(Path, "glob", lambda self, pattern: [*listed(self, pattern), gone])
    applied: list[int] = []
    assert Spool(folder).replay(lambda record: applied.append(record["n"]) or True) == (1, 0) and applied == [1]


def test_a_vote_waiting_for_its_answer_does_not_rewrite_the_spool_at_every_turn(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "fb.sqlite3")
    recorder = Recorder(store, Spool(tmp_path / "spool"), wait=0.05)
    recorder.start()
    try:
        elsewhere = new_answer_id()  # its record is still in another replica's spool
        assert recorder.add_feedback(elsewhere, True, None) is None
        wait_until(lambda: recorder.pending == 1 and list((tmp_path / "spool").glob("*.jsonl")), timeout=10)
        (waiting,) = (tmp_path / "spool").glob("*.jsonl")
        time.sleep(1.0)  # the first replays happen: the vote is kept
        before = waiting.stat().st_mtime_ns
        time.sleep(3.0)  # six turns of the writer's loop
        assert waiting.stat().st_mtime_ns == before  # kept as it is: not rewritten, not synced again
        store.answers.insert(answer_row(elsewhere, _answer()))
        wait_until(lambda: recorder.pending == 0, timeout=30)  # looked at again after a bounded wait
    finally:
        recorder.close()
