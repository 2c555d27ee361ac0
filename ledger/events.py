"""The outbound event stream: every change worth telling a SIEM, a webhook or a mailbox.

An event is recorded in the transaction of the change it tells of (no commit here), with a
stable id, and in that same transaction one outbox item per configured sink whose filter takes
it, keyed by sink and event id: a rolled-back change leaves no event, and a retry, a crash or a
second recording never makes a second item. Finding events carry an OCSF 1.1 Compliance Finding
(class 2003, `ledger.ocsf`); the others the documented JSON of docs/events.md.

The sinks and their filters come with the session factory (`use_stream`, set once by the
composition root, as the audit key is): a ledger service records an event without being told
where it goes, and with no stream configured recording costs nothing and stores nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, false, func, insert, or_, select
from sqlalchemy.orm import Session, sessionmaker

from ledger import outbox
from ledger.models import ACTIVE, Event, Finding, OccurrenceStatus, Scan, TaskOccurrence
from ledger.ocsf import OCSF_VERSION, ocsf_event
from rules.catalog import Rule, Severity

# ---- what an event can be ------------------------------------------------------------------

FINDING_KINDS = (
    "finding.created",
    "finding.reopened",
    "finding.claimed",
    "finding.resolved",
    "finding.accepted",
    "finding.acceptance_expired",
    "finding.detail_changed",
)
TASK_KINDS = (
    "task.due",
    "task.reminded",
    "task.escalated",
    "task.completed",
    "task.snoozed",
    "task.reassigned",
)
SCAN_KINDS = ("scan.started", "scan.finished", "scan.partial")
AUDIT_KINDS = ("audit.chain_broken",)
KINDS = (*FINDING_KINDS, *TASK_KINDS, *SCAN_KINDS, *AUDIT_KINDS)

# The severity of an event that is not a finding's, unless its caller says otherwise.
DEFAULT_SEVERITY: Mapping[str, Severity] = {
    "task.escalated": Severity.medium,
    "scan.partial": Severity.medium,
    "audit.chain_broken": Severity.critical,
}

OCSF_SCHEMA = f"ocsf/{OCSF_VERSION}/2003"
EVENT_SCHEMA = "compliancebot.event/1"
CHUNK = 500  # findings read, events built and inserted at a time
OUTBOX_KIND = "event"  # every event item has this outbox kind (a metrics label: few values)
# A finding event's OCSF activity: what happened to it (1 Create, 2 Update, 3 Close).
_ACTIVITY = {"finding.created": 1, "finding.resolved": 3}


class UnknownKindError(ValueError):
    """An event kind not in KINDS: a bug in the caller, named with the kinds there are."""


@dataclass(frozen=True)
class Subscription:
    """Which events one sink takes. Every filter given must match; an empty one takes all.

    A filter on frameworks or accounts takes only events that carry a matching one: a scan of
    every account, or an audit alert, has no account and goes only to sinks without that filter.
    """

    sink: str
    kinds: frozenset[str] = frozenset()
    min_severity: Severity = Severity.info
    frameworks: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()

    def takes(
        self, *, kind: str, severity: str, frameworks: Iterable[str], account: str | None
    ) -> bool:
        """True when this sink's filter takes the event."""
        return (
            (not self.kinds or kind in self.kinds)
            and Severity(severity).at_least(self.min_severity)
            and (not self.frameworks or not self.frameworks.isdisjoint(frameworks))
            and (not self.accounts or account in self.accounts)
        )


@dataclass(frozen=True)
class Stream:
    """Where events go (a subscription per configured sink) and how finding bodies are built."""

    sinks: tuple[Subscription, ...] = ()
    rules: Callable[[str], Rule | None] = field(default=lambda _rule_id: None)
    product_version: str = "0"


STREAM_INFO = "compliancebot.events"


def use_stream(sessions: sessionmaker[Session], stream: Stream | None) -> None:
    """Sessions made by `sessions` record events for `stream` (None: the stream is off)."""
    info = dict(sessions.kw.get("info") or {})
    info[STREAM_INFO] = stream
    sessions.configure(info=info)


def stream_of(session: Session) -> Stream | None:
    """The stream the session records for, if any."""
    stream = session.info.get(STREAM_INFO)
    return stream if isinstance(stream, Stream) else None


# ---- recording -------------------------------------------------------------------------------


def new_id(at: datetime) -> str:
    """A UUID ordered by time (the version 7 layout: 48 bits of ms, then randomness)."""
    ms = int(at.timestamp() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms << 80)
        | (0x7 << 76)
        | (((rand >> 64) & 0xFFF) << 64)
        | (0b10 << 62)
        | (rand & ((1 << 62) - 1))
    )
    return str(uuid.UUID(int=value))


def once_id(key: str) -> str:
    """The id of the one event a key stands for (a break of the audit chain at one entry,
    found again each night): recording it again is a no-op."""
    return str(uuid.uuid5(_ONCE, key))


_ONCE = uuid.UUID("0f6c2b1e-5d1a-4c8e-9a57-3c1e8d7b2a40")


@dataclass(frozen=True)
class NewEvent:
    """An event to record: what `record_many` takes."""

    kind: str
    occurred_at: datetime
    severity: str
    body: dict[str, Any]
    body_schema: str = EVENT_SCHEMA
    frameworks: tuple[str, ...] = ()
    account: str | None = None
    subject: str | None = None
    id: str = ""  # made from occurred_at when empty


def record(
    session: Session,
    *,
    kind: str,
    occurred_at: datetime,
    severity: str,
    body: dict[str, Any],
    frameworks: Iterable[str] = (),
    account: str | None = None,
    subject: str | None = None,
    once: str | None = None,
    sinks: Sequence[Subscription] | None = None,
) -> str | None:
    """Record one event and its outbox items in the caller's transaction; returns its id, or
    None when no stream is configured (`sinks` None: the session's stream). With `once` (a key
    such as a reminder's outbox key), the event is recorded the first time only: its id is
    made from the key, and None is returned when it already exists."""
    if sinks is None and stream_of(session) is None:
        return None
    event_id = once_id(once) if once else ""
    if event_id and get(session, event_id) is not None:
        return None
    ids = record_many(
        session,
        [
            NewEvent(
                kind=kind,
                occurred_at=occurred_at,
                severity=severity,
                body=body,
                frameworks=tuple(frameworks),
                account=account,
                subject=subject,
                id=event_id,
            )
        ],
        sinks=sinks,
    )
    return ids[0] if ids else None


def record_many(
    session: Session, new: Sequence[NewEvent], *, sinks: Sequence[Subscription] | None = None
) -> list[str]:
    """Record events in bulk (one INSERT, one per sink for the outbox); returns their ids,
    [] when no stream is configured. No commit: the caller's transaction holds them."""
    if sinks is None:
        stream = stream_of(session)
        if stream is None:
            return []
        sinks = stream.sinks
    rows: list[dict[str, Any]] = []
    for event in new:
        if event.kind not in KINDS:
            raise UnknownKindError(f"unknown event kind {event.kind!r}; known: {', '.join(KINDS)}")
        severity = Severity(event.severity)  # a ValueError names a bad one
        event_id = event.id or new_id(event.occurred_at)
        body = event.body
        if event.body_schema == EVENT_SCHEMA:
            body = {**body, "id": event_id}
        else:  # OCSF: the event's own id is its metadata.uid
            body = {**body, "metadata": {**body.get("metadata", {}), "uid": event_id}}
        rows.append(
            {
                "id": event_id,
                "kind": event.kind,
                "occurred_at": event.occurred_at,
                "severity": str(severity),
                "frameworks": sorted(set(event.frameworks)),
                "account": event.account,
                "subject": event.subject,
                "body_schema": event.body_schema,
                "body": body,
            }
        )
    if not rows:
        return []
    session.execute(insert(Event), rows)
    now = max(row["occurred_at"] for row in rows)
    for sub in sinks:
        items = [
            (
                outbox_key(sub.sink, row["id"]),
                {"event": row["id"], "kind": row["kind"]},
            )
            for row in rows
            if sub.takes(
                kind=row["kind"],
                severity=row["severity"],
                frameworks=row["frameworks"],
                account=row["account"],
            )
        ]
        outbox.enqueue_many(session=session, sink=sub.sink, kind=OUTBOX_KIND, items=items, now=now)
    return [row["id"] for row in rows]


def outbox_key(sink: str, event_id: str) -> str:
    """The outbox key of an event's item for one sink (keys are unique across sinks)."""
    return f"event:{sink}:{event_id}"


# ---- bodies ----------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def finding_event(
    finding: Finding,
    rule: Rule | None,
    *,
    kind: str,
    now: datetime,
    product_version: str = "0",
    actor: str | None = None,
    note: str | None = None,
) -> NewEvent:
    """A finding's event: its OCSF Compliance Finding as it stands, with what happened to it."""
    body = ocsf_event(finding, rule, product_version=product_version, now=now)
    activity = _ACTIVITY.get(kind, 2)
    body.update(
        activity_id=activity,
        type_uid=2003 * 100 + activity,
        time=int(now.timestamp() * 1000),  # when this happened, not when it was last seen
    )
    body["metadata"] = {**body["metadata"], "event_code": kind}
    body["unmapped"] = {
        "kind": kind,
        "finding_id": finding.id,
        "actor": actor,
        "note": note,
        "assignee": finding.assignee,
        "accepted_until": _iso(finding.accepted_until),
        "detail": finding.detail,
    }
    return NewEvent(
        kind=kind,
        occurred_at=now,
        severity=finding.severity,
        body=body,
        body_schema=OCSF_SCHEMA,
        frameworks=tuple(rule.frameworks) if rule else (),
        account=finding.account,
        subject=f"finding:{finding.id}",
    )


def record_finding(
    session: Session,
    *,
    kind: str,
    finding: Finding,
    now: datetime,
    actor: str | None = None,
    note: str | None = None,
    rule: Rule | None = None,
    sinks: Sequence[Subscription] | None = None,
) -> str | None:
    """Record one finding's event (claimed, resolved, accepted...) after the change is made;
    the rule comes from the stream's catalog unless given."""
    stream = stream_of(session)
    if sinks is None and stream is None:
        return None
    if rule is None and stream is not None:
        rule = stream.rules(finding.rule_id)
    event = finding_event(
        finding,
        rule,
        kind=kind,
        now=now,
        product_version=stream.product_version if stream else "0",
        actor=actor,
        note=note,
    )
    ids = record_many(session, [event], sinks=sinks)
    return ids[0] if ids else None


def record_findings(
    session: Session,
    *,
    changes: Sequence[tuple[int, str]],
    now: datetime,
    actor: str | None = None,
    sinks: Sequence[Subscription] | None = None,
) -> list[str]:
    """Record many findings' events at once, (finding id, kind) each, as a scan makes them:
    the findings are read after their change was written, CHUNK at a time (a first scan's
    tens of thousands never sit in memory together)."""
    stream = stream_of(session)
    if not changes or (sinks is None and stream is None):
        return []
    rules = stream.rules if stream else (lambda _rule_id: None)
    version = stream.product_version if stream else "0"
    recorded: list[str] = []
    for start in range(0, len(changes), CHUNK):
        part = changes[start : start + CHUNK]
        wanted = sorted({finding_id for finding_id, _kind in part})
        found = {f.id: f for f in session.scalars(select(Finding).where(Finding.id.in_(wanted)))}
        new = [
            finding_event(
                found[finding_id],
                rules(found[finding_id].rule_id),
                kind=kind,
                now=now,
                product_version=version,
                actor=actor,
            )
            for finding_id, kind in part
            if finding_id in found
        ]
        recorded += record_many(session, new, sinks=sinks)
    return recorded


def _plain(
    kind: str,
    now: datetime,
    severity: Severity | str | None,
    account: str | None,
    frameworks: Iterable[str],
    extra: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    chosen = str(severity or DEFAULT_SEVERITY.get(kind, Severity.info))
    body = {
        "schema": EVENT_SCHEMA,
        "kind": kind,
        "time": _iso(now),
        "severity": chosen,
        "account": account,
        "frameworks": sorted(set(frameworks)),
        **extra,
    }
    return chosen, body


def record_task(
    session: Session,
    *,
    kind: str,
    occurrence: TaskOccurrence,
    now: datetime,
    title: str | None = None,
    frameworks: Iterable[str] = (),
    actor: str | None = None,
    note: str | None = None,
    severity: Severity | str | None = None,
    once: str | None = None,
    sinks: Sequence[Subscription] | None = None,
) -> str | None:
    """Record a task occurrence's event (due, reminded, escalated, completed, snoozed,
    reassigned) after the change is made; `once` as for `record` (a sweep finding the same
    reminder again records nothing)."""
    frameworks = tuple(frameworks)
    chosen, body = _plain(
        kind,
        now,
        severity,
        None,
        frameworks,
        {
            "actor": actor,
            "note": note,
            "task": {
                "occurrence_id": occurrence.id,
                "task_id": occurrence.task_id,
                "title": title,
                "due_on": occurrence.due_on.isoformat(),
                "due_at": _iso(occurrence.due_at),
                "status": occurrence.status,
                "assignee": occurrence.assignee,
                "snoozed_until": _iso(occurrence.snoozed_until),
                "completed_at": _iso(occurrence.completed_at),
                "completed_by": occurrence.completed_by,
                "on_time": occurrence.on_time,
                "evidence_sha256": occurrence.evidence_sha256,
            },
        },
    )
    return record(
        session,
        kind=kind,
        occurred_at=now,
        severity=chosen,
        body=body,
        frameworks=frameworks,
        subject=f"task:{occurrence.id}",
        once=once,
        sinks=sinks,
    )


def record_scan(
    session: Session,
    *,
    kind: str,
    scan: Scan,
    now: datetime,
    account: str | None = None,
    sinks: Sequence[Subscription] | None = None,
) -> str | None:
    """Record a scan's event: started (after `start_scan`), finished or partial (after
    `finish_scan`); `account` when the scan covered one account only."""
    _chosen, body = _plain(
        kind,
        now,
        None,
        account,
        (),
        {
            "scan": {
                "scan_id": scan.id,
                "status": scan.status,
                "trigger": scan.trigger,
                "started_at": _iso(scan.started_at),
                "finished_at": _iso(scan.finished_at),
                "resources": scan.resources,
                "api_calls": scan.api_calls,
                "error_count": scan.error_count,
                "counts": dict(scan.counts or {}),
            }
        },
    )
    return record(
        session,
        kind=kind,
        occurred_at=now,
        severity=body["severity"],
        body=body,
        account=account,
        subject=f"scan:{scan.id}",
        sinks=sinks,
    )


def record_audit_break(
    session: Session,
    *,
    now: datetime,
    detail: dict[str, Any],
    once: str | None = None,
    sinks: Sequence[Subscription] | None = None,
) -> str | None:
    """Record that `audit verify` found the chain broken (`detail`: where, and why). With
    `once` (e.g. `audit.alert_key(first_problem)`), the same break is recorded once however
    many nights it is found; returns None when it already was."""
    _chosen, body = _plain("audit.chain_broken", now, None, None, (), {"audit": detail})
    return record(
        session,
        kind="audit.chain_broken",
        occurred_at=now,
        severity=body["severity"],
        body=body,
        subject="audit",
        once=once,
        sinks=sinks,
    )


# ---- reading (the sinks) ---------------------------------------------------------------------


def get(session: Session, event_id: str) -> Event | None:
    """The event of that id, if recorded."""
    return session.get(Event, event_id)


def envelope(event: Event) -> dict[str, Any]:
    """The event as the webhook sends it (docs/events.md): what it is, then its body."""
    return {
        "id": event.id,
        "kind": event.kind,
        "occurred_at": _iso(event.occurred_at),
        "severity": event.severity,
        "account": event.account,
        "frameworks": list(event.frameworks or []),
        "subject": event.subject,
        "schema": event.body_schema,
        "body": event.body,
    }


# ---- the e-mail digest -----------------------------------------------------------------------

DIGEST_KIND = "digest"  # the outbox kind of a digest item
DIGEST_PERIODS: Mapping[str, timedelta] = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
DIGEST_LIST = 20  # findings / tasks listed by name in a digest; the rest are counted


def _brief(finding: Finding) -> dict[str, Any]:
    return {
        "id": finding.id,
        "title": finding.title,
        "severity": finding.severity,
        "status": finding.status,
        "account": finding.account,
        "region": finding.region,
        "resource": finding.resource_name or finding.resource_id,
        "first_seen": _iso(finding.first_seen),
    }


def _by_severity(rows: Iterable[tuple[Any, Any]]) -> dict[str, int]:
    found = {str(sev): int(n) for sev, n in rows}
    return {str(s): found[str(s)] for s in Severity if found.get(str(s))}


def digest(
    session: Session, *, since: datetime, now: datetime, sla_days: Mapping[str, int]
) -> dict[str, Any]:
    """What a digest says for [since, now): open findings by severity, the findings new in the
    period, overdue task occurrences, and findings past their remediation SLA (days from first
    seen, by severity). Lists are bounded; counts are whole."""
    failing = or_(Finding.status.in_([str(s) for s in ACTIVE]), Finding.acceptance_lapsed(now))
    worst_first = case({str(s): s.rank for s in Severity}, value=Finding.severity, else_=9)
    open_rows = session.execute(
        select(Finding.severity, func.count()).where(failing).group_by(Finding.severity)
    ).all()
    new_where = (Finding.first_seen >= since, Finding.first_seen < now)
    new_rows = session.execute(
        select(Finding.severity, func.count()).where(*new_where).group_by(Finding.severity)
    ).all()
    new = session.scalars(
        select(Finding).where(*new_where).order_by(worst_first, Finding.id).limit(DIGEST_LIST)
    ).all()
    breach = or_(
        *(
            and_(Finding.severity == str(sev), Finding.first_seen < now - timedelta(days=days))
            for sev, days in sla_days.items()
        ),
        false(),
    )
    breach_rows = session.execute(
        select(Finding.severity, func.count()).where(failing, breach).group_by(Finding.severity)
    ).all()
    breaches = session.scalars(
        select(Finding)
        .where(failing, breach)
        .order_by(worst_first, Finding.first_seen)
        .limit(DIGEST_LIST)
    ).all()
    late = (TaskOccurrence.status == OccurrenceStatus.open, TaskOccurrence.due_at < now)
    overdue_total = session.scalar(select(func.count()).select_from(TaskOccurrence).where(*late))
    overdue = session.scalars(
        select(TaskOccurrence).where(*late).order_by(TaskOccurrence.due_at).limit(DIGEST_LIST)
    ).all()
    return {
        "since": _iso(since),
        "until": _iso(now),
        "open_by_severity": _by_severity(open_rows),
        "new_by_severity": _by_severity(new_rows),
        "new": [_brief(f) for f in new],
        "sla_breaches_by_severity": _by_severity(breach_rows),
        "sla_breaches": [{**_brief(f), "sla_days": sla_days.get(f.severity)} for f in breaches],
        "overdue_tasks_total": int(overdue_total or 0),
        "overdue_tasks": [
            {
                "occurrence_id": o.id,
                "task_id": o.task_id,
                "due_on": o.due_on.isoformat(),
                "assignee": o.assignee,
                "days_late": (now - o.due_at).days,
            }
            for o in overdue
        ],
    }


def enqueue_digest(
    session: Session,
    *,
    sink: str,
    recipients: Sequence[str],
    period: str,
    now: datetime,
    sla_days: Mapping[str, int],
) -> int:
    """Record one digest per recipient for the period ending `now` (daily or weekly), in the
    caller's transaction; keyed by sink, period, day and recipient, so a job run twice the same
    day sends each once. Returns how many were new."""
    since = now - DIGEST_PERIODS[period]
    summary = digest(session, since=since, now=now, sla_days=sla_days)
    day = now.astimezone(UTC).date().isoformat()
    items = [
        (
            f"digest:{sink}:{period}:{day}:{recipient}"[:200],
            {"period": period, "to": recipient, "digest": summary},
        )
        for recipient in recipients
    ]
    return outbox.enqueue_many(session=session, sink=sink, kind=DIGEST_KIND, items=items, now=now)
