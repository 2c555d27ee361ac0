"""Daily posture snapshots: what `compliancebot trends` shows for a day is the posture at its
end, taking a day again changes nothing, and the back-fill from the history matches what the
scheduler would have taken live."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, delete, func, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from ledger import db, history, services, snapshots
from ledger.db import transaction
from ledger.models import ControlSnapshot, Finding, PostureSnapshot
from ledger.services import LedgerError
from rules.catalog import load_catalog
from tests.conftest import FakeClock
from tests.ledger.helpers import ACCOUNT, REGION, obs

CATALOG = load_catalog()
ENCRYPTED = "164.312(a)(2)(iv)"  # HIPAA control citing ec2_volume_encrypted
SSH = "164.312(e)(1)"  # HIPAA control citing ec2_sg_ssh_open_to_world
RULES = ("ec2_volume_encrypted", "ec2_sg_ssh_open_to_world")
DAY1 = date(2026, 11, 1)


def scan_day(sessions: sessionmaker[Session], now: datetime, verdicts: dict[int, str]) -> None:
    """A complete scan: resource i gets verdict v for rule i % 2 (high, then critical)."""
    observations = [
        obs(
            f"vol-{i}",
            verdict=v,
            rule_id=RULES[i % 2],
            severity=("high", "critical")[i % 2],
        )
        for i, v in verdicts.items()
    ]
    with transaction(sessions) as session:
        started = services.start_scan(session=session, now=now, trigger="schedule", scope={})
        counts = services.upsert_from_scan(
            session=session,
            scan=started,
            observations=observations,
            covered={(r, ACCOUNT, REGION) for r in RULES},
            rule_ids=set(RULES),
            accounts={ACCOUNT},
            now=now,
        )
        services.finish_scan(
            session=session,
            scan=started,
            now=now,
            counts=counts,
            api_calls={"ec2": 1},
            resources=len(observations),
            errors=[],
        )


def finding_id(sessions: sessionmaker[Session], index: int) -> int:
    """The finding of resource `vol-<index>`."""
    with sessions() as session:
        found = session.scalar(select(Finding.id).where(Finding.resource_id == f"vol-{index}"))
    assert found is not None
    return found


def accept(sessions: sessionmaker[Session], index: int, now: datetime, days: int) -> None:
    """Accept the risk of resource `vol-<index>` until the end of a UTC day `days` ahead."""
    until = datetime.combine((now + timedelta(days=days)).date(), time.max, tzinfo=UTC)
    with transaction(sessions) as session:
        services.accept_risk(
            session=session,
            finding_id=finding_id(sessions, index),
            user="UCISO",
            reason="vendor fix pending",
            until=until,
            now=now,
        )


def live_day(sessions: sessionmaker[Session], clock: FakeClock, day: int) -> None:
    """Day `day` (0-based from DAY1) of a known story, its changes made between 09:00 and 17:00.

    Day 0: vol-0..vol-3 fail. Day 1: vol-1 accepted for 30 days. Day 2: vol-0 passes.
    Day 3: vol-0 fails again, vol-4 fails. Day 4: vol-2 claimed and resolved by a person.
    """
    clock.now = datetime.combine(DAY1 + timedelta(days=day), time(9), tzinfo=UTC)
    if day == 0:
        scan_day(sessions, clock(), {0: "fail", 1: "fail", 2: "fail", 3: "fail"})
    elif day == 1:
        accept(sessions, 1, clock(), 30)
    elif day == 2:
        scan_day(sessions, clock(), {0: "pass", 1: "fail", 2: "fail", 3: "fail"})
    elif day == 3:
        scan_day(sessions, clock(), {0: "fail", 1: "fail", 2: "fail", 3: "fail", 4: "fail"})
    elif day == 4:
        with transaction(sessions) as session:
            services.claim(
                session=session, finding_id=finding_id(sessions, 2), user="U1", now=clock()
            )
        clock.advance(hours=8)
        with transaction(sessions) as session:
            services.resolve(
                session=session,
                finding_id=finding_id(sessions, 2),
                user="U1",
                now=clock(),
                verify=False,
            )


def content(sessions: sessionmaker[Session]) -> dict[tuple[date, str], dict[str, Any]]:
    """Every snapshot's numbers (not when or how it was taken), with its controls."""
    with sessions() as session:
        rows = session.scalars(select(PostureSnapshot)).all()
        controls = session.scalars(select(ControlSnapshot)).all()
        out: dict[tuple[date, str], dict[str, Any]] = {}
        for r in rows:
            out[(r.day, r.framework)] = {
                "score": r.score,
                "states": (r.failing, r.accepted, r.passing, r.not_covered),
                "open": dict(r.open_by_severity),
                "accepted_findings": r.accepted_findings,
                "controls": {},
            }
        for c in controls:
            out[(c.day, c.framework)]["controls"][c.control] = (
                c.state,
                c.failing_findings,
                c.accepted_findings,
            )
    return out


def test_a_snapshot_is_the_posture_at_the_end_of_its_day(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """The snapshot of a past day shows each control's state and the open findings as they
    were at that day's end, equal to the posture rebuilt from the history then."""
    for day in range(4):
        live_day(sessions, clock, day)
    target = DAY1 + timedelta(days=1)  # vol-0, vol-2 high/critical failing, vol-1 accepted
    with transaction(sessions) as session:
        taken = snapshots.take_snapshot(session=session, catalog=CATALOG, day=target, now=clock())
    end = snapshots.day_end(target, "UTC")
    with sessions() as session:
        expected = history.posture_at(session=session, catalog=CATALOG, at=end)

    hipaa = next(fw for fw in taken if fw.framework == "hipaa")
    controls = {c.control: c for c in hipaa.controls}
    assert (controls[ENCRYPTED].state, controls[ENCRYPTED].failing_findings) == ("failing", 2)
    assert (controls[SSH].state, controls[SSH].failing_findings) == ("failing", 1)
    assert controls[SSH].accepted_findings == 1
    assert hipaa.open_by_severity == {"critical": 1, "high": 2, "medium": 0, "low": 0, "info": 0}
    assert hipaa.accepted_findings == 1
    for fw, posture in zip(taken, expected.frameworks, strict=True):
        assert fw.framework == posture.framework
        for mine, theirs in zip(fw.controls, posture.controls, strict=True):
            assert mine.control == theirs.control
            assert mine.failing_findings == theirs.failing_findings
            assert (mine.state == "failing") == (theirs.state == "failing")
            assert (mine.state == "not_covered") == (theirs.state == "not_covered")
        automated = fw.states["failing"] + fw.states["accepted"] + fw.states["passing"]
        assert fw.score == (
            None
            if not automated
            else round(100 * (automated - fw.states["failing"]) / automated, 1)
        )
    with sessions() as session:
        row = session.scalar(
            select(PostureSnapshot).where(
                PostureSnapshot.day == target, PostureSnapshot.framework == "hipaa"
            )
        )
        assert row is not None
        assert (row.at, row.taken_at, row.source) == (end, clock(), "live")
        assert row.open_by_severity == hipaa.open_by_severity


def test_an_acceptance_turns_a_control_accepted_until_it_lapses(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A control whose only failing finding is accepted shows as an accepted risk, and its
    finding no longer counts as open."""
    clock.now = datetime.combine(DAY1, time(9), tzinfo=UTC)
    scan_day(sessions, clock(), {1: "fail"})
    accept(sessions, 1, clock(), 2)
    with transaction(sessions) as session:
        taken = snapshots.take_snapshot(session=session, catalog=CATALOG, day=DAY1, now=clock())

    hipaa = next(fw for fw in taken if fw.framework == "hipaa")
    ssh = next(c for c in hipaa.controls if c.control == SSH)
    assert (ssh.state, ssh.failing_findings, ssh.accepted_findings) == ("accepted", 0, 1)
    assert sum(hipaa.open_by_severity.values()) == 0
    assert hipaa.states["accepted"] >= 1


def test_taking_a_day_again_replaces_it(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    """Today's snapshot taken in the morning and again after a fix is one snapshot per
    framework, showing the later numbers."""
    live_day(sessions, clock, 0)
    with transaction(sessions) as session:
        snapshots.take_snapshot(session=session, catalog=CATALOG, day=DAY1, now=clock())
    before = content(sessions)
    clock.advance(hours=2)
    scan_day(sessions, clock(), {0: "pass", 1: "fail", 2: "fail", 3: "fail"})
    with transaction(sessions) as session:
        snapshots.take_snapshot(session=session, catalog=CATALOG, day=DAY1, now=clock())
        snapshots.take_snapshot(session=session, catalog=CATALOG, day=DAY1, now=clock())
    after = content(sessions)

    with sessions() as session:
        total = session.scalar(select(func.count()).select_from(PostureSnapshot))
        controls = session.scalar(select(func.count()).select_from(ControlSnapshot))
    assert total == len(CATALOG.frameworks)
    assert controls == sum(len(fw.controls) for fw in CATALOG.frameworks.values())
    assert before[(DAY1, "hipaa")]["open"]["high"] == 2
    assert after[(DAY1, "hipaa")]["open"]["high"] == 1


def test_a_day_after_today_is_refused(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    """Asking for tomorrow's snapshot is an error naming the day and today."""
    with (
        pytest.raises(LedgerError, match="no snapshot of 2026-11-02: it is after today"),
        transaction(sessions) as session,
    ):
        snapshots.take_snapshot(
            session=session, catalog=CATALOG, day=DAY1 + timedelta(1), now=clock()
        )


def test_backfill_equals_the_snapshots_taken_live(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Each day's snapshot back-filled from the history has the numbers the scheduler took
    that evening, had it been running."""
    for day in range(5):
        live_day(sessions, clock, day)
        clock.now = datetime.combine(DAY1 + timedelta(days=day), time(23), tzinfo=UTC)
        with transaction(sessions) as session:
            snapshots.take_snapshot(
                session=session, catalog=CATALOG, day=clock().date(), now=clock()
            )
    live = content(sessions)
    with transaction(sessions) as session:
        session.execute(delete(ControlSnapshot))
        session.execute(delete(PostureSnapshot))

    clock.now = datetime.combine(DAY1 + timedelta(days=5), time(0, 5), tzinfo=UTC)
    filled = snapshots.backfill(sessions=sessions, catalog=CATALOG, now=clock())

    assert filled == [DAY1 + timedelta(days=d) for d in range(5)]
    assert content(sessions) == live
    with sessions() as session:
        sources = set(session.scalars(select(PostureSnapshot.source)))
    assert sources == {"backfill"}
    hipaa = [live[(DAY1 + timedelta(days=d), "hipaa")]["open"] for d in range(5)]
    assert [h["high"] + h["critical"] for h in hipaa] == [4, 3, 2, 4, 3]


def test_the_daily_job_backfills_once_then_keeps_up(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """The first run fills every day since the first scan and takes today's; the next night
    only yesterday (taken before it was over) is taken again, at its end."""
    for day in range(3):
        live_day(sessions, clock, day)
    clock.now = datetime.combine(DAY1 + timedelta(days=3), time(0, 5), tzinfo=UTC)

    first = snapshots.daily(sessions=sessions, catalog=CATALOG, clock=clock, timezone="UTC")
    clock.advance(days=1)
    second = snapshots.daily(sessions=sessions, catalog=CATALOG, clock=clock, timezone="UTC")
    third = snapshots.daily(sessions=sessions, catalog=CATALOG, clock=clock, timezone="UTC")

    assert (first, second, third) == ({"backfilled": 3}, {"backfilled": 1}, {"backfilled": 0})
    with sessions() as session:
        days = sorted(set(session.scalars(select(PostureSnapshot.day))))
        yesterday = session.scalar(
            select(PostureSnapshot).where(PostureSnapshot.day == DAY1 + timedelta(days=3))
        )
    assert days == [DAY1 + timedelta(days=d) for d in range(5)]
    assert yesterday is not None
    assert yesterday.at == snapshots.day_end(DAY1 + timedelta(days=3), "UTC")


def test_days_follow_the_schedule_time_zone(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """In America/New_York, a scan at 02:00 UTC on Nov 2 belongs to Nov 1, and that day's
    snapshot is the posture at its local midnight."""
    clock.now = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
    scan_day(sessions, clock(), {0: "fail"})
    clock.now = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)

    filled = snapshots.backfill(
        sessions=sessions, catalog=CATALOG, now=clock(), timezone="America/New_York"
    )

    assert filled == [date(2026, 11, 1), date(2026, 11, 2)]
    with sessions() as session:
        row = session.scalar(
            select(PostureSnapshot).where(
                PostureSnapshot.day == date(2026, 11, 1), PostureSnapshot.framework == "hipaa"
            )
        )
    assert row is not None
    assert row.at == datetime(2026, 11, 2, 4, 59, 59, 999999, tzinfo=UTC)  # EST from Nov 1
    assert row.open_by_severity["high"] == 1


def test_an_empty_ledger_has_nothing_to_backfill(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Before the first scan there is no day to fill and the job writes nothing."""
    assert snapshots.daily(sessions=sessions, catalog=CATALOG, clock=clock, timezone="UTC") == {
        "backfilled": 0
    }
    with sessions() as session:
        assert not snapshots.has_snapshots(session=session)


def _alembic(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def test_the_migration_downgrades_and_upgrades_again(db_url: str) -> None:
    """0012 adds the two snapshot tables, can be undone (both dropped) and redone."""
    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)
        assert {"posture_snapshots", "control_snapshots"} <= set(inspect(engine).get_table_names())
        command.downgrade(_alembic(engine), "0011")
        assert db.current_revision(engine) == "0011"
        assert not {"posture_snapshots", "control_snapshots"} & set(
            inspect(engine).get_table_names()
        )
        db.upgrade(engine)
        assert {"posture_snapshots", "control_snapshots"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
