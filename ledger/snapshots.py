"""Daily posture snapshots per framework and control: written once a day by the scheduler and
back-filled from the finding history (`ledger.history`), so that trends never rescan."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from ledger import history
from ledger.db import transaction
from ledger.models import ControlSnapshot, PostureSnapshot
from ledger.services import LedgerError
from rules.catalog import Catalog, Severity

log = structlog.get_logger(__name__)

CONTROL_STATES = ("failing", "accepted", "passing", "not_covered")


@dataclass(frozen=True)
class ControlDay:
    """One control at the snapshot's instant."""

    control: str
    state: str  # one of CONTROL_STATES
    failing_findings: int
    accepted_findings: int


@dataclass(frozen=True)
class FrameworkDay:
    """One framework at the snapshot's instant."""

    framework: str
    score: float | None
    states: dict[str, int]  # controls per state, every state present
    open_by_severity: dict[str, int]  # every known severity present, worst first
    accepted_findings: int
    controls: tuple[ControlDay, ...]


def score(*, failing: int, accepted: int, passing: int) -> float | None:
    """The share of automated controls not failing, in %, one decimal; None without any (the
    one formula: reports and snapshots both use it)."""
    automated = failing + accepted + passing
    if not automated:
        return None
    return round(100 * (accepted + passing) / automated, 1)


def day_end(day: date, timezone: str) -> datetime:
    """The last instant of `day` in `timezone` (the next local midnight, less a microsecond)."""
    zone = ZoneInfo(timezone)
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone) - timedelta(
        microseconds=1
    )


def local_day(at: datetime, timezone: str) -> date:
    """The day `at` falls on in `timezone`."""
    return at.astimezone(ZoneInfo(timezone)).date()


def posture_on(
    *, session: Session, catalog: Catalog, at: datetime, frameworks: Sequence[str] | None = None
) -> list[FrameworkDay]:
    """Every framework's controls and open findings at `at`, rebuilt from the finding history:
    one read of the findings as they stood (`history.findings_at`), shared by all frameworks."""
    rows = history.findings_at(session=session, at=at)
    posture = history.posture_at(
        session=session, catalog=catalog, at=at, frameworks=frameworks, findings=rows
    )
    failing_by_rule: dict[str, Counter[str]] = {}
    accepted_by_rule: Counter[str] = Counter()
    for f in rows:
        if f.acceptance_in_force(at):
            accepted_by_rule[f.rule_id] += 1
        elif f.is_failing(at):
            failing_by_rule.setdefault(f.rule_id, Counter())[f.severity] += 1
    severities = [str(s) for s in Severity]
    out = []
    for fw in posture.frameworks:
        controls = []
        for c in fw.controls:
            accepted = sum(accepted_by_rule.get(r, 0) for r in c.rules)
            state = c.state
            if state == "passing" and accepted:
                state = "accepted"
            controls.append(ControlDay(c.control, state, c.failing_findings, accepted))
        cited = {r for c in fw.controls for r in c.rules}
        by_severity: Counter[str] = Counter()
        for rule_id in cited:
            by_severity.update(failing_by_rule.get(rule_id, Counter()))
        states = {s: sum(1 for c in controls if c.state == s) for s in CONTROL_STATES}
        out.append(
            FrameworkDay(
                framework=fw.framework,
                score=score(
                    failing=states["failing"],
                    accepted=states["accepted"],
                    passing=states["passing"],
                ),
                states=states,
                open_by_severity={s: by_severity.get(s, 0) for s in severities},
                accepted_findings=sum(accepted_by_rule.get(r, 0) for r in cited),
                controls=tuple(controls),
            )
        )
    return out


def take_snapshot(
    *,
    session: Session,
    catalog: Catalog,
    day: date,
    now: datetime,
    timezone: str = "UTC",
    source: str = "live",
) -> list[FrameworkDay]:
    """Record every framework's posture at the end of `day` (or at `now`, while the day is not
    over), replacing that day's snapshot if one exists: taken again, a day changes nothing."""
    if day > local_day(now, timezone):
        raise LedgerError(f"no snapshot of {day}: it is after today ({local_day(now, timezone)})")
    at = min(now, day_end(day, timezone))
    days = posture_on(session=session, catalog=catalog, at=at)
    # Replace, not merge: a control dropped from the catalog leaves no stale row behind.
    session.execute(delete(ControlSnapshot).where(ControlSnapshot.day == day))
    session.execute(delete(PostureSnapshot).where(PostureSnapshot.day == day))
    session.add_all(
        PostureSnapshot(
            day=day,
            framework=fw.framework,
            score=fw.score,
            failing=fw.states["failing"],
            accepted=fw.states["accepted"],
            passing=fw.states["passing"],
            not_covered=fw.states["not_covered"],
            open_by_severity=fw.open_by_severity,
            accepted_findings=fw.accepted_findings,
            at=at,
            taken_at=now,
            source=source,
        )
        for fw in days
    )
    session.execute(
        insert(ControlSnapshot),
        [
            {
                "day": day,
                "framework": fw.framework,
                "control": c.control,
                "state": c.state,
                "failing_findings": c.failing_findings,
                "accepted_findings": c.accepted_findings,
            }
            for fw in days
            for c in fw.controls
        ],
    )
    session.flush()
    return days


def missing_days(
    *, session: Session, now: datetime, timezone: str, days: int | None = None
) -> list[date]:
    """The days from the first scan's (or the last `days` days) to yesterday without a
    snapshot of their end, oldest first."""
    first = history.first_scan_at(session=session)
    if first is None:
        return []
    today = local_day(now, timezone)
    start = local_day(first, timezone)
    if days is not None:
        start = max(start, today - timedelta(days=days - 1))
    # A day snapshotted before it was over (today's, taken live) is taken again once it is.
    taken = dict(
        session.execute(
            select(PostureSnapshot.day, func.min(PostureSnapshot.at))
            .where(PostureSnapshot.day >= start)
            .group_by(PostureSnapshot.day)
        ).all()
    )
    span = (today - start).days
    return [
        d
        for d in (start + timedelta(days=i) for i in range(span))
        if d not in taken or taken[d] < day_end(d, timezone)
    ]


def backfill(
    *,
    sessions: sessionmaker[Session],
    catalog: Catalog,
    now: datetime,
    timezone: str = "UTC",
    days: int | None = None,
) -> list[date]:
    """Snapshot every day missing from the first scan (or the last `days` days) to yesterday,
    from the finding history: one transaction a day, so an interrupted back-fill keeps what
    it did and the next one goes on from there. Returns the days written."""
    with sessions() as session:
        todo = missing_days(session=session, now=now, timezone=timezone, days=days)
    for day in todo:
        with transaction(sessions) as session:
            take_snapshot(
                session=session,
                catalog=catalog,
                day=day,
                now=now,
                timezone=timezone,
                source="backfill",
            )
    return todo


def has_snapshots(*, session: Session) -> bool:
    """Whether any snapshot was ever taken."""
    return session.scalar(select(func.count()).select_from(PostureSnapshot)) != 0


def catch_up(
    *,
    sessions: sessionmaker[Session],
    catalog: Catalog,
    now: datetime,
    timezone: str = "UTC",
    days: int | None = None,
) -> list[date]:
    """The days missed back-filled (`backfill`), then today's snapshot as it stands at `now`
    (none before the first scan). Returns the days back-filled."""
    filled = backfill(sessions=sessions, catalog=catalog, now=now, timezone=timezone, days=days)
    with transaction(sessions) as session:
        if history.first_scan_at(session=session) is not None:
            take_snapshot(
                session=session,
                catalog=catalog,
                day=local_day(now, timezone),
                now=now,
                timezone=timezone,
            )
    return filled


def daily(
    *,
    sessions: sessionmaker[Session],
    catalog: Catalog,
    clock: Callable[[], datetime],
    timezone: str,
) -> dict[str, int]:
    """The scheduler's job: the days missed (all of the history on the first run, when the
    table is empty; yesterday, finished now, on every other), then today's as it stands."""
    now = clock()
    filled = catch_up(sessions=sessions, catalog=catalog, now=now, timezone=timezone)
    log.info("snapshots.taken", backfilled=len(filled), day=str(local_day(now, timezone)))
    return {"backfilled": len(filled)}


def trends(
    *, session: Session, frameworks: Sequence[str], since: date
) -> dict[str, list[PostureSnapshot]]:
    """Each framework's snapshots from `since` on, oldest first (a framework without any maps
    to an empty list)."""
    out: dict[str, list[PostureSnapshot]] = {fw: [] for fw in frameworks}
    rows = session.scalars(
        select(PostureSnapshot)
        .where(PostureSnapshot.framework.in_(list(frameworks)), PostureSnapshot.day >= since)
        .order_by(PostureSnapshot.framework, PostureSnapshot.day)
    )
    for row in rows:
        out[row.framework].append(row)
    return out


def controls_on(*, session: Session, framework: str, day: date) -> list[ControlSnapshot]:
    """One framework's control rows of one day, in id order (the catalog's)."""
    return list(
        session.scalars(
            select(ControlSnapshot)
            .where(ControlSnapshot.framework == framework, ControlSnapshot.day == day)
            .order_by(ControlSnapshot.id)
        )
    )
