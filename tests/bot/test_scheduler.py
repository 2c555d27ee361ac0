"""The scheduler: jobs kept in the database, a missed run made up once, one leader per
database (a PostgreSQL advisory lock), and a standby that takes over when the leader dies."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from bot.scheduler import LOCK_KEY, ComplianceScheduler, JobSpec, retention, schedule_state
from bot.server import build_services, scheduled_jobs
from bot.settings import ConfigError, Settings, load_settings
from ledger import outbox
from ledger.db import transaction
from ledger.models import OutboxItem
from rules.catalog import load_catalog
from tests.conftest import FakeClock


def engine_of(sessions: sessionmaker[Session]) -> Engine:
    """The engine behind the session factory."""
    bind = sessions.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


class Runs:
    """Counts a job's runs and lets a test wait for one (an event, not a sleep)."""

    def __init__(self) -> None:
        self.count = 0
        self.outcomes: queue.Queue[tuple[str, str]] = queue.Queue()

    def job(self) -> None:
        self.count += 1

    def listener(self, job_id: str, outcome: str) -> None:
        self.outcomes.put((job_id, outcome))

    def next(self, timeout: float = 30.0) -> tuple[str, str]:
        return self.outcomes.get(timeout=timeout)


def hourly(runs: Runs) -> dict[str, JobSpec]:
    """One job, every hour."""
    return {"tick": JobSpec(IntervalTrigger(hours=1), runs.job)}


def scheduler(engine: Engine, jobs: dict[str, JobSpec], grace: int = 3600) -> ComplianceScheduler:
    """A scheduler on the test database."""
    return ComplianceScheduler(engine=engine, jobs=jobs, grace_seconds=grace, poll_seconds=0.05)


def backdate(engine: Engine, jobs: dict[str, JobSpec], hours: float) -> None:
    """Store the jobs with their next run `hours` ago, as after downtime."""
    first = scheduler(engine, jobs)
    assert first.step()
    assert first.scheduler is not None
    first.scheduler.pause()
    when = datetime.now(UTC) - timedelta(hours=hours)
    for job_id in jobs:
        first.scheduler.modify_job(job_id, next_run_time=when)
    first.stop()


def test_a_run_missed_while_down_runs_once_on_start(sessions: sessionmaker[Session]) -> None:
    """Hourly runs missed during 2.5 hours of downtime: one run on start (coalesced), and the
    next one stays on the hourly beat, half an hour away."""
    engine = engine_of(sessions)
    runs = Runs()
    backdate(engine, hourly(runs), hours=2.5)

    restarted = scheduler(engine, hourly(runs))
    restarted.on_run(runs.listener)
    assert restarted.step()
    outcome = runs.next()
    assert restarted.scheduler is not None
    job = restarted.scheduler.get_job("tick")
    restarted.stop()

    assert outcome == ("tick", "ok")
    assert runs.count == 1
    assert job.next_run_time > datetime.now(UTC) + timedelta(minutes=20)  # the phase is kept


def test_a_run_missed_by_more_than_the_grace_time_is_skipped(
    sessions: sessionmaker[Session],
) -> None:
    """Late beyond schedule.grace_seconds: reported missed, not run."""
    engine = engine_of(sessions)
    runs = Runs()
    backdate(engine, hourly(runs), hours=2.5)

    restarted = scheduler(engine, hourly(runs), grace=60)
    restarted.on_run(runs.listener)
    restarted.step()
    outcome = runs.next()
    restarted.stop()

    assert outcome == ("tick", "missed")
    assert runs.count == 0


def test_a_changed_trigger_replaces_the_job_and_a_removed_job_goes(
    sessions: sessionmaker[Session],
) -> None:
    """The stored jobs follow the configuration: new trigger kept, stale job deleted."""
    engine = engine_of(sessions)
    runs = Runs()
    first = scheduler(
        engine,
        {
            "tick": JobSpec(IntervalTrigger(hours=1), runs.job),
            "old": JobSpec(IntervalTrigger(hours=1), runs.job),
        },
    )
    first.step()
    first.stop()

    second = scheduler(engine, {"tick": JobSpec(IntervalTrigger(hours=6), runs.job)})
    second.step()
    assert second.scheduler is not None
    stored = {job.id: str(job.trigger) for job in second.scheduler.get_jobs()}
    second.stop()

    assert stored == {"tick": str(IntervalTrigger(hours=6))}


def test_scheduled_jobs_follow_the_configuration(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Scans per target on cron, retention, the audit check; an unknown target is an error
    naming the real ones."""
    settings = Settings.model_validate(
        {
            "aws": {"targets": [{"name": "prod"}, {"name": "dev"}]},
            "schedule": {"scans": {"prod": "0 */6 * * *", "all": "0 2 * * 0"}},
        }
    )
    services = build_services(
        settings=settings, catalog=load_catalog(), engine=engine_of(sessions), clock=clock
    )
    jobs = scheduled_jobs(settings=settings, services=services, syncs=[])

    with pytest.raises(ConfigError) as caught:
        load_settings(
            None,
            environ={
                "COMPLIANCEBOT_AWS__TARGETS": '[{"name": "prod"}, {"name": "dev"}]',
                "COMPLIANCEBOT_SCHEDULE__SCANS": '{"stage": "0 * * * *"}',
            },
        )

    assert sorted(jobs) == ["agents", "audit", "retention", "scan:all", "scan:prod", "snapshot"]
    assert (
        "COMPLIANCEBOT_SCHEDULE__SCANS: schedule.scans: no AWS target named 'stage'; "
        "targets: dev, prod (or 'all')"
    ) in str(caught.value)


def test_retention_prunes_old_delivered_items_only(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Delivered and old: gone. Pending, failed, or recent: kept."""
    with transaction(sessions) as session:
        for key in ("old-delivered", "old-pending", "new-delivered"):
            outbox.enqueue(
                session=session, sink="slack", kind="reply", key=key, payload={}, now=clock()
            )
        for item in session.scalars(select(OutboxItem)):
            if item.key.endswith("delivered"):
                item.status = "delivered"
                item.delivered_at = clock() - timedelta(
                    days=100 if item.key.startswith("old") else 1
                )

    pruned = retention(sessions=sessions, clock=clock, days=90)

    with sessions() as session:
        left = sorted(session.scalars(select(OutboxItem.key)))
    assert pruned["outbox"] == 1
    assert left == ["new-delivered", "old-pending"]


# ---- leadership on PostgreSQL -------------------------------------------------------------------

CANDIDATE = """
import sys, time
from ledger import db
from bot.scheduler import Leadership
engine = db.make_engine(sys.argv[1])
lead = Leadership(engine)
print("ready", flush=True)
while True:
    if lead.try_acquire():
        print("leader", flush=True)
        break
    time.sleep(0.05)
sys.stdin.read()  # hold the lock until told to stop or killed
"""


def lines(stream: IO[str]) -> queue.Queue[str]:
    """The lines a child prints, as they come."""
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            out.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    return out


@pytest.fixture
def pg_url(db_url: str) -> str:
    """Only on PostgreSQL: SQLite has one process and no election."""
    if not db_url.startswith("postgresql"):
        pytest.skip("leader election is a PostgreSQL feature (SQLite: one process)")
    return db_url


def candidate(url: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """A process that becomes the leader when it can, and says so."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
    child = subprocess.Popen(
        [sys.executable, "-c", CANDIDATE, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    out = lines(child.stdout)
    assert out.get(timeout=60) == "ready"
    return child, out


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """Candidate processes, killed at the end whatever happens."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        child.kill()
        child.wait(30)


def test_one_leader_and_a_standby_takes_over_when_it_is_killed(
    sessions: sessionmaker[Session], pg_url: str, children: list[subprocess.Popen[str]]
) -> None:
    """Two processes: one leads, the other waits; SIGKILL the leader and the other leads."""
    first, first_out = candidate(pg_url)
    children.append(first)
    assert first_out.get(timeout=60) == "leader"
    second, second_out = candidate(pg_url)
    children.append(second)
    here = ComplianceScheduler(engine=engine_of(sessions), jobs={})

    standby_before = second_out.empty()
    this_process_leads = here.step()
    first.kill()
    first.wait(30)
    took_over = second_out.get(timeout=60)

    assert standby_before
    assert not this_process_leads
    assert took_over == "leader"


def test_a_leader_that_loses_its_connection_steps_down(
    sessions: sessionmaker[Session], pg_url: str
) -> None:
    """The lock's connection is killed by the server: the scheduler stops, and leads again once
    the lock is free."""
    engine = engine_of(sessions)
    runs = Runs()
    leader = scheduler(engine, hourly(runs))
    assert leader.step()
    conn = leader.leadership._conn
    assert conn is not None
    pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with engine.connect() as admin:
        admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid or 0)})")

    still = leader.step()
    again = leader.step()
    leader.stop()

    assert not still
    assert again


def test_status_lists_the_stored_jobs_and_the_leader(sessions: sessionmaker[Session]) -> None:
    """`schedule status` reads the store and the lock; it never starts a scheduler."""
    engine = engine_of(sessions)
    runs = Runs()
    leader = scheduler(engine, hourly(runs))
    leader.step()

    state = schedule_state(engine)
    leader.stop()
    after = schedule_state(engine)

    assert [job_id for job_id, _ in state.jobs] == ["tick"]
    next_run = state.jobs[0][1]
    assert next_run is not None
    assert next_run > datetime.now(UTC)
    if engine.dialect.name == "postgresql":
        assert "holds the lock" in state.leader
        assert after.leader == "no leader (nothing runs)"
    else:
        assert state.leader == "SQLite: the one `serve` process"


def test_status_names_the_leading_replica_of_this_database_only(
    sessions: sessionmaker[Session], pg_url: str
) -> None:
    """`schedule status` names this database's leader (process and host), never another's."""
    engine = engine_of(sessions)
    server = pg_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    other = create_engine(f"{server}/postgres")  # staging beside prod on one server
    try:
        with other.connect() as staging:
            staging.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
            nobody = schedule_state(engine).leader
            here = scheduler(engine, {})
            assert here.step()
            named = schedule_state(engine).leader
            here.stop()
    finally:
        other.dispose()

    assert nobody == "no leader (nothing runs)"
    assert named.startswith(f"serve {os.getpid()} on {socket.gethostname()}"[:40])
    assert "holds the lock since 20" in named


def test_a_new_sweep_job_runs_at_once_not_an_interval_later(
    sessions: sessionmaker[Session],
) -> None:
    """at_once: a first-time leader runs the sweep now; the next run is an interval away."""
    engine = engine_of(sessions)
    runs = Runs()
    leader = scheduler(engine, {"sweep": JobSpec(IntervalTrigger(hours=1), runs.job, at_once=True)})
    leader.on_run(runs.listener)

    leader.step()
    outcome = runs.next()
    leader.stop()
    ((_, next_run),) = schedule_state(engine).jobs

    assert outcome == ("sweep", "ok")
    assert runs.count == 1
    assert next_run is not None
    assert next_run > datetime.now(UTC) + timedelta(minutes=50)
