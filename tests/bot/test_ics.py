"""The ICS feed covers what the README promises: every open finding's remediation due date."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from icalendar import Calendar
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.server import build_asgi, build_services
from ledger.models import Finding
from tests.bot.test_reminders import CATALOG, settings_for, sweep_for, task_dir
from tests.conftest import FakeClock
from tests.fakes.asgi import running
from tests.ledger.helpers import obs, scan

FEED_TOKEN = "a-feed-token-long-enough-for-any-minimum-0123456789"


def test_remediation_due_dates_beyond_the_horizon_are_in_the_feed(
    tmp_path: Path, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A low finding (due in 180 days) and an info one (365) appear though the horizon is 60."""
    root = task_dir(tmp_path / "mytasks")
    clock.now = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    scan(sessions, clock, [obs("vol-low", severity="low"), obs("vol-info", severity="info")])
    settings = settings_for(root, feed_token=FEED_TOKEN, horizon_days=60)
    services = build_services(
        settings=settings, catalog=CATALOG, engine=sessions.kw["bind"], clock=clock
    )
    sweep_for(root, sessions, clock, horizon_days=60).run_once()
    asgi = build_asgi(
        app=None,
        services=services,
        engine=sessions.kw["bind"],
        executor=ThreadPoolExecutor(max_workers=1),
    )

    with running(asgi) as url, httpx.Client(base_url=url, trust_env=False, timeout=10) as http:
        answer = http.get("/calendar.ics", params={"token": FEED_TOKEN})

    with sessions() as session:
        ids = {f.resource_id: f.id for f in session.scalars(select(Finding))}
    events = {str(e["uid"]): e for e in Calendar.from_ical(answer.content).walk("VEVENT")}
    due = {
        resource: events[f"finding-{finding_id}@compliancebot"].decoded("dtstart").isoformat()
        for resource, finding_id in ids.items()
    }
    assert due == {"vol-low": "2027-04-30", "vol-info": "2027-11-01"}
    task_days = sorted(
        e.decoded("dtstart").isoformat() for uid, e in events.items() if uid.startswith("task-")
    )
    assert task_days == ["2026-11-15", "2026-12-15"]  # occurrences stay within the horizon
