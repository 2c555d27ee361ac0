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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.slack.task_blocks import TaskView
from ledger import outbox
from ledger.db import transaction
from ledger.models import OccurrenceStatus, TaskOccurrence
from ledger.tasks import CalendarClock, materialize
from rules.catalog import Framework
from rules.errors import CatalogError
from rules.tasks import Task, TaskCatalog, all_leads, describe_controls, resolve_owner

log = structlog.get_logger(__name__)

SINK = "slack"  # delivered by the Slack worker, with its retries and crash adoption


def check_calendar(tasks: TaskCatalog, calendar: Any) -> list[str]:
    """What stops reminders reaching anyone: an owner role not in calendar.owners, a task
    whose reminders have nowhere to go (no user owner, no channel), escalation without `to`."""
    problems = []
    for task in sorted(tasks.tasks.values(), key=lambda t: t.id):
        try:
            owner = resolve_owner(task, calendar.owners)
        except CatalogError as exc:
            problems.append(str(exc))
            continue
        if not owner.startswith(("U", "W")) and not (task.channel or calendar.channel):
            problems.append(
                f"{task.source}: channel: the owner {owner} is a user group, and neither the "
                "task nor calendar.channel names a channel to remind it in"
            )
    return problems


@dataclass
class ReminderSweep:
    """Makes occurrences and records the reminders and escalations that are due."""

    tasks: TaskCatalog
    calendar: Any  # CalendarSettings
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
            window = session.execute(
                select(
                    TaskOccurrence.id,
                    TaskOccurrence.task_id,
                    TaskOccurrence.due_at,
                    TaskOccurrence.snoozed_until,
                    TaskOccurrence.assignee,
                ).where(
                    TaskOccurrence.status == OccurrenceStatus.open,
                    TaskOccurrence.due_at <= now + lead,
                )
            ).all()
            reminders: list[tuple[str, dict[str, Any]]] = []
            escalations: list[tuple[str, dict[str, Any]]] = []
            for occ_id, task_id, due_at, snoozed_until, assignee in window:
                task = self.tasks.tasks.get(task_id)
                if task is None:  # the task left the catalog: its occurrences stay quiet
                    continue
                if snoozed_until is not None and snoozed_until > now:
                    continue
                for key, payload in self._reminders(task, occ_id, due_at, snoozed_until, now):
                    reminders.append((key, {**payload, "assignee": assignee}))
                escalation = self._escalation(occ_id, due_at, now)
                if escalation is not None:
                    escalations.append(escalation)
            recorded = outbox.enqueue_many(
                session=session, sink=SINK, kind="task_remind", items=reminders, now=now
            )
            escalated = outbox.enqueue_many(
                session=session, sink=SINK, kind="task_escalate", items=escalations, now=now
            )
        if made or recorded or escalated:
            log.info("reminders.swept", made=made, reminders=recorded, escalations=escalated)
        return {"occurrences": made, "reminders": recorded, "escalations": escalated}

    def _destinations(self, task: Task) -> list[str]:
        """Where a task's reminders go: its owner (a DM, or the group in the channel), its
        channel (the task's own, else calendar.channel)."""
        out = []
        try:
            owner = resolve_owner(task, self.calendar.owners)
        except CatalogError as exc:  # `config check` and `serve` report it; the channel still
            log.warning("reminders.owner_unmapped", task=task.id, error=str(exc))
            owner = ""
        if owner.startswith(("U", "W")):
            out.append(owner)
        channel = task.channel or self.calendar.channel
        if channel:
            out.append(channel)
        return out

    def _reminders(
        self,
        task: Task,
        occ_id: int,
        due_at: datetime,
        snoozed_until: datetime | None,
        now: datetime,
    ) -> list[tuple[str, dict[str, Any]]]:
        passed = [lead for lead in task.reminders if now >= due_at - lead]
        if not passed:
            return []
        lead = min(passed)  # after downtime, only the latest reminder: no burst of old ones
        tag = f"lead{int(lead.total_seconds())}"
        if snoozed_until is not None and due_at - lead < snoozed_until:
            tag = f"snooze{int(snoozed_until.timestamp())}"  # one reminder when a snooze ends
        return [
            (
                f"calendar:remind:{occ_id}:{tag}:{to}",
                {"occurrence_id": occ_id, "to": to, "lead_seconds": int(lead.total_seconds())},
            )
            for to in self._destinations(task)
        ]

    def _escalation(
        self, occ_id: int, due_at: datetime, now: datetime
    ) -> tuple[str, dict[str, Any]] | None:
        escalation = self.calendar.escalation
        if escalation.to is None:
            return None
        over = now - due_at
        after = timedelta(days=escalation.after_days)
        if over < after or over <= timedelta(0):
            return None
        round_ = int((over - after) / timedelta(days=escalation.every_days))
        return (
            f"calendar:escalate:{occ_id}:{round_}",
            {"occurrence_id": occ_id, "to": escalation.to, "round": round_},
        )


@dataclass(frozen=True)
class TaskBook:
    """The task catalog and calendar settings, to show occurrences to people."""

    tasks: TaskCatalog
    calendar: Any  # CalendarSettings
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

    def view(self, occurrence: TaskOccurrence, now: datetime) -> TaskView | None:
        """An occurrence as messages show it; None when its task left the catalog."""
        task = self.tasks.tasks.get(occurrence.task_id)
        if task is None:
            return None
        today = self.calendar_clock.today(now)
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
        )
