"""A new outward sink is one class: the one outbox worker delivers it, retries it, keeps its
refusals for `outbox status`, and never delivers an item twice."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bot.cli import app
from bot.server import build_services
from bot.settings import Settings
from integrations.delivery import OutboxWorker, Postpone, Refused, RetryLater
from ledger import outbox
from ledger.db import transaction
from ledger.models import OutboxItem, OutboxStatus
from rules.catalog import load_catalog
from tests.cli import run_cli
from tests.conftest import FakeClock

# ---- the toy sink: everything a new outbound sink has to write ----------------------------------


@dataclass
class ToySink:
    """An outward destination that records what it received, and fails when told to."""

    name: str = "toy"
    lease: timedelta = timedelta(minutes=2)
    received: list[str] = field(default_factory=list)
    script: list[Exception] = field(default_factory=list)  # outcomes of the next attempts
    doubts: list[bool] = field(default_factory=list)

    def deliver(self, session: Session, item: OutboxItem) -> dict[str, Any]:
        """Take one event; the receiver dedupes by the item's key."""
        self.doubts.append(outbox.in_doubt(item))
        if self.script:
            raise self.script.pop(0)
        self.received.append(item.key)
        return {"received": len(self.received)}


# ---- helpers -------------------------------------------------------------------------------------


def record(sessions: sessionmaker[Session], clock: FakeClock, *keys: str) -> None:
    """Events recorded for the toy sink, as a ledger change would record them."""
    with transaction(sessions) as session:
        for key in keys:
            outbox.enqueue(
                session=session, sink="toy", kind="event", key=key, payload={}, now=clock()
            )


def items(sessions: sessionmaker[Session]) -> dict[str, OutboxItem]:
    """The toy sink's items by key, as the database has them."""
    from sqlalchemy import select

    with sessions() as session:
        rows = session.scalars(select(OutboxItem).where(OutboxItem.sink == "toy")).all()
        for row in rows:
            session.expunge(row)
    return {row.key: row for row in rows}


@pytest.fixture
def worker(sessions: sessionmaker[Session], clock: FakeClock) -> OutboxWorker:
    """The one worker, built by the composition root, with the toy sink added."""
    engine = sessions.kw["bind"]
    services = build_services(
        settings=Settings(), catalog=load_catalog(), engine=engine, clock=clock
    )
    services.outbox.add(ToySink())
    return services.outbox


def toy(worker: OutboxWorker) -> ToySink:
    sink = worker.sinks["toy"]
    assert isinstance(sink, ToySink)
    return sink


# ---- behaviour ---------------------------------------------------------------------------------


def test_items_of_a_new_sink_are_delivered_by_the_one_worker_once(
    worker: OutboxWorker, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Two events recorded (one of them twice): the sink receives each once, in order."""
    record(sessions, clock, "toy:1", "toy:2", "toy:1")

    first = worker.run_once()
    second = worker.run_once()

    assert toy(worker).received == ["toy:1", "toy:2"]
    assert first["toy"]["delivered"] == 2
    assert second["toy"]["delivered"] == 0
    assert {k: i.status for k, i in items(sessions).items()} == {
        "toy:1": OutboxStatus.delivered,
        "toy:2": OutboxStatus.delivered,
    }


def test_a_retry_after_is_honoured_to_the_second(
    worker: OutboxWorker, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """The receiver answers "retry after 30 s": nothing before 30 s, delivered at 30 s."""
    toy(worker).script.append(RetryLater("busy", retry_after=30))
    record(sessions, clock, "toy:1")

    worker.run_once()
    clock.advance(seconds=29)
    worker.run_once()
    assert toy(worker).received == []
    clock.advance(seconds=1)
    worker.run_once()

    assert toy(worker).received == ["toy:1"]
    assert items(sessions)["toy:1"].attempts == 2


def test_a_retry_after_an_unknown_outcome_knows_the_first_may_have_landed(
    worker: OutboxWorker, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A timed-out attempt: the next one is told it is in doubt, so it can look first."""
    toy(worker).script.append(RetryLater("timed out"))
    record(sessions, clock, "toy:1")

    worker.run_once()
    clock.advance(minutes=1)
    worker.run_once()

    assert toy(worker).doubts == [False, True]
    assert toy(worker).received == ["toy:1"]


def test_a_postponed_item_counts_no_attempt_and_goes_later(
    worker: OutboxWorker, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """An item waiting on another is put back without an attempt, then delivered."""
    toy(worker).script.append(Postpone(timedelta(seconds=5)))
    record(sessions, clock, "toy:1")

    worker.run_once()
    assert items(sessions)["toy:1"].attempts == 0
    clock.advance(seconds=5)
    worker.run_once()

    assert toy(worker).received == ["toy:1"]


def test_a_crash_inside_the_sink_loses_nothing(
    worker: OutboxWorker, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """The process dies mid-delivery: after the attempt's lease the item is delivered once."""

    class Crash(BaseException):
        """SIGKILL: nothing after this runs."""

    toy(worker).script.append(Crash())  # type: ignore[arg-type]
    record(sessions, clock, "toy:1")

    with pytest.raises(Crash):
        worker.run_once()
    worker.run_once()  # another replica at once: the dead attempt still holds the item
    assert toy(worker).received == []
    clock.advance(minutes=3)
    worker.run_once()

    assert toy(worker).received == ["toy:1"]
    assert toy(worker).doubts[-1] is True


def test_a_refusal_is_kept_with_the_receivers_message_and_shown_and_retried_from_the_cli(
    worker: OutboxWorker,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 400 with the receiver's message: failed, listed by `outbox status`, queued by `retry`."""
    toy(worker).script.append(Refused("400: field 'severity' is not allowed here"))
    record(sessions, clock, "toy:1")
    worker.run_once()
    clock.advance(hours=1)
    worker.run_once()  # a refusal is not retried on its own
    assert items(sessions)["toy:1"].status == OutboxStatus.failed

    monkeypatch.setenv("COMPLIANCEBOT_DATABASE__URL", db_url)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    cli = CliRunner()
    status = cli.invoke(app, ["outbox", "status"], catch_exceptions=False)
    retried = cli.invoke(app, ["outbox", "retry", "--sink", "toy"], catch_exceptions=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
    unknown = run_cli(
        "outbox",
        "status",
        "--sink",
        "nope",
        env={**env, "COMPLIANCEBOT_DATABASE__URL": db_url},
        cwd=tmp_path,
    )
    clock.now = datetime.now(UTC)  # `retry` queued it at the real time
    worker.run_once()

    assert status.exit_code == 0, status.output
    assert "toy: 0 pending, 0 delivered, 1 failed" in status.stdout
    assert (
        "toy:1 (failed, 1 attempt(s)): 400: field 'severity' is not allowed here" in status.stdout
    )
    assert "1 failed toy item(s) queued again." in retried.stdout
    assert unknown.returncode != 0
    assert "--sink: unknown sink 'nope'; known: toy" in unknown.stderr
    assert toy(worker).received == ["toy:1"]


def test_a_sink_asking_everyone_to_slow_down_pauses_the_round(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A 429 for the whole sink: a short Retry-After is waited out, a long one ends the round."""
    slept: list[float] = []
    worker = OutboxWorker(sessions=sessions, clock=clock, sleep=slept.append, max_wait=10)
    sink = ToySink()
    worker.add(sink)
    sink.script += [RetryLater("429", retry_after=2, pause=True)]
    record(sessions, clock, "toy:1", "toy:2", "toy:3")

    worker.run_once()
    assert (slept, sink.received) == ([2], ["toy:2", "toy:3"])

    sink.script += [RetryLater("429", retry_after=60, pause=True)]
    record(sessions, clock, "toy:4", "toy:5")
    clock.advance(seconds=2)
    done = worker.run_once()["toy"]

    # toy:1 is due again and refused for 60 s: the round ends before toy:4 and toy:5.
    assert (done["retrying"], done["delivered"]) == (1, 0)
    assert sink.received == ["toy:2", "toy:3"]
