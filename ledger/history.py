"""The ledger as it was at an instant: each finding's state, the posture, remediation episodes.

Rebuilt from `finding_events` (every state change writes one) with a few windowed queries,
never one query per finding: the last event of each finding at or before T gives its state.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from ledger.models import (
    ACTIVE,
    Finding,
    FindingEvent,
    FindingStatus,
    OccurrenceStatus,
    Scan,
    ScanStatus,
    TaskOccurrence,
    UTCDateTime,
)
from ledger.queries import Posture, frameworks_posture
from ledger.tasks import Completion
from rules.catalog import Catalog, Severity

# accept_risk writes "<reason> (until YYYY-MM-DD)"; every caller (CLI, Slack) accepts until the
# end of a UTC day, so the day names the instant.
_UNTIL = re.compile(r"\(until (\d{4}-\d{2}-\d{2})\)\s*$")
# Kinds that open an episode of failing, and those that close it (to_status resolved).
_OPENS = ("created", "reopened")
_CLOSES = ("resolved", "auto_resolved")
_UNDOES = ("verification_failed",)
_ACTIVE = frozenset(str(s) for s in ACTIVE)


@dataclass(frozen=True)
class FindingAt:
    """One finding as it stood at an instant."""

    id: int
    rule_id: str
    account: str
    region: str
    resource_type: str
    resource_id: str
    resource_name: str | None
    title: str
    severity: str  # today's: a severity change is not an event
    first_seen: datetime
    status: str  # at the instant
    status_since: datetime
    actor: str  # of the change that set `status`
    accepted_by: str | None = None
    accepted_reason: str | None = None
    accepted_until: datetime | None = None

    def acceptance_in_force(self, at: datetime) -> bool:
        """Accepted, until an instant after `at` (Finding.acceptance_in_force at `at`)."""
        return (
            self.status == FindingStatus.accepted
            and self.accepted_until is not None
            and self.accepted_until > at
        )

    def is_failing(self, at: datetime) -> bool:
        """Counted against the posture at `at` (Finding.is_failing at `at`)."""
        return self.status in _ACTIVE or (
            self.status == FindingStatus.accepted and not self.acceptance_in_force(at)
        )


@dataclass(frozen=True)
class Episode:
    """One stretch of a finding failing: opened (created or reopened), resolved or not by T."""

    finding_id: int
    rule_id: str
    severity: str
    opened: datetime
    resolved: datetime | None


def _scope(rule_ids: Collection[str] | None, account: str | None) -> list[ColumnElement[bool]]:
    """The WHERE clauses limiting findings to some rules and one account."""
    where: list[ColumnElement[bool]] = []
    if rule_ids is not None:
        where.append(Finding.rule_id.in_(sorted(rule_ids)))
    if account is not None:
        where.append(Finding.account == account)
    return where


def _until_from_note(note: str | None) -> datetime | None:
    match = _UNTIL.search(note or "")
    if match is None:
        return None
    try:
        day = date.fromisoformat(match.group(1))
    except ValueError:
        return None
    return datetime.combine(day, time.max, tzinfo=UTC)


def findings_at(
    *,
    session: Session,
    at: datetime,
    rule_ids: Collection[str] | None = None,
    account: str | None = None,
) -> list[FindingAt]:
    """Every finding that existed at `at` (of these rules, in this account), in its state then.

    One query: the events up to `at` ranked per finding (latest first), joined to the findings.
    """
    rank = (
        func.row_number()
        .over(
            partition_by=FindingEvent.finding_id,
            order_by=(FindingEvent.at.desc(), FindingEvent.id.desc()),
        )
        .label("rn")
    )
    events = select(
        FindingEvent.finding_id,
        FindingEvent.to_status,
        FindingEvent.at,
        FindingEvent.kind,
        FindingEvent.actor,
        # Only an acceptance's note is read (for its reason and end): the rest stay on disk.
        case((FindingEvent.kind == "accepted", FindingEvent.note), else_=None).label("note"),
        rank,
    ).where(FindingEvent.at <= at)
    if rule_ids is not None or account is not None:
        events = events.join(Finding, Finding.id == FindingEvent.finding_id).where(
            *_scope(rule_ids, account)
        )
    last = events.subquery()
    query = select(
        Finding.id,
        Finding.rule_id,
        Finding.account,
        Finding.region,
        Finding.resource_type,
        Finding.resource_id,
        Finding.resource_name,
        Finding.title,
        Finding.severity,
        Finding.first_seen,
        Finding.status,
        Finding.status_changed_at,
        Finding.accepted_by,
        Finding.accepted_reason,
        Finding.accepted_until,
        last.c.to_status,
        last.c.at,
        last.c.kind,
        last.c.actor,
        last.c.note,
    ).join(last, and_(last.c.finding_id == Finding.id, last.c.rn == 1))
    out = []
    for row in session.execute(query.order_by(Finding.id)):
        accepted: dict[str, Any] = {}
        if row.to_status == FindingStatus.accepted:
            accepted = _acceptance(row)
        out.append(
            FindingAt(
                id=row.id,
                rule_id=row.rule_id,
                account=row.account,
                region=row.region,
                resource_type=row.resource_type,
                resource_id=row.resource_id,
                resource_name=row.resource_name,
                title=row.title,
                severity=row.severity,
                first_seen=row.first_seen,
                status=row.to_status,
                status_since=row.at,
                actor=row.actor,
                **accepted,
            )
        )
    return out


def _acceptance(row: Any) -> dict[str, Any]:
    """Who accepted, why and until when, for a finding accepted at the instant."""
    current = (
        row.status == FindingStatus.accepted
        and row.kind == "accepted"
        and row.at == row.status_changed_at
    )
    if current:  # the acceptance still standing: the row holds it exactly
        return {
            "accepted_by": row.accepted_by,
            "accepted_reason": row.accepted_reason,
            "accepted_until": row.accepted_until,
        }
    note = row.note or ""
    match = _UNTIL.search(note)
    return {
        "accepted_by": row.actor,
        "accepted_reason": note[: match.start()].strip() if match else note or None,
        "accepted_until": _until_from_note(note),
    }


def episodes_at(
    *,
    session: Session,
    at: datetime,
    rule_ids: Collection[str] | None = None,
    account: str | None = None,
) -> list[Episode]:
    """Every stretch of failing up to `at`: opened by a detection or by a reopening after a
    resolution, closed by the first resolution a re-check did not undo.

    Paired in SQL with window functions (one query, the rows sent are the episodes): a
    resolution stands unless the next of these events is a failed re-check; an opening starts
    an episode when it is the finding's first or follows a standing resolution (a reopening by
    hand of an accepted finding does not).
    """
    order = (FindingEvent.at, FindingEvent.id)
    relevant = (
        select(
            FindingEvent.finding_id,
            FindingEvent.at,
            FindingEvent.id,
            FindingEvent.kind,
            func.lead(FindingEvent.kind)
            .over(partition_by=FindingEvent.finding_id, order_by=order)
            .label("next_kind"),
        )
        .join(Finding, Finding.id == FindingEvent.finding_id)
        .where(FindingEvent.at <= at, FindingEvent.kind.in_((*_OPENS, *_CLOSES, *_UNDOES)))
        .where(*_scope(rule_ids, account))
        .subquery("relevant")
    )
    standing = case(
        (
            and_(
                relevant.c.kind.in_(_CLOSES),
                or_(relevant.c.next_kind.is_(None), relevant.c.next_kind.not_in(_UNDOES)),
            ),
            1,
        ),
        else_=0,
    )
    marked = select(
        relevant.c.finding_id,
        relevant.c.at,
        relevant.c.id,
        relevant.c.kind,
        standing.label("standing"),
        func.lag(standing)
        .over(partition_by=relevant.c.finding_id, order_by=(relevant.c.at, relevant.c.id))
        .label("after_standing"),
    ).subquery("marked")
    fresh = and_(
        marked.c.kind.in_(_OPENS),
        or_(marked.c.after_standing.is_(None), marked.c.after_standing == 1),
    )
    # What is left alternates: an opening, its standing resolution, the next opening, ...
    kept = (
        select(marked.c.finding_id, marked.c.at, marked.c.id, marked.c.kind)
        .where(or_(fresh, marked.c.standing == 1))
        .subquery("kept")
    )
    paired = select(
        kept.c.finding_id,
        kept.c.kind,
        kept.c.at.label("opened"),
        func.lead(kept.c.at, type_=UTCDateTime)
        .over(partition_by=kept.c.finding_id, order_by=(kept.c.at, kept.c.id))
        .label("resolved"),
    ).subquery("paired")
    query = (
        select(
            paired.c.finding_id,
            Finding.rule_id,
            Finding.severity,
            paired.c.opened,
            paired.c.resolved,
        )
        .join(Finding, Finding.id == paired.c.finding_id)
        .where(paired.c.kind.in_(_OPENS))
        .order_by(paired.c.finding_id, paired.c.opened)
    )
    return [
        Episode(row.finding_id, row.rule_id, row.severity, row.opened, row.resolved)
        for row in session.execute(query.execution_options(yield_per=20_000))
    ]


@dataclass(frozen=True)
class AcceptanceSpan:
    """When a risk acceptance was in force: from `start` until `end` (its end date, or the
    finding's next change if that came first)."""

    finding_id: int
    start: datetime
    end: datetime


def acceptances_at(
    *,
    session: Session,
    at: datetime,
    rule_ids: Collection[str] | None = None,
    account: str | None = None,
) -> list[AcceptanceSpan]:
    """Every risk acceptance made up to `at`, with when it stopped counting (one query)."""
    events = (
        select(
            FindingEvent.finding_id,
            FindingEvent.at,
            FindingEvent.kind,
            case((FindingEvent.kind == "accepted", FindingEvent.note), else_=None).label("note"),
            func.lead(FindingEvent.at, type_=UTCDateTime)
            .over(partition_by=FindingEvent.finding_id, order_by=(FindingEvent.at, FindingEvent.id))
            .label("ended"),
        )
        .join(Finding, Finding.id == FindingEvent.finding_id)
        .where(FindingEvent.at <= at, *_scope(rule_ids, account))
        .subquery("events")
    )
    query = (
        select(
            events.c.finding_id,
            events.c.at,
            events.c.note,
            events.c.ended,
            Finding.status,
            Finding.accepted_until,
        )
        .join(Finding, Finding.id == events.c.finding_id)
        .where(events.c.kind == "accepted")
    )
    spans = []
    for row in session.execute(query):
        if row.ended is None and row.status == FindingStatus.accepted:
            until = row.accepted_until  # the acceptance standing today: exact
        else:
            until = _until_from_note(row.note)
        if until is None:
            continue
        end = until if row.ended is None else min(until, row.ended)
        if end > row.at:
            spans.append(AcceptanceSpan(row.finding_id, row.at, end))
    return spans


def last_scan_at(*, session: Session, at: datetime) -> Scan | None:
    """The last scan that finished (complete or partial) at or before `at`."""
    return session.scalar(
        select(Scan)
        .where(
            Scan.status.in_([ScanStatus.complete, ScanStatus.partial]),
            Scan.finished_at.is_not(None),
            Scan.finished_at <= at,
        )
        .order_by(Scan.finished_at.desc(), Scan.id.desc())
        .limit(1)
    )


def first_scan_at(*, session: Session) -> datetime | None:
    """When the first scan started; None when none has run."""
    first: datetime | None = session.scalar(select(func.min(Scan.started_at)))
    return first


def posture_at(
    *,
    session: Session,
    catalog: Catalog,
    at: datetime,
    frameworks: Sequence[str] | None = None,
    findings: Sequence[FindingAt] | None = None,
) -> Posture:
    """`ledger.queries.posture` as it was at `at`, rebuilt from the events (or from `findings`
    already read with `findings_at`)."""
    rows = findings_at(session=session, at=at) if findings is None else findings
    failing_by_rule: dict[str, tuple[int, datetime]] = {}
    by_severity: Counter[str] = Counter()
    accepted = 0
    for f in rows:
        if f.acceptance_in_force(at):
            accepted += 1
        if not f.is_failing(at):
            continue
        by_severity[f.severity] += 1
        count, since = failing_by_rule.get(f.rule_id, (0, f.first_seen))
        failing_by_rule[f.rule_id] = (count + 1, min(since, f.first_seen))
    ordered = {str(s): by_severity.get(str(s), 0) for s in Severity}
    return Posture(
        frameworks=frameworks_posture(
            catalog=catalog, failing_by_rule=failing_by_rule, frameworks=frameworks
        ),
        open_by_severity=ordered,
        accepted=accepted,
        last_scan=last_scan_at(session=session, at=at),
    )


@dataclass(frozen=True)
class TaskAt:
    """An administrative task's record at an instant: its last completion then, and how many
    of its occurrences were past due and not completed then."""

    task_id: str
    last: Completion | None
    overdue: int


def tasks_at(*, session: Session, task_ids: Collection[str], at: datetime) -> dict[str, TaskAt]:
    """Each task's last completion at or before `at`, and its occurrences overdue at `at`:
    two queries whatever the number of tasks and occurrences."""
    ids = sorted(task_ids)
    if not ids:
        return {}
    rank = (
        func.row_number()
        .over(
            partition_by=TaskOccurrence.task_id,
            order_by=(TaskOccurrence.completed_at.desc(), TaskOccurrence.id.desc()),
        )
        .label("rn")
    )
    done = (
        select(TaskOccurrence.id, rank)
        .where(
            TaskOccurrence.task_id.in_(ids),
            TaskOccurrence.status == OccurrenceStatus.done,
            TaskOccurrence.completed_at <= at,
        )
        .subquery()
    )
    last = {
        o.task_id: o
        for o in session.scalars(
            select(TaskOccurrence).join(done, and_(done.c.id == TaskOccurrence.id, done.c.rn == 1))
        )
    }
    late: dict[str, int] = dict(
        session.execute(
            select(TaskOccurrence.task_id, func.count())
            .where(
                TaskOccurrence.task_id.in_(ids),
                TaskOccurrence.due_at < at,
                or_(TaskOccurrence.completed_at.is_(None), TaskOccurrence.completed_at > at),
            )
            .group_by(TaskOccurrence.task_id)
        ).all()  # a Result itself has keys(): dict() would read it as a mapping
    )
    return {
        task_id: TaskAt(
            task_id=task_id,
            last=None if task_id not in last else Completion.of(last[task_id]),
            overdue=int(late.get(task_id, 0)),
        )
        for task_id in ids
    }


# ---- a period: what an evidence pack holds -----------------------------------------------------


@dataclass(frozen=True)
class PeriodEvent:
    """One finding event of a period, with the finding it belongs to."""

    id: int
    at: datetime
    finding_id: int
    rule_id: str
    severity: str
    account: str
    region: str
    resource_type: str
    resource_id: str
    kind: str
    from_status: str | None
    to_status: str
    actor: str
    note: str | None
    scan_id: int | None


def events_between(
    *,
    session: Session,
    start: datetime,
    end: datetime,
    rule_ids: Collection[str] | None = None,
    account: str | None = None,
) -> Iterator[PeriodEvent]:
    """The finding events from `start` to `end` (both included) of these rules and account, in
    the order they happened; streamed, whatever their number."""
    query = (
        select(
            FindingEvent.id,
            FindingEvent.at,
            FindingEvent.finding_id,
            Finding.rule_id,
            Finding.severity,
            Finding.account,
            Finding.region,
            Finding.resource_type,
            Finding.resource_id,
            FindingEvent.kind,
            FindingEvent.from_status,
            FindingEvent.to_status,
            FindingEvent.actor,
            FindingEvent.note,
            FindingEvent.scan_id,
        )
        .join(Finding, Finding.id == FindingEvent.finding_id)
        .where(FindingEvent.at >= start, FindingEvent.at <= end, *_scope(rule_ids, account))
        .order_by(FindingEvent.at, FindingEvent.id)
    )
    for row in session.execute(query.execution_options(yield_per=10_000)):
        yield PeriodEvent(**row._asdict())


def completions_between(
    *, session: Session, start: datetime, end: datetime, task_ids: Collection[str] | None = None
) -> list[Completion]:
    """Task occurrences completed from `start` to `end` (both included), of these tasks, the
    earliest first."""
    where = [
        TaskOccurrence.status == OccurrenceStatus.done,
        TaskOccurrence.completed_at >= start,
        TaskOccurrence.completed_at <= end,
    ]
    if task_ids is not None:
        where.append(TaskOccurrence.task_id.in_(sorted(task_ids)))
    query = (
        select(TaskOccurrence)
        .where(*where)
        .order_by(TaskOccurrence.completed_at, TaskOccurrence.id)
    )
    return [Completion.of(o) for o in session.scalars(query)]
