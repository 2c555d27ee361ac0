"""Block Kit for the compliance calendar: a task reminder, an escalation, the task list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from bot.slack.blocks import Block, button, clip, context, esc, modal, section
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


def mention(owner: str) -> str:
    """A user, a user group, or a plain role name."""
    if is_user_id(owner):
        return f"<@{owner}>"
    if is_group_id(owner):
        return f"<!subteam^{owner}>"
    return esc(owner)


def when(days_left: int) -> str:
    """'due today', 'due in 3 days', 'overdue by 2 days'."""
    if days_left == 0:
        return "due today"
    if days_left > 0:
        return f"due in {days_left} day{'s' * (days_left != 1)}"
    return f"overdue by {-days_left} day{'s' * (days_left != -1)}"


def task_text(t: TaskView) -> str:
    """The notification text (and what screen readers say); Slack reads it as mrkdwn too."""
    return f"{esc(t.title)}: {when(t.days_left)} ({t.due_on:%Y-%m-%d})"


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
                    f"*Due*\n{t.due_on:%Y-%m-%d} ({when(t.days_left)})",
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
    overdue = [v for v in views if v.days_left < 0]
    lines = [
        f"{':red_circle:' if v.days_left < 0 else ':white_circle:'} *{esc(v.title)}* · "
        f"{v.due_on:%Y-%m-%d} ({when(v.days_left)}) · {mention(v.owner)} · #{v.occurrence_id}"
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
            section(f"*{esc(t.title)}*\nDue {t.due_on:%Y-%m-%d} ({when(t.days_left)})"),
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
            section(f"*{esc(t.title)}*\nDue {t.due_on:%Y-%m-%d} ({when(t.days_left)})"),
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
