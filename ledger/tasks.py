"""Compliance-calendar occurrences: made from the task catalog, reminded, completed.

Each due date of a task is one `TaskOccurrence` row (unique per task and date), made ahead of
time by `materialize`. Completing one records who, when, the evidence and whether it was on
time; the evidence a task requires is enforced here, whoever completes it (Slack, the CLI).
Every change is in the audit trail.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ledger.models import OccurrenceStatus, TaskOccurrence
from ledger.services import LedgerError, audit
from rules.tasks import Evidence, Task

_CHUNK = 500


@dataclass(frozen=True)
class CalendarClock:
    """Where due dates live: the calendar's time zone and the local time things fall due."""

    timezone: str = "UTC"
    due_time: time = time(9, 0)

    @property
    def zone(self) -> ZoneInfo:
        """The time zone."""
        return ZoneInfo(self.timezone)

    def due_at(self, day: date) -> datetime:
        """The UTC instant a task due on `day` falls due (its local due time, DST included)."""
        return datetime.combine(day, self.due_time, tzinfo=self.zone).astimezone(UTC)

    def today(self, now: datetime) -> date:
        """The local date at `now`."""
        return now.astimezone(self.zone).date()


def materialize(
    *,
    session: Session,
    tasks: Iterable[Task],
    clock: CalendarClock,
    now: datetime,
    horizon: timedelta,
) -> int:
    """Make the occurrences due from today to `now + horizon`; returns how many are new.

    Two statements whatever the number of tasks: the latest due date per task, then one bulk
    insert that skips what exists (another replica may be doing the same).
    """
    tasks = list(tasks)
    latest = dict(
        session.execute(
            select(TaskOccurrence.task_id, func.max(TaskOccurrence.due_on)).group_by(
                TaskOccurrence.task_id
            )
        ).all()
    )
    today = clock.today(now)
    until = clock.today(now + horizon)
    rows = []
    for task in tasks:
        after = latest.get(task.id) or today - timedelta(days=1)
        if after >= until:
            continue
        for day in task.due_dates(after, until):
            rows.append(
                {
                    "task_id": task.id,
                    "due_on": day,
                    "due_at": clock.due_at(day),
                    "status": OccurrenceStatus.open,
                    "escalations": 0,
                    "created_at": now,
                }
            )
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert_fn = pg_insert if dialect == "postgresql" else sqlite_insert
    new = 0
    for start in range(0, len(rows), _CHUNK):
        stmt = (
            insert_fn(TaskOccurrence)
            .values(rows[start : start + _CHUNK])
            .on_conflict_do_nothing(index_elements=["task_id", "due_on"])
            .returning(TaskOccurrence.id)
        )
        new += len(session.execute(stmt).all())
    return new


def get_occurrence(*, session: Session, occurrence_id: int) -> TaskOccurrence:
    """An occurrence by id, or a LedgerError naming it."""
    occurrence = session.get(TaskOccurrence, occurrence_id)
    if occurrence is None:
        raise LedgerError(f"no task occurrence with id {occurrence_id}")
    return occurrence


@dataclass(frozen=True)
class EvidenceFile:
    """An uploaded file kept as evidence: where it is stored and its SHA-256."""

    location: str
    sha256: str


def store_evidence_s3(
    client: Any, bucket: str, prefix: str, name: str, content: bytes
) -> EvidenceFile:
    """Keep a file in S3 under `prefix/<sha256>/<name>`, with S3 checking the SHA-256 too."""
    digest = hashlib.sha256(content).hexdigest()
    safe = Path(name).name or "evidence"
    key = "/".join(p for p in (prefix.strip("/"), digest, safe) if p)
    client.put_object(
        Bucket=bucket,
        Key=key,
        Body=content,
        ChecksumSHA256=base64.b64encode(hashlib.sha256(content).digest()).decode(),
        ServerSideEncryption="AES256",
    )
    return EvidenceFile(location=f"s3://{bucket}/{key}", sha256=digest)


def store_evidence_file(directory: Path, name: str, content: bytes) -> EvidenceFile:
    """Keep a file under `directory/<sha256>/<name>`: content-addressed, never overwritten."""
    digest = hashlib.sha256(content).hexdigest()
    safe = Path(name).name or "evidence"
    target = directory / digest / safe
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.write_bytes(content)
    return EvidenceFile(location=str(target), sha256=digest)


def complete(
    *,
    session: Session,
    occurrence_id: int,
    task: Task,
    user: str,
    now: datetime,
    note: str | None = None,
    link: str | None = None,
    file: EvidenceFile | None = None,
) -> TaskOccurrence:
    """Mark an occurrence done with its evidence; on time when done by its due instant."""
    occurrence = get_occurrence(session=session, occurrence_id=occurrence_id)
    if occurrence.status == OccurrenceStatus.done:
        raise LedgerError(
            f"{task.title} due {occurrence.due_on} was already completed by "
            f"{occurrence.completed_by} on {occurrence.completed_at:%Y-%m-%d}"
        )
    note = (note or "").strip() or None
    link = (link or "").strip() or None
    missing = _missing_evidence(task.evidence, note=note, link=link, file=file)
    if missing:
        raise LedgerError(missing)
    if link is not None and not link.startswith(("https://", "http://")):
        raise LedgerError(f"the evidence link must be an http(s) URL, not {link!r}")
    occurrence.status = OccurrenceStatus.done
    occurrence.completed_at, occurrence.completed_by = now, user
    occurrence.on_time = now <= occurrence.due_at
    occurrence.evidence_note, occurrence.evidence_link = note, link
    if file is not None:
        occurrence.evidence_file, occurrence.evidence_sha256 = file.location, file.sha256
    audit(
        session,
        now=now,
        actor=user,
        action="task.completed",
        object_type="task_occurrence",
        object_id=str(occurrence.id),
        detail={
            "task": task.id,
            "due_on": occurrence.due_on.isoformat(),
            "on_time": occurrence.on_time,
            "note": note,
            "link": link,
            "file": file.location if file else None,
            "sha256": file.sha256 if file else None,
        },
    )
    return occurrence


def _missing_evidence(
    required: Evidence, *, note: str | None, link: str | None, file: EvidenceFile | None
) -> str | None:
    if required == Evidence.note and note is None:
        return "this task needs a note saying what was done"
    if required == Evidence.link and link is None:
        return "this task needs a link to the evidence (a document, a ticket, a report)"
    if required == Evidence.file and file is None:
        return "this task needs a file as evidence (an export, a report, a screenshot)"
    return None


def snooze(
    *,
    session: Session,
    occurrence_id: int,
    user: str,
    until: datetime,
    now: datetime,
    max_days: int,
) -> TaskOccurrence:
    """Hold reminders until a date (at most `max_days` ahead); the due date does not move."""
    occurrence = _open(session, occurrence_id, "snoozed")
    if until <= now:
        raise LedgerError(f"the snooze date {until:%Y-%m-%d} must be in the future")
    if until - now > timedelta(days=max_days):
        raise LedgerError(f"a task can be snoozed for at most {max_days} days")
    occurrence.snoozed_until, occurrence.snoozed_by = until, user
    audit(
        session,
        now=now,
        actor=user,
        action="task.snoozed",
        object_type="task_occurrence",
        object_id=str(occurrence.id),
        detail={"until": until.isoformat()},
    )
    return occurrence


def reassign(
    *, session: Session, occurrence_id: int, user: str, to: str, now: datetime
) -> TaskOccurrence:
    """Give one occurrence to someone else (the task's owner stays for the next ones)."""
    occurrence = _open(session, occurrence_id, "reassigned")
    before = occurrence.assignee
    occurrence.assignee = to
    audit(
        session,
        now=now,
        actor=user,
        action="task.reassigned",
        object_type="task_occurrence",
        object_id=str(occurrence.id),
        detail={"from": before, "to": to},
    )
    return occurrence


def _open(session: Session, occurrence_id: int, action: str) -> TaskOccurrence:
    occurrence = get_occurrence(session=session, occurrence_id=occurrence_id)
    if occurrence.status != OccurrenceStatus.open:
        raise LedgerError(f"task occurrence {occurrence_id} is done: it cannot be {action}")
    return occurrence


def upcoming(
    *, session: Session, now: datetime, until: datetime, limit: int = 500
) -> Sequence[TaskOccurrence]:
    """Open occurrences due before `until` (overdue ones first), by due date."""
    return session.scalars(
        select(TaskOccurrence)
        .where(TaskOccurrence.status == OccurrenceStatus.open, TaskOccurrence.due_at <= until)
        .order_by(TaskOccurrence.due_at, TaskOccurrence.id)
        .limit(limit)
    ).all()
