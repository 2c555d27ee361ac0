"""One scan at a time across processes, and no scan left `running` by a process that died.

A scheduled, a CLI and a Slack scan may start at once in different processes, and two of them
inserting the same new finding made the second fail. `hold_scan` takes the scan lock for the
scan's whole run, or refuses at once with `ScanAlreadyRunningError` naming the holder.

PostgreSQL: a session-level advisory lock on `LOCK_KEY`, held on a connection of its own for
the scan's duration. The server lets go of it when that connection goes, however the process
ends (SIGKILL, out of memory, a lost host), so there is no timeout to tune and no takeover of
a live scan: while the lock is free no scan runs, and any scan row still `running` is stale. A
transaction-level lock would not do: a scan spans several transactions and holds none open
while it collects. The `scan_lock` row is written as well, only to name the holder. (Like the
scheduler's leader lock, it needs a real session: not PgBouncer's transaction pooling.)

SQLite has no advisory locks, so the `scan_lock` row is the lock, taken by a conditional
UPDATE inside a write transaction that begins with a write (SQLite runs one writer at a
time, so reading the holder and taking its place cannot interleave with another taker). A
holding is stale when its process is gone, or its heartbeat (written every
`HEARTBEAT_SECONDS`) is older than `STALE_AFTER`. "Gone" is decided only where it can be: the
same kernel and PID namespace, where /proc shows the pid dead, a zombie, or another process
that reused the pid (its start time differs; containers reuse pid 1). A process in another
container on a shared volume is judged by its heartbeat alone; hosts' clocks must agree to
well within `STALE_AFTER`.

Whoever takes the lock marks every scan still `running` as failed ("interrupted"): only the
holder has a running scan. A holder that lost its lock (its connection dropped, or it stalled
past `STALE_AFTER` and was replaced) learns it in `HeldScan.resume`, in the transaction that
would store its result, so it stores nothing beside another scan.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ledger import services
from ledger.db import transaction
from ledger.models import Scan, ScanLockRow, ScanStatus
from rules.errors import CompliancebotError

log = structlog.get_logger(__name__)
Clock = Callable[[], datetime]

# pg_advisory_lock key: the ASCII bytes of "compscan" (the scheduler's leader lock is another).
LOCK_KEY = int.from_bytes(b"compscan", "big")
HEARTBEAT_SECONDS = 30.0
# Ten missed heartbeats: a busy SQLite writer (busy_timeout 10 s) delays a few, never ten.
STALE_AFTER = timedelta(minutes=5)
_ROW = 1
# Whether a session-level advisory lock on LOCK_KEY is held in this database, by anyone or by
# one backend. A bigint key shows as classid = high 32 bits, objid = low 32 bits, objsubid = 1.
_PG_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND classid = :high AND objid = :low AND objsubid = 1 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_KEY = {"high": LOCK_KEY >> 32, "low": LOCK_KEY & 0xFFFFFFFF}


@dataclass(frozen=True)
class Holder:
    """Who holds the scan lock, as the refusal names it."""

    scan_id: int | None
    trigger: str | None
    acquired_at: datetime | None
    where: str | None  # "pid 4242 on web-1"

    def describe(self) -> str:
        """`started by schedule at 2026-12-04 09:00:00 UTC, scan #12`."""
        if self.scan_id is None or self.acquired_at is None:
            return "it is just starting"
        at = self.acquired_at.astimezone(UTC)
        return (
            f"started by {self.trigger or '?'} at {at:%Y-%m-%d %H:%M:%S} UTC, scan #{self.scan_id}"
        )


class ScanAlreadyRunningError(CompliancebotError):
    """Another scan holds the scan lock; this one did not start."""

    def __init__(self, holder: Holder) -> None:
        self.holder = holder
        super().__init__(f"a scan is already running ({holder.describe()})")


class ScanLockLostError(CompliancebotError):
    """The scan lost its lock before storing its result, so it stored nothing."""


# ---- this process, and whether another one still lives -------------------------------------


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a process, from /proc; None if none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rpartition(")")[2].split()  # the name before ")" may hold spaces
    return (fields[0], fields[19]) if len(fields) > 19 else None


def this_process() -> str:
    """This process, told apart from any other, even one reusing its pid later.

    `linux/<boot id>/<pid namespace>/<pid>/<start time>`, or `host/<hostname>/<pid>` without
    /proc.
    """
    pid = os.getpid()
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = "".join(c for c in str(Path("/proc/self/ns/pid").readlink()) if c.isdigit())
    except OSError:
        return f"host/{socket.gethostname()}/{pid}"[:255]
    stat = _stat(pid)
    return f"linux/{boot}/{namespace}/{pid}/{stat[1] if stat else '?'}"


def _where() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"[:255]


def alive(process: str) -> bool | None:
    """Whether the process `this_process()` once named still runs; None when it cannot be
    told from here (another host, container or kernel boot)."""
    mine = this_process()
    if process == mine:
        return True
    kind, _, rest = process.partition("/")
    here = mine.split("/")
    if kind != here[0]:
        return None
    return _alive_linux(rest, here) if kind == "linux" else _alive_host(rest, here)


def _alive_linux(rest: str, here: list[str]) -> bool | None:
    parts = rest.split("/")  # boot id, pid namespace, pid, start time
    if len(parts) != 4 or parts[:2] != here[1:3] or not parts[2].isdigit():
        return None
    stat = _stat(int(parts[2]))
    return stat is not None and stat[0] not in {"Z", "X"} and stat[1] == parts[3]


def _alive_host(rest: str, here: list[str]) -> bool | None:
    host, _, pid = rest.rpartition("/")
    if host != here[1] or not pid.isdigit() or int(pid) <= 0:
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it exists
        return True
    return True


# ---- the lock ----------------------------------------------------------------------------------


def _engine(sessions: sessionmaker[Session]) -> Engine:
    bind = sessions.kw.get("bind")
    if not isinstance(bind, Engine):
        raise TypeError("the scan lock needs sessions bound to an Engine")
    return bind


def _holder(row: ScanLockRow | None) -> Holder:
    if row is None or row.token is None:
        return Holder(None, None, None, None)
    return Holder(row.scan_id, row.trigger, row.acquired_at, row.holder)


def _stale(row: ScanLockRow, now: datetime, stale_after: timedelta) -> str | None:
    """Why a SQLite holding is stale, or None while it holds."""
    where = row.holder or "an unknown process"
    if alive(row.process or "") is False:
        return f"its process, {where}, is gone"
    beat = row.heartbeat_at or row.acquired_at
    if beat is None or now - beat > stale_after:
        since = f"{beat.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if beat else "it started"
        return f"its process, {where}, sent no heartbeat since {since}"
    return None


def _pg_held(session: Session | Connection, backend: int | None = None) -> bool:
    query, params = _PG_HELD, dict(_KEY)
    if backend is not None:
        query, params = query + " AND pid = :pid", {**params, "pid": backend}
    return bool(session.execute(text(query), params).scalar())


def current_holder(
    *, sessions: sessionmaker[Session], now: datetime, stale_after: timedelta = STALE_AFTER
) -> Holder | None:
    """Who holds the scan lock now; None if nobody does (or only a stale holding is left)."""
    postgres = _engine(sessions).dialect.name == "postgresql"
    with sessions() as session:
        row = session.get(ScanLockRow, _ROW)
        if postgres:
            return _holder(row) if _pg_held(session) else None
        if row is None or row.token is None or _stale(row, now, stale_after) is not None:
            return None
        return _holder(row)


class HeldScan:
    """The scan lock, held for one scan: `scan` is the scan it was taken for."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        token: str,
        scan: Scan,
        conn: Connection | None,
        backend: int | None,
    ) -> None:
        self.sessions, self.clock, self.token, self.scan = sessions, clock, token, scan
        self._conn, self._backend = conn, backend  # PostgreSQL: the lock's connection
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None

    def beat(self) -> bool:
        """Say that the holding lives; False when it is found lost (a warning is logged)."""
        try:
            if self._conn is not None:  # a query also keeps idle_session_timeout away
                self._conn.execute(text("SELECT 1"))
            with transaction(self.sessions) as session:
                mine = session.execute(
                    update(ScanLockRow)
                    .where(ScanLockRow.id == _ROW, ScanLockRow.token == self.token)
                    .values(heartbeat_at=self.clock())
                    .returning(ScanLockRow.id)
                ).first()
        except SQLAlchemyError as exc:  # the next beat tries again; `resume` decides
            log.warning("scanlock.heartbeat_failed", scan_id=self.scan.id, error=type(exc).__name__)
            return self._conn is None
        if mine is None and self._conn is None:
            log.warning("scanlock.lost", scan_id=self.scan.id, why="another scan took the lock")
            return False
        return True

    def start_heartbeat(self, every: float = HEARTBEAT_SECONDS) -> None:
        """Beat every `every` seconds in a thread until `release`."""

        def run() -> None:
            while not self._stop.wait(every):
                self.beat()

        self._beating = threading.Thread(target=run, name=f"scan-{self.scan.id}-lock", daemon=True)
        self._beating.start()

    def running(self, session: Session) -> Scan | None:
        """The scan, row-locked, if it is still `running` (nobody marked it interrupted)."""
        scan = session.get(Scan, self.scan.id, with_for_update=True, populate_existing=True)
        return scan if scan is not None and scan.status == ScanStatus.running else None

    def resume(self, session: Session) -> Scan:
        """The scan, to store its result in the caller's transaction; ScanLockLostError if the
        lock was lost meanwhile (another scan may be running: nothing may be stored)."""
        if self._conn is not None:
            held = _pg_held(session, self._backend)
        else:
            held = (
                session.execute(
                    update(ScanLockRow)
                    .where(ScanLockRow.id == _ROW, ScanLockRow.token == self.token)
                    .values(heartbeat_at=self.clock())
                    .returning(ScanLockRow.id)
                ).first()
                is not None
            )
        scan = self.running(session)
        if not held or scan is None:
            raise ScanLockLostError(
                f"scan #{self.scan.id} lost the scan lock before storing its result (its "
                "database connection dropped, or it stalled and another scan took over); "
                "nothing it saw was stored: scan again"
            )
        return scan

    def release(self) -> None:
        """Let the lock go (a failure here leaves a holding that turns stale on its own)."""
        self._stop.set()
        if self._beating is not None:
            self._beating.join()
        conn, self._conn = self._conn, None
        if conn is not None:  # unlocked first: the row is cleared only if still ours
            with contextlib.suppress(SQLAlchemyError):
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            with contextlib.suppress(SQLAlchemyError):
                conn.close()
        try:
            with transaction(self.sessions) as session:
                session.execute(
                    update(ScanLockRow)
                    .where(ScanLockRow.id == _ROW, ScanLockRow.token == self.token)
                    .values(token=None)
                )
        except SQLAlchemyError as exc:
            log.warning("scanlock.release_failed", scan_id=self.scan.id, error=type(exc).__name__)


def _interrupt_stale(session: Session, *, now: datetime, row: ScanLockRow, why: str) -> list[int]:
    """Mark every scan still `running` failed: only the lock's holder has one, and we are it."""
    stale = session.scalars(
        select(Scan).where(Scan.status == ScanStatus.running).order_by(Scan.id).with_for_update()
    ).all()
    for scan in stale:
        reason = why if row.scan_id == scan.id else "its process ended: the scan lock was free"
        services.fail_scan(
            session=session,
            scan=scan,
            now=now,
            message=f"interrupted: it never finished ({reason}); marked failed when the next "
            "scan started",
        )
    return [s.id for s in stale]


def begin_scan(
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    trigger: str,
    scope: dict[str, Any],
    stale_after: timedelta = STALE_AFTER,
) -> HeldScan:
    """Take the scan lock and record the scan it is for (and mark interrupted scans failed);
    ScanAlreadyRunningError, naming the holder, if another scan holds it."""
    engine = _engine(sessions)
    postgres = engine.dialect.name == "postgresql"
    conn: Connection | None = None
    backend: int | None = None
    if postgres:
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            conn.execute(
                text("SELECT set_config('application_name', :n, false)"),
                {"n": f"compliancebot scan {os.getpid()}@{socket.gethostname()}"[:63]},
            )
            got = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
            )
            if got:
                backend = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        except SQLAlchemyError:
            conn.close()
            raise
        if not got:
            conn.close()
            with sessions() as session:
                raise ScanAlreadyRunningError(_holder(session.get(ScanLockRow, _ROW)))
    token = uuid.uuid4().hex
    try:
        with transaction(sessions) as session:
            # A write first: on SQLite it takes the database's write lock, so nobody else can
            # take the scan lock between our reading the holder and replacing it.
            insert = pg_insert if postgres else sqlite_insert
            session.execute(insert(ScanLockRow).values(id=_ROW).on_conflict_do_nothing())
            row = session.get(ScanLockRow, _ROW, populate_existing=True, with_for_update=True)
            assert row is not None
            now = clock()
            seen, why = row.token, "its process ended: the scan lock was free"
            if not postgres and seen is not None:
                stale = _stale(row, now, stale_after)
                if stale is None:
                    raise ScanAlreadyRunningError(_holder(row))
                why = stale
                log.warning("scanlock.stale_holder_replaced", scan_id=row.scan_id, why=stale)
            interrupted = _interrupt_stale(session, now=now, row=row, why=why)
            scan = services.start_scan(session=session, now=now, trigger=trigger, scope=scope)
            took = session.execute(
                update(ScanLockRow)
                .where(
                    ScanLockRow.id == _ROW,
                    ScanLockRow.token.is_(None) if seen is None else ScanLockRow.token == seen,
                )
                .values(
                    token=token,
                    scan_id=scan.id,
                    trigger=trigger[:32],
                    holder=_where(),
                    process=this_process()[:255],
                    acquired_at=now,
                    heartbeat_at=now,
                )
                .returning(ScanLockRow.id)
            ).first()
            if took is None:  # cannot happen under the write lock; refuse rather than share
                session.expire(row)
                raise ScanAlreadyRunningError(_holder(session.get(ScanLockRow, _ROW)))
    except BaseException:
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            conn.close()
        raise
    if interrupted:
        log.warning("scan.interrupted_marked_failed", scans=interrupted, why=why)
    return HeldScan(
        sessions=sessions, clock=clock, token=token, scan=scan, conn=conn, backend=backend
    )


@contextlib.contextmanager
def hold_scan(
    *,
    sessions: sessionmaker[Session],
    clock: Clock,
    trigger: str,
    scope: dict[str, Any],
    stale_after: timedelta = STALE_AFTER,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> Iterator[HeldScan]:
    """`begin_scan`, with the heartbeat beating and the lock released however the block ends."""
    held = begin_scan(
        sessions=sessions, clock=clock, trigger=trigger, scope=scope, stale_after=stale_after
    )
    try:
        held.start_heartbeat(heartbeat_seconds)
        yield held
    finally:
        held.release()
