"""The scan lock: one scan at a time across processes, and no scan left `running` for ever."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from ledger import scanlock, services
from ledger.db import transaction
from ledger.models import Scan, ScanLockRow, ScanStatus
from ledger.scanlock import (
    HeldScan,
    ScanAlreadyRunningError,
    ScanLockLostError,
    begin_scan,
    current_holder,
)
from ledger.services import ScanCounts
from tests.conftest import FakeClock
from tests.ledger.helpers import audit

RUNNING = r"a scan is already running \(started by schedule at 2026-11-01 09:00:00 UTC, scan #1\)"

# A process that takes the lock and keeps it until it is killed (or its stdin closes).
HOLDER = """
import sys
from datetime import datetime
from ledger import db, scanlock
sessions = db.session_factory(db.make_engine(sys.argv[1]))
at = datetime.fromisoformat(sys.argv[2])
held = scanlock.begin_scan(sessions=sessions, clock=lambda: at, trigger="cli", scope={})
print(held.scan.id, flush=True)
sys.stdin.read()
"""


def engine_of(sessions: sessionmaker[Session]) -> Engine:
    """The engine behind the session factory."""
    bind = sessions.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


def backend(sessions: sessionmaker[Session]) -> str:
    """`sqlite` or `postgresql`."""
    return engine_of(sessions).dialect.name


def begin(sessions: sessionmaker[Session], clock: FakeClock, trigger: str = "schedule") -> HeldScan:
    """Take the lock for a new scan, as `run_scan` does."""
    return begin_scan(sessions=sessions, clock=clock, trigger=trigger, scope={})


def finish(held: HeldScan, clock: FakeClock) -> None:
    """Store the held scan's (empty) result and let the lock go."""
    with transaction(held.sessions) as session:
        scan = held.resume(session)
        services.finish_scan(
            session=session,
            scan=scan,
            now=clock(),
            counts=ScanCounts(),
            api_calls={},
            resources=0,
            errors=[],
        )
    held.release()


def scan_row(sessions: sessionmaker[Session], scan_id: int) -> Scan:
    """One scan as stored."""
    with sessions() as session:
        row = session.get(Scan, scan_id)
        assert row is not None
        return row


def scan_count(sessions: sessionmaker[Session]) -> int:
    """How many scans were recorded."""
    with sessions() as session:
        return len(session.scalars(select(Scan.id)).all())


def wait_for_pg_lock_free(sessions: sessionmaker[Session]) -> None:
    """Block until the server has let a dead session's scan lock go (it does so when that
    backend exits, a moment after its client died): taken and given back, waiting at most 30 s."""
    with engine_of(sessions).connect() as conn:
        conn.execute(text("SET lock_timeout = '30s'"))
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": scanlock.LOCK_KEY})
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": scanlock.LOCK_KEY})


@pytest.fixture
def held_scans() -> Iterator[list[HeldScan]]:
    """Holdings to release at the end whatever happens."""
    started: list[HeldScan] = []
    yield started
    for held in started:
        held.release()


def test_a_second_scan_is_refused_naming_the_first(
    sessions: sessionmaker[Session], clock: FakeClock, held_scans: list[HeldScan]
) -> None:
    """While a scan runs, another one is refused at once, told who runs it since when and which
    scan it is; it records nothing."""
    held_scans.append(begin(sessions, clock))
    clock.advance(minutes=1)

    with pytest.raises(ScanAlreadyRunningError, match=RUNNING) as refused:
        begin(sessions, clock, trigger="cli")

    assert refused.value.holder.scan_id == 1
    assert scan_count(sessions) == 1
    assert scan_row(sessions, 1).status == ScanStatus.running


def test_the_next_scan_starts_once_the_first_has_finished(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A finished scan lets the next one start, and its result is left as it was."""
    first = begin(sessions, clock)
    assert current_holder(sessions=sessions, now=clock()) is not None
    finish(first, clock)
    assert current_holder(sessions=sessions, now=clock()) is None

    second = begin(sessions, clock, trigger="cli")
    finish(second, clock)

    assert (second.scan.id, scan_row(sessions, 1).status) == (2, ScanStatus.complete)
    assert scan_row(sessions, 2).status == ScanStatus.complete


def test_the_holder_is_named_to_whoever_asks(
    sessions: sessionmaker[Session], clock: FakeClock, held_scans: list[HeldScan]
) -> None:
    """Before a scan is started (a Slack answer), who holds the lock can be asked, not guessed."""
    assert current_holder(sessions=sessions, now=clock()) is None
    held_scans.append(begin(sessions, clock))

    holder = current_holder(sessions=sessions, now=clock())

    assert holder is not None
    assert holder.describe() == "started by schedule at 2026-11-01 09:00:00 UTC, scan #1"
    assert holder.where is not None
    assert holder.where.startswith("pid ")


def test_scans_started_at_the_same_moment_run_one_at_a_time(
    sessions: sessionmaker[Session], clock: FakeClock, held_scans: list[HeldScan]
) -> None:
    """Four scans starting together (threads, one connection each): one runs, three are told."""
    gate = threading.Barrier(4)
    won: list[HeldScan] = []
    refused: list[ScanAlreadyRunningError] = []
    failed: list[BaseException] = []

    def start(i: int) -> None:
        gate.wait(30)
        try:
            won.append(begin(sessions, clock, trigger=f"t{i}"))
        except ScanAlreadyRunningError as exc:
            refused.append(exc)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failed.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    held_scans.extend(won)

    assert (len(won), len(refused), failed) == (1, 3, [])
    assert scan_count(sessions) == 1


def test_a_scan_left_running_with_the_lock_free_is_failed_at_the_next_start(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A `running` scan nobody holds the lock for (its process died) is marked failed, saying it
    was interrupted, when the next scan starts; the audit trail says so too."""
    with transaction(sessions) as session:
        orphan = services.start_scan(session=session, now=clock(), trigger="cli", scope={})

    clock.advance(hours=1)
    finish(begin(sessions, clock), clock)

    row = scan_row(sessions, orphan.id)
    assert row.status == ScanStatus.failed
    assert row.finished_at == clock()
    assert row.message == (
        "interrupted: it never finished (its process ended: the scan lock was free); marked "
        "failed when the next scan started"
    )
    assert [e.action for e in audit(sessions, object_type="scan", object_id=str(orphan.id))] == [
        "scan.started",
        "scan.failed",
    ]


def test_a_killed_scan_process_leaves_a_scan_that_the_next_start_marks_failed(
    sessions: sessionmaker[Session], clock: FakeClock, db_url: str
) -> None:
    """SIGKILL a process holding the lock mid-scan: the next scan starts (no waiting for a
    timeout) and marks the killed one failed as interrupted."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_url, clock().isoformat()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        killed_scan = int(child.stdout.readline())
        with pytest.raises(ScanAlreadyRunningError, match=r"started by cli .* scan #1\)"):
            begin(sessions, clock)
    finally:
        child.kill()
        child.wait(30)  # reaped: a zombie's pid still looks alive
    if backend(sessions) == "postgresql":
        wait_for_pg_lock_free(sessions)

    next_scan = begin(sessions, clock)
    finish(next_scan, clock)

    row = scan_row(sessions, killed_scan)
    assert row.status == ScanStatus.failed
    assert (row.message or "").startswith("interrupted: it never finished (its process")
    assert scan_row(sessions, next_scan.scan.id).status == ScanStatus.complete


def test_a_sqlite_holder_elsewhere_is_stale_once_its_heartbeat_stops(
    sessions: sessionmaker[Session], clock: FakeClock, held_scans: list[HeldScan]
) -> None:
    """SQLite: a holder whose process cannot be seen from here (another container) holds while
    it beats, and is replaced once no heartbeat came for longer than STALE_AFTER."""
    if backend(sessions) != "sqlite":
        pytest.skip("PostgreSQL's lock goes with its connection: no heartbeat is judged")
    first = begin(sessions, clock)
    held_scans.append(first)
    with transaction(sessions) as session:  # as if it ran in another container
        session.execute(update(ScanLockRow).values(process="linux/other-boot/1/4242/99"))

    clock.advance(minutes=4)
    assert first.beat()
    clock.advance(minutes=4)
    with pytest.raises(ScanAlreadyRunningError, match=RUNNING):
        begin(sessions, clock)
    clock.advance(minutes=2)
    second = begin(sessions, clock, trigger="cli")
    held_scans.append(second)

    assert second.scan.id == 2
    row = scan_row(sessions, first.scan.id)
    assert row.status == ScanStatus.failed
    assert row.message is not None
    assert "sent no heartbeat since 2026-11-01 09:04:00 UTC" in row.message


def test_a_sqlite_holder_on_this_host_whose_process_is_gone_is_replaced_at_once(
    sessions: sessionmaker[Session], clock: FakeClock, held_scans: list[HeldScan]
) -> None:
    """SQLite: a holder whose process has exited (same kernel, same PID namespace) is replaced
    without waiting for its heartbeat to age."""
    if backend(sessions) != "sqlite":
        pytest.skip("SQLite only: PostgreSQL's lock goes with its connection")
    first = begin(sessions, clock)
    held_scans.append(first)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    boot, namespace = scanlock.this_process().split("/")[1:3]
    with transaction(sessions) as session:
        session.execute(
            update(ScanLockRow).values(process=f"linux/{boot}/{namespace}/{gone.stdout.strip()}/1")
        )

    second = begin(sessions, clock, trigger="cli")
    held_scans.append(second)

    assert "is gone" in (scan_row(sessions, first.scan.id).message or "")


def test_a_scan_that_lost_its_lock_stores_nothing(
    sessions: sessionmaker[Session], clock: FakeClock, held_scans: list[HeldScan]
) -> None:
    """A scan whose lock went (connection killed, or it stalled and was replaced) is told so
    when it would store its result, and does not; the scan that replaced it is untouched."""
    first = begin(sessions, clock)
    held_scans.append(first)
    if backend(sessions) == "postgresql":
        with engine_of(sessions).connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": first._backend})
        wait_for_pg_lock_free(sessions)
    else:
        with transaction(sessions) as session:
            session.execute(update(ScanLockRow).values(process="linux/other-boot/1/4242/99"))
        clock.advance(minutes=6)
    second = begin(sessions, clock, trigger="cli")
    held_scans.append(second)

    with pytest.raises(ScanLockLostError, match=r"scan #1 lost the scan lock.*nothing it saw"):
        finish(first, clock)
    first.release()

    assert scan_row(sessions, 1).status == ScanStatus.failed
    assert current_holder(sessions=sessions, now=clock()) is not None  # still the second's
    with pytest.raises(ScanAlreadyRunningError, match=r"started by cli .* scan #2\)"):
        begin(sessions, clock)


def test_stale_after_is_longer_than_many_heartbeats() -> None:
    """A holder is never judged stale for missing a heartbeat or two (a busy SQLite writer)."""
    assert timedelta(seconds=scanlock.HEARTBEAT_SECONDS * 10) <= scanlock.STALE_AFTER
