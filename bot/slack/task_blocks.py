"""Block Kit for the compliance calendar: a task reminder, an escalation, the task list, the
completion record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.slack.blocks import Block, button, clip, context, esc, modal, section, who
from bot.slack.ids import (
    DATE_BLOCK,
    DATE_INPUT,
    FILE_BLOCK,
    FILE_INPUT,
    LINK_BLOCK,
    LINK_INPUT,
    NOTE_BLOCK,
    NOTE_INPUT,
    USER_BLOCK,
    USER_INPUT,
    ActionId,
    TaskRef,
    ViewId,
)
from ledger.tasks import Completion
from rules.tasks import is_group_id, is_user_id


@dataclass(frozen=True)
class TaskView:
    """One occurrence as a message shows it."""

    occurrence_id: int
    task_id: str
    title: str
    policy: str
    due_on: date
    days_left: int  # negative: overdue by that many days
    owner: str  # a Slack user or user group ID, or a role name
    evidence: str
    procedure: str | None
    controls: Sequence[tuple[str, Sequence[str]]]
    status: str = "open"
    completed_by: str | None = None
    on_time: bool | None = None
    # Who may act on it besides approvers: the reassignee and the task's owner (user or group).
    holders: tuple[str, ...] = ()
    # Past its due instant (ledger.tasks.is_overdue): hours after the due time on the due date
    # already count, so `days_left` alone never says it.
    overdue: bool = False
    due_local: datetime | None = None  # the due instant in the calendar's time zone
    snoozed_until: date | None = None  # reminders held until this day (still in the future)
    snoozed_by: str | None = None


def mention(owner: str) -> str:
    """A user, a user group, or a plain role name."""
    if is_user_id(owner):
        return f"<@{owner}>"
    if is_group_id(owner):
        return f"<!subteam^{owner}>"
    return esc(owner)


def when(t: TaskView) -> str:
    """'due today', 'due in 3 days', 'overdue since 09:00 today', 'overdue by 2 days', 'done':
    overdue is the ledger's one definition (past the due instant), the days are calendar days."""
    if t.status == "done":
        return "done"
    if t.overdue:
        if t.days_left < 0:
            return f"overdue by {-t.days_left} day{'s' * (t.days_left != -1)}"
        return f"overdue since {t.due_local:%H:%M} today" if t.due_local else "overdue"
    if t.days_left <= 0:
        return "due today"
    return f"due in {t.days_left} day{'s' * (t.days_left != 1)}"


def task_text(t: TaskView, *, escalation: bool = False) -> str:
    """The notification text (and what screen readers say); Slack reads it as mrkdwn too."""
    text = f"{esc(t.title)}: {when(t)} ({t.due_on:%Y-%m-%d})"
    if escalation and t.status != "done":
        return f"Overdue, for {mention(t.owner)}: {text}"
    return text


def task_blocks(t: TaskView, *, escalation: bool = False) -> list[Block]:
    """A reminder (or an escalation): what, when, who, what evidence, and the buttons."""
    icon = ":rotating_light:" if escalation else ":spiral_calendar_pad:"
    lead = f"{icon} *{esc(t.title)}*"
    if escalation:
        lead = f"{icon} *Overdue:* {esc(t.title)}"
    blocks: list[Block] = [
        section(lead),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": clip(text, 2000)}
                for text in (
                    f"*Due*\n{t.due_on:%Y-%m-%d} ({when(t)})",
                    f"*Owner*\n{mention(t.owner)}",
                    f"*Policy*\n{esc(t.policy)}",
                    f"*Evidence*\n{_evidence(t.evidence)}",
                )
            ],
        },
    ]
    if t.controls:
        lines = [f"*{esc(name)}*: {esc(', '.join(ids))}" for name, ids in t.controls]
        blocks.append(section("*Controls*\n" + "\n".join(lines)))
    if t.procedure:
        blocks.append(section("*How*\n" + esc(t.procedure)))
    if t.status == "done":
        timing = "on time" if t.on_time else "late"
        blocks.append(
            section(f":white_check_mark: Done by {mention(t.completed_by or '')}, {timing}")
        )
    elif t.snoozed_until is not None:
        by = f" by {mention(t.snoozed_by)}" if t.snoozed_by else ""
        blocks.append(section(f":zzz: Snoozed{by}: no reminders until {t.snoozed_until:%Y-%m-%d}"))
    blocks.append(context(f"Task `{esc(t.task_id)}` · occurrence #{t.occurrence_id}"))
    if t.status != "done":
        value = str(t.occurrence_id)
        blocks.append(
            {
                "type": "actions",
                "block_id": f"task:{t.occurrence_id}",
                "elements": [
                    button("Done", ActionId.task_done, value, style="primary"),
                    button("Snooze", ActionId.task_snooze, value),
                    button("Reassign", ActionId.task_reassign, value),
                ],
            }
        )
    return blocks


def _evidence(kind: str) -> str:
    return {
        "none": "none needed",
        "note": "a note",
        "link": "a link",
        "file": "a file",
    }.get(kind, esc(kind))


def tasks_list_blocks(views: Sequence[TaskView], *, horizon_days: int) -> list[Block]:
    """`/compliance tasks`: overdue and upcoming occurrences, soonest first."""
    if not views:
        return [section(f"No compliance tasks are due in the next {horizon_days} days.")]
    overdue = [v for v in views if v.overdue]
    lines = [
        f"{':red_circle:' if v.overdue else ':white_circle:'} *{esc(v.title)}* · "
        f"{v.due_on:%Y-%m-%d} ({when(v)}) · {mention(v.owner)} · #{v.occurrence_id}"
        for v in views[:40]
    ]
    head = f"*Compliance tasks* ({len(overdue)} overdue, next {horizon_days} days)"
    blocks = [section(head), section("\n".join(lines))]
    if len(views) > 40:
        blocks.append(context(f"{len(views) - 40} more: `compliancebot tasks list`"))
    return blocks


# ---- modals ------------------------------------------------------------------------------------


def _input(block_id: str, label: str, element: Block, *, optional: bool, hint: str = "") -> Block:
    out: Block = {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": {"type": "plain_text", "text": label},
        "element": element,
    }
    if hint:
        out["hint"] = {"type": "plain_text", "text": hint}
    return out


def done_modal(ref: TaskRef, t: TaskView) -> dict[str, Any]:
    """Done: a note, a link, a file; the one the task requires is not optional."""
    need = t.evidence
    return modal(
        ViewId.task_done,
        "Complete task",
        "Done",
        ref,
        [
            section(f"*{esc(t.title)}*\nDue {t.due_on:%Y-%m-%d} ({when(t)})"),
            _input(
                NOTE_BLOCK,
                "What was done",
                {
                    "type": "plain_text_input",
                    "action_id": NOTE_INPUT,
                    "multiline": True,
                    "max_length": 2000,
                },
                optional=need != "note",
            ),
            _input(
                LINK_BLOCK,
                "Link to the evidence",
                {"type": "url_text_input", "action_id": LINK_INPUT},
                optional=need != "link",
                hint="A document, ticket or report.",
            ),
            _input(
                FILE_BLOCK,
                "Evidence file",
                {"type": "file_input", "action_id": FILE_INPUT, "max_files": 1},
                optional=need != "file",
                hint="Kept with its SHA-256 for the auditors.",
            ),
        ],
    )


def task_snooze_modal(ref: TaskRef, t: TaskView, default: date, max_days: int) -> dict[str, Any]:
    """Snooze: no reminders until a date (the due date does not move)."""
    return modal(
        ViewId.task_snooze,
        "Snooze task",
        "Snooze",
        ref,
        [
            section(f"*{esc(t.title)}*\nDue {t.due_on:%Y-%m-%d} ({when(t)})"),
            _input(
                DATE_BLOCK,
                "Remind me again on",
                {"type": "datepicker", "action_id": DATE_INPUT, "initial_date": f"{default}"},
                optional=False,
                hint=f"At most {max_days} days; the due date stays {t.due_on:%Y-%m-%d}.",
            ),
        ],
    )


def reassign_modal(ref: TaskRef, t: TaskView) -> dict[str, Any]:
    """Reassign this occurrence to someone else."""
    return modal(
        ViewId.task_reassign,
        "Reassign task",
        "Reassign",
        ref,
        [
            section(f"*{esc(t.title)}*\nDue {t.due_on:%Y-%m-%d}, now {mention(t.owner)}"),
            _input(
                USER_BLOCK,
                "Give it to",
                {"type": "users_select", "action_id": USER_INPUT},
                optional=False,
                hint="Only this occurrence; the next ones stay with the task's owner.",
            ),
        ],
    )


# ---- the completion record ---------------------------------------------------------------------

HISTORY_SHOWN = 20  # completions per Slack answer: a section each, far below 50 blocks
_NOTE_SHOWN = 600
_LINK_SHOWN = 500


def duration(span: timedelta) -> str:
    """'2 days 3 h', '5 h 10 min', '40 min', 'less than a minute'."""
    minutes = int(span.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} day{'s' * (days != 1)}"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if mins and not days:
        parts.append(f"{mins} min")
    return " ".join(parts) or "less than a minute"


def timeliness(c: Completion) -> str:
    """'on time', or 'late by 2 days 3 h' (after the due date at calendar.due_time)."""
    late = c.late_by
    return "on time" if late is None else f"late by {duration(late)}"


def local_time(at: datetime, zone: ZoneInfo) -> str:
    """An instant in the calendar's time zone: '2026-12-14 10:03 CET'."""
    return f"{at.astimezone(zone):%Y-%m-%d %H:%M %Z}"


def history_text(total: int, task: str | None) -> str:
    """The notification text of `/compliance tasks history` (escaped: it holds a task id)."""
    of = f" of `{esc(task)}`" if task else ""
    return f"{total} completed compliance task occurrence(s){of}"


def history_blocks(
    rows: Sequence[Completion],
    titles: Mapping[str, str],
    *,
    total: int,
    zone: ZoneInfo,
    task: str | None = None,
) -> list[Block]:
    """`/compliance tasks history [task]`: completions, the latest first, each with who, when,
    on time or late, and its evidence (note, link, file name and SHA-256)."""
    if not rows:
        if task is not None and task not in titles:
            return [section(f"No task has the id `{esc(task)}`: `/compliance tasks` lists them.")]
        of = f" of `{esc(task)}`" if task else ""
        return [section(f"No completed compliance tasks{of} yet.")]
    head = f"*Completed compliance tasks*{f' · `{esc(task)}`' if task else ''} (latest first)"
    blocks = [section(head)]
    for c in rows[:HISTORY_SHOWN]:
        title = titles.get(c.task_id, c.task_id)
        late = c.late_by
        mark = ":white_check_mark:" if late is None else ":warning:"
        lines = [
            f"{mark} *{esc(title)}* · due {c.due_on:%Y-%m-%d} · #{c.occurrence_id}",
            f"Done {local_time(c.completed_at, zone)} by {who(c.completed_by)}, {timeliness(c)}",
        ]
        if c.note:
            lines.append(f"*Note:* {clip(esc(c.note), _NOTE_SHOWN)}")
        if c.link:
            lines.append(f"*Link:* {clip(esc(c.link), _LINK_SHOWN)}")
        if c.file_name:
            lines.append(f"*File:* {esc(c.file_name)} · SHA-256 `{esc(c.sha256 or '?')}`")
        blocks.append(section("\n".join(lines)))
    shown = min(len(rows), HISTORY_SHOWN)
    if total > shown:
        cli = "compliancebot tasks history" + (f" --task {esc(task)}" if task else "")
        blocks.append(context(f"{total - shown} more: `{cli}`"))
    return blocks
