"""Compliance-calendar occurrences: made from the task catalog, reminded, completed.

Each due date of a task is one `TaskOccurrence` row (unique per task and date), made ahead of
time by `materialize`. Completing one records who, when, the evidence and whether it was on
time; the evidence a task requires is enforced here, whoever completes it (Slack, the CLI).
Every change a person makes is in the audit trail. The reminder sweep decides what is due
(bot/reminders.py); what it records, and what it leaves on each occurrence, is written here.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ledger import events, outbox
from ledger.models import OccurrenceStatus, OutboxItem, TaskOccurrence, row_id
from ledger.services import LedgerError, LimitError, audit
from rules.tasks import Evidence, Task, is_user_id

_CHUNK = 500
MAX_EVIDENCE_BYTES = 50 * 1024 * 1024  # the default of calendar.max_evidence_mb
_READ = 1024 * 1024


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


def past_due(due_at: datetime, now: datetime) -> bool:
    """The one definition of late: `now` is past the due instant (the due date at the
    calendar's due time). Escalation, completion on time, every list and the feed use it, so
    4 hours past a 09:00 due time is overdue everywhere, though the date is still today."""
    return now > due_at


def is_overdue(occurrence: TaskOccurrence, now: datetime) -> bool:
    """An open occurrence past its due instant (a done one is never overdue)."""
    return occurrence.status == OccurrenceStatus.open and past_due(occurrence.due_at, now)


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
    rows = [
        {
            "task_id": task.id,
            "due_on": day,
            "due_at": clock.due_at(day),
            "status": OccurrenceStatus.open,
            "escalations": 0,
            "created_at": now,
        }
        for task, day in _unmade_days(
            _latest_due(session), tasks, clock.today(now), clock.today(now + horizon)
        )
    ]
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


class EvidenceTooLargeError(LedgerError):
    """An evidence file is over the size limit (found while it streamed in)."""


def read_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """A binary file as the chunks the evidence stores take."""
    return iter(lambda: stream.read(_READ), b"")


def megabytes(size: int) -> str:
    """A byte count as people read it in a refusal: '50 MB'."""
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size} bytes"


def _spool(name: str, chunks: Iterable[bytes], into: IO[bytes], max_bytes: int) -> bytes:
    """Copy chunks into a file and return their SHA-256; stop as soon as they pass `max_bytes`
    (a sender may announce a small size and send more)."""
    digest = hashlib.sha256()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise EvidenceTooLargeError(
                f"{name} is over {megabytes(max_bytes)}, the most an evidence file may be"
            )
        digest.update(chunk)
        into.write(chunk)
    return digest.digest()


def safe_name(name: str) -> str:
    """A file name that stays inside its folder: no path, no control characters, not '..'."""
    base = Path(name.replace("\\", "/")).name
    base = "".join(c for c in base if c.isprintable())
    while len(base.encode()) > 200:  # file systems take 255 bytes; the end keeps the extension
        base = base[1:]
    return base if base.strip(". ") else "evidence"


def store_evidence_s3(
    client: Any,
    bucket: str,
    prefix: str,
    name: str,
    chunks: Iterable[bytes],
    *,
    max_bytes: int = MAX_EVIDENCE_BYTES,
) -> EvidenceFile:
    """Keep a file in S3 under `prefix/<sha256>/<name>`, with S3 checking the SHA-256 too.

    The file is spooled to an anonymous temporary file first: the key needs the hash, and
    memory holds one chunk at a time whatever the file's size.
    """
    with tempfile.TemporaryFile() as spool:
        digest = _spool(name, chunks, spool, max_bytes)
        spool.seek(0)
        key = "/".join(p for p in (prefix.strip("/"), digest.hex(), safe_name(name)) if p)
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=spool,
            ChecksumSHA256=base64.b64encode(digest).decode(),
            ServerSideEncryption="AES256",
        )
    return EvidenceFile(location=f"s3://{bucket}/{key}", sha256=digest.hex())


def store_evidence_file(
    directory: Path, name: str, chunks: Iterable[bytes], *, max_bytes: int = MAX_EVIDENCE_BYTES
) -> EvidenceFile:
    """Keep a file under `directory/<sha256>/<name>`: content-addressed, never overwritten.

    It streams into a hidden file beside its final place and is renamed there once complete:
    an oversized stream, a broken download or a crash never leaves a partial file under a hash
    (where it would pass for the evidence), and the hidden file is removed on any error.
    """
    directory.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=directory, prefix=".partial-")
    try:
        with os.fdopen(handle, "wb") as out:
            digest = _spool(name, chunks, out, max_bytes)
        target = directory / digest.hex() / safe_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            Path(partial).replace(target)
    finally:
        Path(partial).unlink(missing_ok=True)
    return EvidenceFile(location=str(target), sha256=digest.hex())


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
    problems = evidence_problems(task.evidence, note=note, link=link, has_file=file is not None)
    if problems:
        at_fault, problem = next(iter(problems.items()))
        raise LedgerError(problem, field=at_fault)
    occurrence.status = OccurrenceStatus.done
    occurrence.completed_at, occurrence.completed_by = now, user
    occurrence.on_time = not past_due(occurrence.due_at, now)
    occurrence.evidence_note, occurrence.evidence_link = note, link
    if file is not None:
        occurrence.evidence_file, occurrence.evidence_sha256 = file.location, file.sha256
    occurrence.version += 1
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
    events.record_task(
        session,
        kind="task.completed",
        occurrence=occurrence,
        now=now,
        title=task.title,
        frameworks=task.controls,
        actor=user,
        note=note,
    )
    return occurrence


def evidence_problems(
    required: Evidence, *, note: str | None, link: str | None, has_file: bool
) -> dict[str, str]:
    """What is wrong with the evidence given for a task, by field ("note", "link", "file");
    empty when it will do. `complete` refuses the first; a form shows them all at once."""
    note = (note or "").strip() or None
    link = (link or "").strip() or None
    problems = {}
    if required == Evidence.note and note is None:
        problems["note"] = "this task needs a note saying what was done"
    if required == Evidence.link and link is None:
        problems["link"] = "this task needs a link to the evidence (a document, a ticket, a report)"
    if required == Evidence.file and not has_file:
        problems["file"] = "this task needs a file as evidence (an export, a report, a screenshot)"
    if link is not None and not link.startswith(("https://", "http://")):
        problems["link"] = "the link must start with https:// or http://"
    return problems


def snooze(
    *,
    session: Session,
    occurrence_id: int,
    user: str,
    until: date,
    clock: CalendarClock,
    now: datetime,
    max_days: int,
) -> TaskOccurrence:
    """Hold reminders until a day (at its due time), at most `max_days` calendar days after
    today in the calendar's time zone; the due date does not move."""
    occurrence = _open(session, occurrence_id, "snoozed")
    # Counted in calendar days, never from the current instant: the same day is allowed (or
    # refused) whatever the time of day the snooze is asked for.
    today = clock.today(now)
    if until <= today:
        raise LedgerError(
            f"the snooze date {until:%Y-%m-%d} must be in the future (after {today})",
            field="until",
        )
    if (until - today).days > max_days:
        raise LimitError(
            f"a task can be snoozed for at most {max_days} days "
            f"(until {today + timedelta(days=max_days)})",
            field="until",
        )
    at = clock.due_at(until)
    occurrence.snoozed_until, occurrence.snoozed_by = at, user
    occurrence.version += 1
    audit(
        session,
        now=now,
        actor=user,
        action="task.snoozed",
        object_type="task_occurrence",
        object_id=str(occurrence.id),
        detail={"until": at.isoformat()},
    )
    events.record_task(session, kind="task.snoozed", occurrence=occurrence, now=now, actor=user)
    return occurrence


def reassign(
    *, session: Session, occurrence_id: int, user: str, to: str, now: datetime
) -> TaskOccurrence:
    """Give one occurrence to someone else (the task's owner stays for the next ones): a person,
    by Slack member ID, never a group or a broadcast such as <!channel>."""
    if not is_user_id(to):
        raise LedgerError(
            f"a task is reassigned to one person, by Slack member ID (like U0123ABCD), "
            f"not {to[:40]!r}",
            field="to",
        )
    occurrence = _open(session, occurrence_id, "reassigned")
    before = occurrence.assignee
    occurrence.assignee = to
    occurrence.version += 1
    audit(
        session,
        now=now,
        actor=user,
        action="task.reassigned",
        object_type="task_occurrence",
        object_id=str(occurrence.id),
        detail={"from": before, "to": to},
    )
    events.record_task(session, kind="task.reassigned", occurrence=occurrence, now=now, actor=user)
    return occurrence


def _open(session: Session, occurrence_id: int, action: str) -> TaskOccurrence:
    occurrence = get_occurrence(session=session, occurrence_id=occurrence_id)
    if occurrence.status != OccurrenceStatus.open:
        raise LedgerError(f"task occurrence {occurrence_id} is done: it cannot be {action}")
    return occurrence


def upcoming(
    *, session: Session, now: datetime, until: datetime, limit: int | None = 500
) -> Sequence[TaskOccurrence]:
    """Open occurrences due before `until` (overdue ones first), by due date; at most `limit`
    (None: all)."""
    return session.scalars(
        select(TaskOccurrence)
        .where(TaskOccurrence.status == OccurrenceStatus.open, TaskOccurrence.due_at <= until)
        .order_by(TaskOccurrence.due_at, TaskOccurrence.id)
        .limit(limit)
    ).all()


# ---- the reminder sweep's state ------------------------------------------------------------------

# The outbox kinds of an occurrence's notices (the Slack worker posts them).
REMIND = "task_remind"
ESCALATE = "task_escalate"


@dataclass(frozen=True)
class DueOccurrence:
    """An open occurrence inside a sweep's window, with what the sweeps before recorded."""

    id: int
    task_id: str
    due_at: datetime
    snoozed_until: datetime | None
    assignee: str | None
    reminded: str | None  # the tag of the latest reminder recorded (None: none yet)
    escalations: int  # escalation rounds recorded: the next one to record is this round


def due_by(*, session: Session, until: datetime) -> list[DueOccurrence]:
    """The open occurrences due by `until` (a sweep's window), in one query."""
    rows = session.execute(
        select(
            TaskOccurrence.id,
            TaskOccurrence.task_id,
            TaskOccurrence.due_at,
            TaskOccurrence.snoozed_until,
            TaskOccurrence.assignee,
            TaskOccurrence.reminded,
            TaskOccurrence.escalations,
        ).where(TaskOccurrence.status == OccurrenceStatus.open, TaskOccurrence.due_at <= until)
    ).all()
    return [DueOccurrence(*row) for row in rows]


@dataclass(frozen=True)
class Reminder:
    """A reminder of one occurrence to one destination (a user, user group or channel ID).

    `tag` says which reminder it is (lead<seconds>, snooze<timestamp>, reassigned): with the
    occurrence and the destination it makes the key, so each is recorded once.
    """

    occurrence_id: int
    to: str
    tag: str

    @property
    def item(self) -> tuple[str, dict[str, Any]]:
        """Its outbox key and payload."""
        key = f"calendar:remind:{self.occurrence_id}:{self.tag}:{self.to}"
        return key, {"occurrence_id": self.occurrence_id, "to": self.to, "tag": self.tag}


@dataclass(frozen=True)
class Escalation:
    """An overdue occurrence escalated to `to`, once per round (days overdue past the first
    escalation, divided by the cadence)."""

    occurrence_id: int
    to: str
    round: int

    @property
    def item(self) -> tuple[str, dict[str, Any]]:
        """Its outbox key and payload."""
        key = f"calendar:escalate:{self.occurrence_id}:{self.round}"
        return key, {"occurrence_id": self.occurrence_id, "to": self.to, "round": self.round}


@dataclass(frozen=True)
class SweepMark:
    """What a sweep leaves on an occurrence: the reminder tag due now and the rounds done."""

    occurrence_id: int
    reminded: str | None
    escalations: int


def record_notices(
    *,
    session: Session,
    sink: str,
    now: datetime,
    reminders: Sequence[Reminder] = (),
    escalations: Sequence[Escalation] = (),
) -> tuple[int, int]:
    """Record reminders and escalations for `sink` to deliver, once per key whoever asks
    again; returns how many of each were new. The event stream hears of each (once by its key),
    and of each occurrence past due the first time a sweep sees it."""
    if events.stream_of(session) is not None:
        _tell(session, now, reminders, escalations)
    return (
        outbox.enqueue_many(
            session=session, sink=sink, kind=REMIND, items=[r.item for r in reminders], now=now
        ),
        outbox.enqueue_many(
            session=session, sink=sink, kind=ESCALATE, items=[e.item for e in escalations], now=now
        ),
    )


def _tell(
    session: Session,
    now: datetime,
    reminders: Sequence[Reminder],
    escalations: Sequence[Escalation],
) -> None:
    told: list[tuple[str, int, str]] = [
        ("task.reminded", r.occurrence_id, r.item[0]) for r in reminders
    ] + [("task.escalated", e.occurrence_id, e.item[0]) for e in escalations]
    seen: set[int] = set()
    for kind, occurrence_id, key in told:
        occurrence = session.get(TaskOccurrence, occurrence_id)
        if occurrence is None:
            continue
        if occurrence_id not in seen and past_due(occurrence.due_at, now):
            events.record_task(
                session,
                kind="task.due",
                occurrence=occurrence,
                now=now,
                once=f"task.due:{occurrence_id}",
            )
        seen.add(occurrence_id)
        events.record_task(session, kind=kind, occurrence=occurrence, now=now, once=key)


def mark_swept(*, session: Session, marks: Sequence[SweepMark]) -> None:
    """Leave on each occurrence what the sweep recorded for it, in one statement, so the next
    sweep touches only what changed."""
    if marks:
        session.execute(
            update(TaskOccurrence),
            [
                {"id": m.occurrence_id, "reminded": m.reminded, "escalations": m.escalations}
                for m in marks
            ],
        )


# ---- reading the record ------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """A completed occurrence as the record holds it: who, when, on time or not, the evidence."""

    occurrence_id: int
    task_id: str
    due_on: date
    due_at: datetime
    completed_at: datetime
    completed_by: str
    on_time: bool
    note: str | None
    link: str | None
    file: str | None  # where the evidence file is kept: a path or an s3:// URI
    sha256: str | None

    @classmethod
    def of(cls, o: TaskOccurrence) -> Completion:
        """A done occurrence as a completion."""
        return cls(
            occurrence_id=o.id,
            task_id=o.task_id,
            due_on=o.due_on,
            due_at=o.due_at,
            # A done row always has these (complete() sets them together).
            completed_at=o.completed_at or o.due_at,
            completed_by=o.completed_by or "",
            on_time=bool(o.on_time),
            note=o.evidence_note,
            link=o.evidence_link,
            file=o.evidence_file,
            sha256=o.evidence_sha256,
        )

    @property
    def late_by(self) -> timedelta | None:
        """How long after its due instant it was completed; None when on time."""
        if self.on_time:
            return None
        return max(self.completed_at - self.due_at, timedelta(0))

    @property
    def file_name(self) -> str | None:
        """The evidence file's name (the last part of where it is kept)."""
        if self.file is None:
            return None
        return self.file.replace("\\", "/").rsplit("/", 1)[-1]


def completions(
    *,
    session: Session,
    task_id: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[Completion]:
    """Completed occurrences, the latest completion first: of one task, completed at or after
    `since`; at most `limit`."""
    query = (
        select(TaskOccurrence)
        .where(*_done(task_id, since))
        .order_by(TaskOccurrence.completed_at.desc(), TaskOccurrence.id.desc())
    )
    return [Completion.of(o) for o in session.scalars(query.limit(limit))]


def count_completions(
    *, session: Session, task_id: str | None = None, since: datetime | None = None
) -> int:
    """How many completions `completions` would list without a limit."""
    query = select(func.count()).select_from(TaskOccurrence).where(*_done(task_id, since))
    return int(session.scalar(query) or 0)


def _done(task_id: str | None, since: datetime | None) -> list[ColumnElement[bool]]:
    where = [TaskOccurrence.status == OccurrenceStatus.done]
    if task_id is not None:
        where.append(TaskOccurrence.task_id == task_id)
    if since is not None:
        where.append(TaskOccurrence.completed_at >= since)
    return where


def unmade(
    *, session: Session, tasks: Iterable[Task], clock: CalendarClock, now: datetime, until: datetime
) -> dict[str, date]:
    """Read-only: per task, the first due date up to `until` without an occurrence yet (the
    dates `materialize` would make); tasks with all theirs made are left out."""
    missing: dict[str, date] = {}
    for task, day in _unmade_days(
        _latest_due(session), tasks, clock.today(now), clock.today(until)
    ):
        if clock.due_at(day) <= until and task.id not in missing:
            missing[task.id] = day
    return missing


def _unmade_days(
    latest: Mapping[str, date], tasks: Iterable[Task], today: date, last: date
) -> Iterator[tuple[Task, date]]:
    """Each task's due dates up to `last` after the latest one made (from today for a task with
    none): what `materialize` inserts and `unmade` reports."""
    for task in tasks:
        after = latest.get(task.id) or today - timedelta(days=1)
        if after < last:
            for day in task.due_dates(after, last):
                yield task, day


def _latest_due(session: Session) -> dict[str, date]:
    """The latest due date made, per task id."""
    return dict(
        session.execute(
            select(TaskOccurrence.task_id, func.max(TaskOccurrence.due_on)).group_by(
                TaskOccurrence.task_id
            )
        ).all()
    )


@dataclass(frozen=True)
class Notice:
    """A reminder or an escalation a sweep recorded for the Slack worker to post."""

    kind: str  # the outbox kind: task_remind or task_escalate
    to: str  # a Slack user, user group or channel ID
    detail: str | int | None  # a reminder's tag (lead604800, snooze<ts>), an escalation's round
    occurrence: TaskOccurrence


def last_outbox_id(*, session: Session) -> int:
    """The newest outbox item's id (0: none), to tell what a sweep records after it."""
    return int(session.scalar(select(func.max(OutboxItem.id))) or 0)


def notices_recorded(
    *, session: Session, after_id: int, at: datetime, kinds: Sequence[str]
) -> list[Notice]:
    """The reminders and escalations a sweep running at `at` recorded after outbox item
    `after_id`, in order (a dry run reads them before it rolls everything back)."""
    items = session.scalars(
        select(OutboxItem)
        .where(OutboxItem.id > after_id, OutboxItem.kind.in_(kinds), OutboxItem.created_at == at)
        .order_by(OutboxItem.id)
    ).all()
    ids = {row_id(item.payload.get("occurrence_id")) for item in items} - {None}
    found = {
        o.id: o for o in session.scalars(select(TaskOccurrence).where(TaskOccurrence.id.in_(ids)))
    }
    notices = []
    for item in items:
        occurrence = found.get(row_id(item.payload.get("occurrence_id")) or 0)
        if occurrence is not None:
            detail = item.payload.get("tag", item.payload.get("round"))
            notices.append(Notice(item.kind, str(item.payload.get("to", "")), detail, occurrence))
    return notices
