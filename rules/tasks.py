"""The compliance calendar's task catalog: administrative tasks as data (`rules/tasks/*.yaml`).

A task is work no scanner can do (review IAM access, test a backup restore, run the training)
with a recurrence (an RFC 5545 RRULE), the policy it belongs to, the controls it serves (the
same crosswalk as rules), an owner, reminder lead times and the evidence completing it needs.
Errors name the file, the line and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from dateutil.rrule import rrule, rrulestr
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rules.catalog import BUILTIN_DIR, Framework, _pydantic_error
from rules.errors import CatalogError
from rules.yamlfile import YamlDoc, load_yaml

TASKS_DIR = "tasks"
DEFAULT_START = date(2026, 1, 1)


class Policy(StrEnum):
    """The policy a task belongs to."""

    system_access = "System Access"
    disaster_recovery = "Disaster Recovery"
    employee_training = "Employee Training"
    configuration_management = "Configuration Management"
    breach = "Breach"
    auditing = "Auditing"
    roles = "Roles"
    facility = "Facility"


class Evidence(StrEnum):
    """What completing an occurrence must come with."""

    none = "none"
    note = "note"
    link = "link"
    file = "file"


_LEAD = re.compile(r"^(?P<n>\d{1,3})(?P<unit>[dhw])$")
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SLACK_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")
_MAX_ID = 32
_ROLE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")
# A task id: also its file name, and what the CLI and Slack take to name a task.
TASK_ID_PATTERN = r"^[a-z][a-z0-9_]{2,79}$"


def parse_lead(text: str) -> timedelta:
    """'7d', '12h', '2w', or 'due' (0) as a timedelta; ValueError naming the form otherwise."""
    if text == "due":
        return timedelta(0)
    m = _LEAD.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a lead time: write 7d, 12h, 2w or due")
    unit = {"d": "days", "h": "hours", "w": "weeks"}[m.group("unit")]
    return timedelta(**{unit: int(m.group("n"))})


class TaskFile(BaseModel):
    """The YAML shape of one task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=TASK_ID_PATTERN)]
    title: Annotated[str, Field(min_length=5, max_length=150)]
    policy: Policy
    description: Annotated[str, Field(min_length=1)]
    procedure: str | None = None
    controls: dict[str, list[str]]
    recurrence: Annotated[str, Field(min_length=6)]
    start: date = DEFAULT_START
    owner: str
    channel: str | None = None
    reminders: list[str] = ["7d", "1d", "due"]
    evidence: Evidence = Evidence.note

    @field_validator("controls")
    @classmethod
    def _some_controls(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not value or not any(value.values()):
            raise ValueError("cite at least one control, e.g. {soc2: [CC6.2]}")
        return value

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str) -> str:
        if not (_SLACK_USER.match(value) or _SLACK_GROUP.match(value) or _ROLE.match(value)):
            raise ValueError(
                f"{value!r} is not an owner: a Slack user ID (U...), a user group ID (S...) or "
                "a role name defined in calendar.owners (lower case, e.g. security)"
            )
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not _CHANNEL.match(value):
            raise ValueError(f"{value!r} is not a Slack channel ID (C... or G...)")
        return value

    @field_validator("reminders")
    @classmethod
    def _reminders(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_lead(text)
        return value


@dataclass(frozen=True)
class Task:
    """A validated task, ready to schedule."""

    id: str
    title: str
    policy: Policy
    description: str
    procedure: str | None
    controls: Mapping[str, tuple[str, ...]]
    recurrence: str
    start: date
    owner: str
    channel: str | None
    reminders: tuple[timedelta, ...]  # longest lead first
    evidence: Evidence
    source: str
    # The line of each top-level field in `source`, so a check made after loading (an owner
    # role missing from the config) is reported at file:line like a parse error.
    lines: Mapping[str, int] = field(default_factory=dict, compare=False)

    def error(self, name: str, message: str) -> CatalogError:
        """A problem with one of the task's fields, as `file:line: field: message`."""
        return CatalogError(self.source, message, line=self.lines.get(name), field=name)

    @cached_property
    def rule(self) -> rrule:
        """The recurrence, parsed once."""
        return _rule(self.recurrence, self.start)

    def due_dates(self, after: date, until: date) -> list[date]:
        """The task's due dates d with after < d <= until."""
        rule = self.rule
        first = datetime.combine(after, time()) + timedelta(days=1)
        last = datetime.combine(until, time())
        return [d.date() for d in rule.between(first, last, inc=True)]


@dataclass
class TaskCatalog:
    """Every task, by id."""

    tasks: dict[str, Task] = field(default_factory=dict)


def _rule(recurrence: str, start: date) -> rrule:
    # cache=True: the dates generated so far are kept, so the next sweep does not walk the
    # rule again from its start.
    parsed = rrulestr(recurrence, dtstart=datetime.combine(start, time()), cache=True)
    if not isinstance(parsed, rrule):  # an RRULE set (several rules, EXDATE): not supported
        raise ValueError("give one RRULE (FREQ=...;...), not a set")
    return parsed


def _check_recurrence(recurrence: str, start: date) -> None:
    text = recurrence.strip()
    if text.upper().startswith(("DTSTART", "RRULE:")) or "\n" in text:
        raise ValueError("give the rule alone, e.g. FREQ=WEEKLY;BYDAY=MO (the date is `start`)")
    try:
        rule = _rule(text, start)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{recurrence!r} is not a valid RRULE: {exc}") from exc
    freq = re.search(r"FREQ=(\w+)", text.upper())
    if freq is None or freq.group(1) not in ("DAILY", "WEEKLY", "MONTHLY", "YEARLY"):
        raise ValueError("tasks recur at most daily (FREQ=DAILY, WEEKLY, MONTHLY or YEARLY)")
    if rule.after(datetime.combine(start, time()), inc=True) is None:
        raise ValueError(f"{recurrence!r} never falls due from {start}")


def task_files(root: Path) -> list[Path]:
    """Task YAML files in `root`/tasks."""
    return sorted((root / TASKS_DIR).glob("*.yaml"))


def load_task(path: Path, *, frameworks: Mapping[str, Framework]) -> Task:
    """One task file, validated against the known frameworks."""
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise CatalogError(str(path), "a task file must be a mapping")
    try:
        model = TaskFile.model_validate(doc.data)
    except ValidationError as exc:
        raise _pydantic_error(doc, exc) from exc
    if model.id != path.stem:
        raise doc.error(("id",), f"id {model.id!r} must match the file name {path.stem!r}")
    _check_controls(doc, model.controls, frameworks)
    try:
        _check_recurrence(model.recurrence, model.start)
    except ValueError as exc:
        raise doc.error(("recurrence",), str(exc)) from exc
    leads = sorted({parse_lead(t) for t in model.reminders}, reverse=True)
    return Task(
        id=model.id,
        title=model.title,
        policy=model.policy,
        description=model.description.strip(),
        procedure=model.procedure.strip() if model.procedure else None,
        controls={fw: tuple(c) for fw, c in model.controls.items() if c},
        recurrence=model.recurrence.strip(),
        start=model.start,
        owner=model.owner,
        channel=model.channel,
        reminders=tuple(leads),
        evidence=model.evidence,
        source=str(path),
        lines={str(k[0]): line for k, line in doc.lines.items() if len(k) == 1},
    )


def _check_controls(
    doc: YamlDoc, controls: Mapping[str, list[str]], frameworks: Mapping[str, Framework]
) -> None:
    for fw, ids in controls.items():
        if fw not in frameworks:
            raise doc.error(
                ("controls", fw),
                f"unknown framework {fw!r}; known: {', '.join(sorted(frameworks))}",
            )
        for i, control in enumerate(ids):
            if control not in frameworks[fw].controls:
                raise doc.error(
                    ("controls", fw, i),
                    f"unknown {fw} control {control!r} (see {frameworks[fw].source})",
                )


def load_tasks(
    *,
    frameworks: Mapping[str, Framework],
    extra_paths: Iterable[Path] = (),
    disabled: Iterable[str] = (),
    include_builtin: bool = True,
) -> TaskCatalog:
    """Built-in tasks plus the user's (a user task with a built-in id replaces it)."""
    roots = ([BUILTIN_DIR] if include_builtin else []) + [Path(p) for p in extra_paths]
    catalog = TaskCatalog()
    for root in roots:
        if not root.is_dir():
            raise CatalogError(str(root), "task directory does not exist")
        for path in task_files(root):
            task = load_task(path, frameworks=frameworks)
            catalog.tasks[task.id] = task
    for task_id in disabled:
        if task_id not in catalog.tasks:
            raise CatalogError(
                "calendar.disabled",
                f"unknown task {task_id!r}; known: {', '.join(sorted(catalog.tasks))}",
            )
        del catalog.tasks[task_id]
    return catalog


def resolve_owner(task: Task, owners: Mapping[str, str]) -> str:
    """The Slack user or group that owns a task: its own ID, or its role's from the config."""
    if _SLACK_USER.match(task.owner) or _SLACK_GROUP.match(task.owner):
        return task.owner
    if task.owner in owners:
        return owners[task.owner]
    # Role names come from the config file: one line each, whatever they hold.
    known = ", ".join(sorted(" ".join(role.split())[:40] for role in owners)) or "none"
    raise task.error(
        "owner", f"owner role {task.owner!r} is not in calendar.owners (defined: {known})"
    )


def is_user_id(value: str) -> bool:
    """A Slack member ID (U... or W...), as people in task owners and assignees are written."""
    # Slack's IDs are about a dozen characters: a longer one is not an ID, whatever it spells.
    return len(value) <= _MAX_ID and bool(_SLACK_USER.fullmatch(value))


def is_group_id(value: str) -> bool:
    """A Slack user group ID (S...)."""
    return len(value) <= _MAX_ID and bool(_SLACK_GROUP.fullmatch(value))


def is_task_id(value: str) -> bool:
    """Written like a task id (lower case, digits, `_`; 3 to 80 characters)."""
    return re.fullmatch(TASK_ID_PATTERN, value) is not None


def all_leads(tasks: Iterable[Task]) -> timedelta:
    """The longest reminder lead time of any task (how far ahead occurrences are needed)."""
    return max((t.reminders[0] for t in tasks if t.reminders), default=timedelta(0))


def describe_controls(task: Task, frameworks: Mapping[str, Framework]) -> list[tuple[str, Any]]:
    """(framework name, control ids) for display."""
    return [
        (frameworks[fw].name if fw in frameworks else fw, list(ids))
        for fw, ids in task.controls.items()
    ]
