"""Task reminders in Slack: Done (evidence enforced in the modal, files fetched and kept),
Snooze, Reassign, and `/compliance tasks`, over real HTTP with signed requests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.reminders import ReminderSweep
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
    TaskRef,
)
from ledger.models import OutboxItem, TaskOccurrence
from rules.catalog import load_catalog
from rules.tasks import load_tasks
from tests.bot.slack.conftest import Bot, serving, slack_settings
from tests.conftest import FakeClock
from tests.fakes.slack import FakeSlack

OWNER, CHANNEL = "U0OWNER", "C0TASKS"

TASK = """\
id: restore_test
title: Test a backup restore
policy: Disaster Recovery
description: Restore and compare.
controls:
  soc2: [A1.3]
recurrence: FREQ=MONTHLY;BYMONTHDAY=15
start: 2026-01-15
owner: {owner}
channel: {channel}
reminders: [7d, due]
evidence: {evidence}
"""


def task_bot(
    sessions: sessionmaker[Session],
    fake_slack: FakeSlack,
    clock: FakeClock,
    tmp_path: Path,
    evidence: str,
) -> Any:
    """The bot with the calendar on and one monthly task requiring `evidence`."""
    root = tmp_path / "tasks-root"
    (root / "tasks").mkdir(parents=True)
    (root / "tasks" / "restore_test.yaml").write_text(
        TASK.format(owner=OWNER, channel=CHANNEL, evidence=evidence)
    )
    builtin = sorted(load_tasks(frameworks=load_catalog().frameworks).tasks)
    base = slack_settings(fake_slack)
    settings = base.model_copy(
        update={
            "calendar": base.calendar.model_copy(
                update={
                    "enabled": True,
                    "paths": [root],
                    "disabled": builtin,
                    "evidence_dir": tmp_path / "evidence",
                    "max_snooze_days": 7,
                }
            )
        }
    )
    return serving(sessions, fake_slack, clock, settings)


@pytest.fixture
def evidence() -> str:
    """What the task requires (parametrized by tests)."""
    return "note"


@pytest.fixture
def tbot(
    sessions: sessionmaker[Session],
    fake_slack: FakeSlack,
    clock: FakeClock,
    tmp_path: Path,
    evidence: str,
) -> Iterator[Bot]:
    """Serving, with the reminder for the 2026-12-15 occurrence posted to the channel."""
    clock.now = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    with task_bot(sessions, fake_slack, clock, tmp_path, evidence) as bot:
        book = bot.services.book
        assert book is not None
        ReminderSweep(
            tasks=book.tasks, calendar=book.calendar, sessions=sessions, clock=clock
        ).run_once()
        bot.deliver()
        yield bot


def reminder(bot: Bot) -> dict[str, Any]:
    """The reminder message in the task's channel."""
    (message,) = bot.slack.messages[CHANNEL]
    return message


def occurrence_id(bot: Bot) -> int:
    """The occurrence the reminder is about."""
    actions = next(b for b in reminder(bot)["blocks"] if b["type"] == "actions")
    return int(actions["elements"][0]["value"])


def stored(bot: Bot, occ: int) -> TaskOccurrence:
    """The occurrence as the database has it."""
    with bot.sessions() as session:
        found = session.get(TaskOccurrence, occ)
        assert found is not None
        return found


def done_values(
    note: str | None = None, link: str | None = None, files: list[Any] | None = None
) -> dict[str, Any]:
    """The Done modal's state as Slack submits it."""
    return {
        NOTE_BLOCK: {NOTE_INPUT: {"type": "plain_text_input", "value": note}},
        LINK_BLOCK: {LINK_INPUT: {"type": "url_text_input", "value": link}},
        FILE_BLOCK: {FILE_INPUT: {"type": "file_input", "files": files or []}},
    }


def test_done_opens_a_modal_where_the_required_note_is_not_optional(tbot: Bot) -> None:
    """Clicking Done opens the modal; the note (required here) is not optional."""
    occ = occurrence_id(tbot)

    answer = tbot.click("task.done", str(occ), message=reminder(tbot))
    tbot.executor.drain()

    assert answer.status_code == 200
    view = tbot.slack.views_opened[-1]["view"]
    assert view["callback_id"] == "task.done.modal"
    optional = {b["block_id"]: b["optional"] for b in view["blocks"] if b["type"] == "input"}
    assert optional == {NOTE_BLOCK: False, LINK_BLOCK: True, FILE_BLOCK: True}


def test_done_without_the_required_note_keeps_the_modal_open_with_the_reason(
    tbot: Bot,
) -> None:
    """No note: Slack is told to show the error on the note field; nothing is recorded."""
    occ = occurrence_id(tbot)
    ref = TaskRef(occ, CHANNEL, reminder(tbot)["ts"]).dump()

    answer = tbot.submit("task.done.modal", ref, done_values(), "UALICE")

    assert answer.json() == {
        "response_action": "errors",
        "errors": {NOTE_BLOCK: "This task needs a note saying what was done."},
    }
    assert stored(tbot, occ).status == "open"


def test_done_with_a_note_completes_and_updates_the_reminder(tbot: Bot) -> None:
    """The occurrence is done on time by the clicker; the posted reminder loses its buttons."""
    occ = occurrence_id(tbot)
    ref = TaskRef(occ, CHANNEL, reminder(tbot)["ts"]).dump()

    answer = tbot.submit("task.done.modal", ref, done_values(note="restored db-1: ok"), "UALICE")
    tbot.executor.drain()

    done = stored(tbot, occ)
    assert answer.status_code == 200
    assert (done.status, done.completed_by, done.on_time) == ("done", "UALICE", True)
    assert done.evidence_note == "restored db-1: ok"
    message = reminder(tbot)
    assert not [b for b in message["blocks"] if b["type"] == "actions"]
    assert "Done by <@UALICE>, on time" in json.dumps(message["blocks"])


@pytest.mark.parametrize("evidence", ["file"])
def test_an_uploaded_file_is_fetched_from_slack_and_kept_with_its_hash(
    tbot: Bot, tmp_path: Path
) -> None:
    """The file_input's file is downloaded with the bot token and stored by SHA-256."""
    occ = occurrence_id(tbot)
    content = b"restore report: 1,204,331 rows match"
    shared = tbot.slack.shared_file("restore.txt", content)

    tbot.submit("task.done.modal", TaskRef(occ).dump(), done_values(files=[shared]), "UALICE")
    tbot.executor.drain()

    done = stored(tbot, occ)
    digest = hashlib.sha256(content).hexdigest()
    assert done.status == "done"
    assert done.evidence_sha256 == digest
    assert Path(str(done.evidence_file)).read_bytes() == content
    assert Path(str(done.evidence_file)).parent == tmp_path / "evidence" / digest


@pytest.mark.parametrize("evidence", ["link"])
def test_a_link_that_is_not_a_url_is_refused_in_the_modal(tbot: Bot) -> None:
    """A link task with a non-URL link: the modal says what a link must look like."""
    occ = occurrence_id(tbot)

    answer = tbot.submit(
        "task.done.modal", TaskRef(occ).dump(), done_values(link="see drive"), "UALICE"
    )

    assert answer.json()["errors"] == {LINK_BLOCK: "The link must start with https:// or http://."}


def test_snooze_past_the_limit_is_refused_and_within_it_recorded(tbot: Bot) -> None:
    """calendar.max_snooze_days (7): 10 days is refused in the modal; 5 days is kept."""
    occ = occurrence_id(tbot)
    ref = TaskRef(occ).dump()

    def pick(day: str) -> dict[str, Any]:
        return {DATE_BLOCK: {DATE_INPUT: {"type": "datepicker", "selected_date": day}}}

    too_far = tbot.submit("task.snooze.modal", ref, pick("2026-12-18"), "UALICE")
    fine = tbot.submit("task.snooze.modal", ref, pick("2026-12-13"), "UALICE")
    tbot.executor.drain()

    assert too_far.json()["errors"] == {DATE_BLOCK: "a task can be snoozed for at most 7 days"}
    assert fine.status_code == 200
    assert stored(tbot, occ).snoozed_until == datetime(2026, 12, 13, 9, 0, tzinfo=UTC)


def test_reassign_gives_the_occurrence_away_and_tells_the_new_owner(tbot: Bot) -> None:
    """The picked user owns this occurrence and gets a DM with the reminder."""
    occ = occurrence_id(tbot)
    values = {USER_BLOCK: {USER_INPUT: {"type": "users_select", "selected_user": "U0BOB"}}}

    answer = tbot.submit("task.reassign.modal", TaskRef(occ).dump(), values, "UALICE")
    tbot.executor.drain()
    tbot.deliver()

    assert answer.status_code == 200
    assert stored(tbot, occ).assignee == "U0BOB"
    (dm,) = tbot.slack.messages[tbot.slack.dm_channel("U0BOB")]
    assert "Test a backup restore" in dm["text"]
    with tbot.sessions() as session:
        keys = session.scalars(select(OutboxItem.key).where(OutboxItem.kind == "task_remind"))
        assert f"calendar:remind:{occ}:reassigned:U0BOB" in list(keys)


def test_compliance_tasks_lists_what_is_due(tbot: Bot) -> None:
    """`/compliance tasks`: the occurrence, when it is due, and who owns it."""
    answer = tbot.command("tasks")

    text = json.dumps(answer["blocks"])
    assert "Test a backup restore" in text
    assert "2026-12-15 (due in 7 days)" in text
    assert f"<@{OWNER}>" in text
