"""The reminder sweep: occurrences made ahead, reminders and escalations recorded for Slack.

A sweep is idempotent and runs in a constant number of queries, however many tasks and
occurrences there are: the latest due date per task and one bulk insert of new occurrences;
one query for the open occurrences inside the reminder window; bulk inserts of outbox items
whose keys say what each one is. A reminder's key names the lead time it is for and an
escalation's key its round (days overdue, past the first escalation, divided by the cadence),
so a second sweep, a restart or a second replica records nothing twice, and the Slack
delivery worker posts each exactly once (retrying until Slack takes it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import CalendarSettings, Settings
from bot.slack.task_blocks import TaskView
from ledger.db import transaction
from ledger.models import TaskOccurrence
from ledger.services import LedgerError
from ledger.tasks import (
    CalendarClock,
    Escalation,
    EvidenceFile,
    Reminder,
    SweepMark,
    due_by,
    is_overdue,
    mark_swept,
    materialize,
    past_due,
    record_notices,
    store_evidence_file,
    store_evidence_s3,
)
from rules.catalog import Framework
from rules.errors import CatalogError
from rules.tasks import Task, TaskCatalog, all_leads, describe_controls, resolve_owner

log = structlog.get_logger(__name__)

SINK = "slack"  # delivered by the Slack worker, with its retries and crash adoption


def check_calendar(tasks: TaskCatalog, calendar: CalendarSettings) -> list[str]:
    """What stops reminders reaching anyone: an owner role not in calendar.owners, a task
    whose reminders have nowhere to go (a user group owner and no channel). Each problem is
    one line, `file:line: field: message`, like every other task error."""
    problems = []
    for task in sorted(tasks.tasks.values(), key=lambda t: t.id):
        try:
            owner = resolve_owner(task, calendar.owners)
        except CatalogError as exc:
            problems.append(str(exc))
            continue
        if not owner.startswith(("U", "W")) and not (task.channel or calendar.channel):
            # The task has no `channel:` line to point at: the owner's line is the cause.
            problems.append(
                str(
                    task.error(
                        "owner",
                        f"the owner {owner} is a user group, and neither the task (channel) nor "
                        "calendar.channel names a channel to remind it in",
                    )
                )
            )
    return problems


@dataclass
class ReminderSweep:
    """Makes occurrences and records the reminders and escalations that are due."""

    tasks: TaskCatalog
    calendar: CalendarSettings
    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]
    queries: list[str] = field(default_factory=list)  # filled by the bench's counter

    @property
    def calendar_clock(self) -> CalendarClock:
        """The calendar's time zone and due time."""
        return CalendarClock(self.calendar.timezone, self.calendar.due_time)

    def run_once(self) -> dict[str, int]:
        """One sweep: make occurrences, record due reminders and escalations."""
        now = self.clock()
        tasks = list(self.tasks.tasks.values())
        lead = all_leads(tasks)
        with transaction(self.sessions) as session:
            made = materialize(
                session=session,
                tasks=tasks,
                clock=self.calendar_clock,
                now=now,
                horizon=max(timedelta(days=self.calendar.horizon_days), lead),
            )
        with transaction(self.sessions) as session:
            reminders: list[Reminder] = []
            escalations: list[Escalation] = []
            marks: list[SweepMark] = []
            for due in due_by(session=session, until=now + lead):
                task = self.tasks.tasks.get(due.task_id)
                if task is None:  # the task left the catalog: its occurrences stay quiet
                    continue
                if due.snoozed_until is not None and due.snoozed_until > now:
                    continue
                tag = self._tag(task, due.due_at, due.snoozed_until, now)
                round_ = self._round(due.due_at, now)
                if tag == due.reminded and round_ < due.escalations:
                    continue  # recorded by an earlier sweep: nothing to do
                if tag is not None and tag != due.reminded:
                    reminders.extend(
                        Reminder(due.id, to, tag) for to in self._destinations(task, due.assignee)
                    )
                if round_ >= due.escalations and self.calendar.escalation.to is not None:
                    escalations.append(Escalation(due.id, self.calendar.escalation.to, round_))
                marks.append(SweepMark(due.id, tag, max(due.escalations, round_ + 1)))
            recorded, escalated = record_notices(
                session=session, sink=SINK, now=now, reminders=reminders, escalations=escalations
            )
            mark_swept(session=session, marks=marks)
        if made or recorded or escalated:
            log.info("reminders.swept", made=made, reminders=recorded, escalations=escalated)
        return {"occurrences": made, "reminders": recorded, "escalations": escalated}

    def _destinations(self, task: Task, assignee: str | None) -> list[str]:
        """Where a task's reminders go: whoever has it (the reassignee or the owner: a DM;
        a user group is mentioned in the channel) and the task's channel, else the calendar's."""
        out = []
        try:
            owner = assignee or resolve_owner(task, self.calendar.owners)
        except CatalogError as exc:  # `config check` and `serve` report it; the channel still
            log.warning("reminders.owner_unmapped", task=task.id, error=str(exc))
            owner = ""
        if owner.startswith(("U", "W")):
            out.append(owner)
        channel = task.channel or self.calendar.channel
        if channel:
            out.append(channel)
        return out

    @staticmethod
    def _tag(
        task: Task, due_at: datetime, snoozed_until: datetime | None, now: datetime
    ) -> str | None:
        """Which reminder is due now: the latest lead time passed (after downtime, only that
        one, not a burst of old ones), or the end of a snooze that covered it; None: none."""
        passed = [lead for lead in task.reminders if now >= due_at - lead]
        if not passed:
            return None
        lead = min(passed)
        if snoozed_until is not None and due_at - lead < snoozed_until:
            return f"snooze{int(snoozed_until.timestamp())}"
        return f"lead{int(lead.total_seconds())}"

    def _round(self, due_at: datetime, now: datetime) -> int:
        """The escalation round due now (-1: none): days overdue past the first escalation,
        divided by the cadence."""
        escalation = self.calendar.escalation
        over = now - due_at
        after = timedelta(days=escalation.after_days)
        if escalation.to is None or not past_due(due_at, now) or over < after:
            return -1
        return int((over - after) / timedelta(days=escalation.every_days))


@dataclass(frozen=True)
class TaskBook:
    """The task catalog and calendar settings, to show occurrences to people."""

    tasks: TaskCatalog
    calendar: CalendarSettings
    frameworks: Mapping[str, Framework]

    @property
    def calendar_clock(self) -> CalendarClock:
        """The calendar's time zone and due time."""
        return CalendarClock(self.calendar.timezone, self.calendar.due_time)

    def owner(self, task: Task, occurrence: TaskOccurrence) -> str:
        """Who it is for: the reassignee, the task's owner, or its role when unmapped."""
        if occurrence.assignee:
            return occurrence.assignee
        try:
            return resolve_owner(task, self.calendar.owners)
        except CatalogError:
            return task.owner

    def holders(self, task: Task, occurrence: TaskOccurrence) -> tuple[str, ...]:
        """Who has it (user or group IDs): the reassignee and the task's owner; an owner role
        missing from calendar.owners is nobody."""
        try:
            owner = resolve_owner(task, self.calendar.owners)
        except CatalogError:
            owner = ""
        return tuple(dict.fromkeys(h for h in (occurrence.assignee, owner) if h))

    def view(self, occurrence: TaskOccurrence, now: datetime) -> TaskView | None:
        """An occurrence as messages show it; None when its task left the catalog."""
        task = self.tasks.tasks.get(occurrence.task_id)
        if task is None:
            return None
        clock = self.calendar_clock
        today = clock.today(now)
        snoozed = occurrence.snooze_at(now)
        return TaskView(
            occurrence_id=occurrence.id,
            task_id=task.id,
            title=task.title,
            policy=str(task.policy),
            due_on=occurrence.due_on,
            days_left=(occurrence.due_on - today).days,
            owner=self.owner(task, occurrence),
            evidence=str(task.evidence),
            procedure=task.procedure,
            controls=describe_controls(task, self.frameworks),
            status=occurrence.status,
            completed_by=occurrence.completed_by,
            on_time=occurrence.on_time,
            holders=self.holders(task, occurrence),
            overdue=is_overdue(occurrence, now),
            due_local=occurrence.due_at.astimezone(clock.zone),
            snoozed_until=clock.today(snoozed) if snoozed else None,
            snoozed_by=occurrence.snoozed_by,
        )


EvidenceStore = Callable[[str, Iterable[bytes]], EvidenceFile]


def evidence_store(settings: Settings) -> EvidenceStore:
    """Where evidence files go: calendar.evidence_bucket (S3) if set, else evidence_dir; a file
    over calendar.max_evidence_mb is refused as it streams in. A store that fails (a full
    disk, an evidence_dir that is a file, S3 refusing) is a LedgerError naming the setting, so
    the CLI and Slack say why the task is not done instead of failing with a traceback."""
    calendar = settings.calendar
    cap = calendar.max_evidence_mb * 1024 * 1024
    if calendar.evidence_bucket:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, prefix = calendar.evidence_bucket.removeprefix("s3://").partition("/")
        client = boto3.client("s3", endpoint_url=settings.aws.endpoint_url)

        def to_s3(name: str, chunks: Iterable[bytes]) -> EvidenceFile:
            try:
                return store_evidence_s3(client, bucket, prefix, name, chunks, max_bytes=cap)
            except (BotoCoreError, ClientError, OSError) as exc:
                where = f"calendar.evidence_bucket ({calendar.evidence_bucket})"
                raise _not_kept(name, where, exc) from exc

        return to_s3

    def to_dir(name: str, chunks: Iterable[bytes]) -> EvidenceFile:
        try:
            return store_evidence_file(calendar.evidence_dir, name, chunks, max_bytes=cap)
        except OSError as exc:
            where = f"calendar.evidence_dir ({calendar.evidence_dir})"
            raise _not_kept(name, where, exc) from exc

    return to_dir


def _not_kept(name: str, where: str, exc: Exception) -> LedgerError:
    reason = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
    # One line whatever the uploader called the file.
    return LedgerError(f"{' '.join(name.split())[:80]} could not be kept in {where}: {reason}")
