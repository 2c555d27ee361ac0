"""The scheduler of `serve`: scans on cron, ticket sync and polling, reminder sweeps, retention.

APScheduler 3 with its SQLAlchemy job store in our database (table `apscheduler_jobs`, made by
migration 0007), so a restart neither loses nor duplicates jobs; a job missed while nothing
ran runs once (coalesced) if it is at most `schedule.grace_seconds` late.

One scheduler per database, however many replicas run `serve`: APScheduler 3 does not
coordinate schedulers sharing a job store, so the replicas elect one. On PostgreSQL the
leader holds a session advisory lock on a dedicated connection; the others try again every
`schedule.leader_poll_seconds` and take over within that long when the leader dies (its
connection, and so its lock, goes with it). On SQLite there is one process, and it says so.
Every job is idempotent (the outbox's unique keys, the sweep's recorded state), so a
takeover in the middle of a run posts nothing twice.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ledger.db import transaction
from ledger.retention import prune
from ledger.scanlock import ScanAlreadyRunningError

log = structlog.get_logger(__name__)

# pg_advisory_lock key: "compliancebot scheduler" (any constant shared by every replica).
LOCK_KEY = 0x636F6D706C  # "compl"
TABLE = "apscheduler_jobs"
# The lock connection's application_name: how `schedule status` names the leading replica.
LEADER_TAG = "compliancebot serve "


def leader_name() -> str:
    """`compliancebot serve <pid>@<host>`, within PostgreSQL's 63-byte application_name."""
    return f"{LEADER_TAG}{os.getpid()}@{socket.gethostname()}"[:63]


# What a job runs, by job id; filled by the process that holds the leadership. Jobs are
# stored as a reference to `run_job` and their id, never as pickled closures.
_RUNNERS: dict[str, Callable[[], Any]] = {}


def run_job(job_id: str) -> Any:
    """The entry point every stored job calls."""
    runner = _RUNNERS.get(job_id)
    if runner is None:
        log.warning("scheduler.unknown_job", job=job_id)
        return None
    try:
        return runner()
    except ScanAlreadyRunningError as exc:
        # A scan job due while another scan runs (from the CLI, Slack, another target's job):
        # this run is skipped, not failed; the next one is due on its cron as usual.
        holder = exc.holder
        log.warning(
            "scheduler.scan_skipped",
            job=job_id,
            reason=str(exc),
            running_scan=holder.scan_id,
            running_where=holder.where,
        )
        return None


@dataclass(frozen=True)
class JobSpec:
    """A job: its trigger and what it runs."""

    trigger: BaseTrigger
    run: Callable[[], Any]
    # Run as soon as the job is first stored, not one interval later (a sweep, a sync).
    at_once: bool = False


class Leadership:
    """Who runs the scheduler: the holder of a PostgreSQL advisory lock, or the only process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.single = engine.dialect.name != "postgresql"
        self._conn: Connection | None = None

    @property
    def held(self) -> bool:
        """Whether this process is the leader."""
        return self.single or self._conn is not None

    def try_acquire(self) -> bool:
        """Become the leader if nobody is; True if this process is the leader now."""
        if self.held:
            return True
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            conn.execute(
                text("SELECT set_config('application_name', :n, false)"), {"n": leader_name()}
            )
            got = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
            )
        except SQLAlchemyError:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def alive(self) -> bool:
        """Whether the leadership still holds (the lock's connection answers)."""
        if self.single:
            return True
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
        except SQLAlchemyError:
            self._drop()
            return False
        return True

    def release(self) -> None:
        """Give the leadership up (closing the connection releases the lock)."""
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                conn.close()


class ComplianceScheduler:
    """Elects itself, then runs the jobs; steps down (and stops them) when it loses the lock."""

    def __init__(
        self,
        *,
        engine: Engine,
        jobs: Mapping[str, JobSpec],
        timezone: str = "UTC",
        grace_seconds: int = 3600,
        poll_seconds: float = 5.0,
    ) -> None:
        self.engine = engine
        self.jobs = dict(jobs)
        self.timezone = timezone
        self.grace_seconds = grace_seconds
        self.poll_seconds = poll_seconds
        self.leadership = Leadership(engine)
        self.scheduler: BackgroundScheduler | None = None
        # (job id, "ok" | "failed" | "missed"): what happened to each due run, newest last.
        self.ran: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[str, str], None]] = []

    # ---- the election loop ----------------------------------------------------------------------

    def start(self) -> None:
        """Run the election loop in a thread (at once the scheduler, on SQLite)."""
        if self.leadership.single:
            log.info(
                "scheduler.single_process",
                note="SQLite database: this process runs the scheduler; run one `serve` only",
            )
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the jobs (waiting for running ones) and give the leadership up."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
        self._step_down(wait=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("scheduler.step_failed")
            self._stop.wait(self.poll_seconds)

    def step(self) -> bool:
        """One turn of the election: lead if possible, step down if the lock is gone."""
        if self.scheduler is not None:
            if not self.leadership.alive():
                log.warning("scheduler.leadership_lost")
                self._step_down(wait=False)
            return self.scheduler is not None
        if self.leadership.try_acquire():
            self._lead()
            return True
        return False

    # ---- leading --------------------------------------------------------------------------------

    def _lead(self) -> None:
        _RUNNERS.clear()
        _RUNNERS.update({job_id: spec.run for job_id, spec in self.jobs.items()})
        scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename=TABLE)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": self.grace_seconds,
            },
            timezone=self.timezone,
        )
        scheduler.add_listener(
            self._on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED
        )
        scheduler.start(paused=True)
        self._sync_jobs(scheduler)
        scheduler.resume()
        self.scheduler = scheduler
        log.info("scheduler.leading", jobs=sorted(self.jobs))

    def _sync_jobs(self, scheduler: BackgroundScheduler) -> None:
        """Make the stored jobs what the configuration says, keeping the due time of a job
        whose trigger did not change (so a run missed while down is not forgotten)."""
        stored = {job.id: job for job in scheduler.get_jobs()}
        for job_id in stored:
            if job_id not in self.jobs:
                scheduler.remove_job(job_id)
                log.info("scheduler.job_removed", job=job_id)
        for job_id, spec in self.jobs.items():
            old = stored.get(job_id)
            if old is not None and str(old.trigger) == str(spec.trigger):
                if old.misfire_grace_time != self.grace_seconds:  # the grace time changed
                    scheduler.modify_job(job_id, misfire_grace_time=self.grace_seconds)
                continue
            extra: dict[str, Any] = {}
            if spec.at_once:
                extra["next_run_time"] = datetime.now(UTC)
            scheduler.add_job(
                run_job,
                trigger=spec.trigger,
                args=[job_id],
                id=job_id,
                name=job_id,
                replace_existing=True,
                **extra,
            )

    def _step_down(self, *, wait: bool) -> None:
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            try:
                # APScheduler 3's thread looks for due jobs once more after shutdown(), with its
                # executors already closed: a run due then would be marked done without running.
                # Detached from the store first, it finds nothing to take.
                scheduler.pause()
                scheduler.remove_jobstore("default", shutdown=False)
                scheduler.shutdown(wait=wait)
            except Exception:  # already stopped, or its store is gone
                log.warning("scheduler.shutdown_failed", exc_info=True)
        self.leadership.release()

    def on_run(self, listener: Callable[[str, str], None]) -> None:
        """Be told what happened to a due run: (job id, "ok" | "failed" | "missed")."""
        self._listeners.append(listener)

    def _on_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            outcome = "missed"
            log.warning("scheduler.job_missed", job=event.job_id, due=str(event.scheduled_run_time))
        elif event.exception is not None:
            outcome = "failed"
            log.error("scheduler.job_failed", job=event.job_id, error=str(event.exception))
        else:
            outcome = "ok"
        self.ran.append((event.job_id, outcome))
        for listener in self._listeners:
            listener(event.job_id, outcome)

    def run_now(self, job_id: str) -> bool:
        """Bring a job forward to now (a webhook's change to apply); False if not leading."""
        scheduler = self.scheduler
        if scheduler is None or scheduler.get_job(job_id) is None:
            return False
        scheduler.modify_job(job_id, next_run_time=datetime.now(scheduler.timezone))
        return True


def retention(
    *, sessions: sessionmaker[Session], clock: Callable[[], datetime], days: int
) -> dict[str, int]:
    """Delete delivered outbox items older than `days`, and handled event ids over a week old
    (`ledger.retention.prune`). The audit trail is append-only and never pruned."""
    with transaction(sessions) as session:
        pruned = prune(session=session, now=clock(), outbox_days=days)
    log.info("retention.pruned", **pruned)
    return pruned


def cron(expression: str, timezone: str) -> CronTrigger:
    """A crontab expression in a time zone."""
    return CronTrigger.from_crontab(expression, timezone=timezone)


def every(seconds: float) -> IntervalTrigger:
    """Every so many seconds."""
    return IntervalTrigger(seconds=seconds)


@dataclass(frozen=True)
class ScheduleState:
    """What the scheduler holds: its jobs' next runs, and who leads."""

    jobs: list[tuple[str, datetime | None]]  # (job id, next run; None: paused)
    leader: str  # "no leader (nothing runs)", "serve 4242 on web-1 holds the lock since ...", ...


def _leader_text(row: Any) -> str:
    """`serve 4242 on web-1 holds the lock since 2026-12-03 09:00:00 UTC`, from pg_stat_activity."""
    pid, name, since = row
    replica = f"PostgreSQL backend {pid}"
    if name and str(name).startswith(LEADER_TAG):
        process, _, host = str(name).removeprefix(LEADER_TAG).partition("@")
        replica = f"serve {process} on {host or '?'}"
    when = f" since {since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if since else ""
    return f"{replica} holds the lock{when}"


def schedule_state(engine: Engine) -> ScheduleState:
    """Read the job store and the lock without starting a scheduler (safe beside a leader)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT id, next_run_time FROM {TABLE} ORDER BY next_run_time, id")  # noqa: S608 - a constant
        ).all()
        if engine.dialect.name == "postgresql":
            # An advisory lock on a bigint key shows as classid = high 32 bits, objid = low;
            # advisory locks are per database, so replicas of another database (staging beside
            # prod on one server) hold the same key there and must not be named here.
            row = conn.execute(
                text(
                    "SELECT l.pid, a.application_name, a.backend_start FROM pg_locks l "
                    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.objid = :low AND l.classid = :high "
                    "AND l.database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                ),
                {"low": LOCK_KEY & 0xFFFFFFFF, "high": LOCK_KEY >> 32},
            ).first()
            leader = _leader_text(row) if row else "no leader (nothing runs)"
        else:
            leader = "SQLite: the one `serve` process"
    jobs = [
        (str(job_id), datetime.fromtimestamp(float(at), UTC) if at is not None else None)
        for job_id, at in rows
    ]
    return ScheduleState(jobs=jobs, leader=leader)
