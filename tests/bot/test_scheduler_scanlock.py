"""A scheduled scan due while another scan runs is skipped and logged, not failed."""

from __future__ import annotations

import queue

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.scheduler import ComplianceScheduler
from bot.server import build_services, scheduled_jobs
from bot.settings import Settings
from ledger.models import Scan
from ledger.scanlock import begin_scan
from rules.catalog import load_catalog
from tests.conftest import FakeClock
from tests.logs import captured_logs


def test_a_scheduled_scan_due_during_another_scan_is_skipped_and_logged(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """The cron scan finds a CLI scan running: it records nothing, the job does not fail, and
    the log says which scan it gave way to."""
    engine = sessions.kw["bind"]
    assert isinstance(engine, Engine)
    settings = Settings.model_validate({"schedule": {"scans": {"all": "0 2 * * *"}}})
    services = build_services(settings=settings, catalog=load_catalog(), engine=engine, clock=clock)
    jobs = scheduled_jobs(settings=settings, services=services, syncs=[])
    leader = ComplianceScheduler(
        engine=engine, jobs={"scan:all": jobs["scan:all"]}, poll_seconds=0.05
    )
    outcomes: queue.Queue[tuple[str, str]] = queue.Queue()
    leader.on_run(lambda job, outcome: outcomes.put((job, outcome)))
    held = begin_scan(sessions=sessions, clock=clock, trigger="cli", scope={})
    try:
        with captured_logs("info", "json") as logs:
            assert leader.step()
            assert leader.run_now("scan:all")
            ran = outcomes.get(timeout=60)
    finally:
        leader.stop()
        held.release()

    assert ran == ("scan:all", "ok")
    skipped = [r for r in logs.records() if r.get("event") == "scheduler.scan_skipped"]
    assert len(skipped) == 1, logs.text
    assert skipped[0]["level"] == "warning"
    assert skipped[0]["job"] == "scan:all"
    assert skipped[0]["running_scan"] == 1
    assert skipped[0]["reason"] == (
        "a scan is already running (started by cli at 2026-11-01 09:00:00 UTC, scan #1)"
    )
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Scan)) == 1
