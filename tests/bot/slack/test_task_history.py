"""`/compliance tasks history [task]`: the completion record in Slack, over real HTTP with
signed requests, escaped for mrkdwn and within Slack's limits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from bot.reminders import ReminderSweep
from bot.slack import commands as cmd
from bot.slack.blocks import MAX_BLOCKS, MAX_SECTION
from bot.slack.ids import SlackInputError
from ledger import tasks as occurrences
from ledger.db import transaction
from ledger.tasks import EvidenceFile
from rules.catalog import load_catalog
from rules.tasks import is_task_id, load_tasks
from tests.bot.slack.conftest import Bot, serving, slack_settings
from tests.conftest import FakeClock
from tests.fakes.slack import FakeSlack

OWNER, CHANNEL = "U0OWNER", "C0TASKS"
FRAMEWORKS = load_catalog().frameworks

TASK = """\
id: {id}
title: {title}
policy: Disaster Recovery
description: Restore and compare.
controls:
  soc2: [A1.3]
recurrence: FREQ=DAILY
start: 2026-01-01
owner: {owner}
channel: {channel}
reminders: [due]
evidence: none
"""


@pytest.fixture
def hbot(
    sessions: sessionmaker[Session], fake_slack: FakeSlack, clock: FakeClock, tmp_path: Path
) -> Iterator[Bot]:
    """The bot with the calendar on (timezone Europe/Berlin) and two daily tasks whose
    occurrences for the next 90 days are made."""
    root = tmp_path / "tasks-root"
    (root / "tasks").mkdir(parents=True)
    for task_id, title in (("restore_test", "Test a backup restore"), ("log_review", "Logs")):
        (root / "tasks" / f"{task_id}.yaml").write_text(
            TASK.format(id=task_id, title=title + " daily", owner=OWNER, channel=CHANNEL)
        )
    builtin = sorted(load_tasks(frameworks=FRAMEWORKS).tasks)
    base = slack_settings(fake_slack)
    calendar = base.calendar.model_copy(
        update={
            "enabled": True,
            "timezone": "Europe/Berlin",
            "paths": [root],
            "disabled": builtin,
            "evidence_dir": tmp_path / "evidence",
        }
    )
    settings = base.model_copy(update={"calendar": calendar})
    clock.now = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    with serving(sessions, fake_slack, clock, settings) as bot:
        book = bot.services.book
        assert book is not None
        ReminderSweep(
            tasks=book.tasks, calendar=book.calendar, sessions=sessions, clock=clock
        ).run_once()
        yield bot


def complete(bot: Bot, task_id: str, day: int, at: datetime, **evidence: Any) -> int:
    """Complete a task's occurrence due on 2026-12-`day` at `at`, as the Done modal does."""
    book = bot.services.book
    assert book is not None
    with transaction(bot.sessions) as session:
        (occ,) = [
            o
            for o in occurrences.upcoming(
                session=session, now=at, until=datetime(2027, 1, 1, tzinfo=UTC)
            )
            if o.task_id == task_id and o.due_on.day == day
        ]
        occurrences.complete(
            session=session,
            occurrence_id=occ.id,
            task=book.tasks.tasks[task_id],
            user=evidence.pop("user", OWNER),
            now=at,
            **evidence,
        )
        return occ.id


def texts(answer: dict[str, Any]) -> str:
    """Every mrkdwn text of an answer's blocks, joined."""
    found = []
    for block in answer["blocks"]:
        if isinstance(block.get("text"), dict):
            found.append(block["text"]["text"])
        found.extend(e["text"] for e in block.get("elements", []) if "text" in e)
    return "\n".join(found)


def test_history_lists_completions_latest_first_with_their_evidence(hbot: Bot) -> None:
    """A user sees each completion, the latest first: task, due date, when (calendar time), who
    (a mention), on time or late by how much, the note, the link, the file and its SHA-256."""
    early = complete(
        hbot,
        "restore_test",
        3,
        datetime(2026, 12, 3, 7, 30, tzinfo=UTC),
        file=EvidenceFile(location="/srv/evidence/ab12/restore.log", sha256="ab12" * 16),
    )
    late = complete(
        hbot,
        "log_review",
        3,
        datetime(2026, 12, 4, 11, 0, tzinfo=UTC),  # due 08:00 UTC on the 3rd: 1 day 3 h late
        user="U0CAROL",
        note="All clean",
        link="https://wiki.example.com/logs",
    )

    answer = hbot.command("tasks history")

    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == "2 completed compliance task occurrence(s)"
    shown = texts(answer)
    assert shown.index(f"#{late}") < shown.index(f"#{early}")
    assert "*Logs daily* · due 2026-12-03" in shown
    assert "Done 2026-12-04 12:00 CET by <@U0CAROL>, late by 1 day 3 h" in shown
    assert "*Note:* All clean" in shown
    assert "*Link:* https://wiki.example.com/logs" in shown
    assert "Done 2026-12-03 08:30 CET by <@U0OWNER>, on time" in shown
    assert f"*File:* restore.log · SHA-256 `{'ab12' * 16}`" in shown
    assert "/srv/evidence" not in shown  # where the server keeps it is the CLI's to show


def test_history_of_one_task_and_of_an_unknown_one(hbot: Bot) -> None:
    """`tasks history <task>` keeps that task; a task id nobody has is said so."""
    complete(hbot, "restore_test", 3, datetime(2026, 12, 3, 7, 0, tzinfo=UTC))
    complete(hbot, "log_review", 3, datetime(2026, 12, 3, 7, 0, tzinfo=UTC))

    one = texts(hbot.command("tasks history LOG_REVIEW"))
    unknown = texts(hbot.command("tasks history no_such_task"))
    none_yet = hbot.command("tasks history restore_test")

    assert "Logs daily" in one
    assert "backup restore" not in one
    assert "No task has the id `no_such_task`" in unknown
    assert none_yet["text"] == "1 completed compliance task occurrence(s) of `restore_test`"


def test_hostile_evidence_is_escaped_and_mentions_nobody(hbot: Bot) -> None:
    """A note, link, name or file name holding <!channel>, <@U…>, a disguised link or &amp;
    shows as text: nobody is notified, no link is hidden behind other words."""
    complete(
        hbot,
        "restore_test",
        3,
        datetime(2026, 12, 3, 7, 0, tzinfo=UTC),
        user="<!channel> ops",
        note="<!channel> <@U0BOSS> <https://evil.example|the wiki> &amp; done",
        link="https://example.com/?a=<!here>",
        file=EvidenceFile(location="/e/ff/<!everyone>.pdf", sha256="ff" * 32),
    )

    answer = hbot.command("tasks history")
    shown = texts(answer)

    for raw in ("<!channel>", "<@U0BOSS>", "<https://evil.example", "<!here>", "<!everyone>"):
        assert raw not in shown
        assert raw not in answer["text"]
    assert "&lt;!channel&gt; &lt;@U0BOSS&gt; &lt;https://evil.example|the wiki&gt;" in shown
    assert "&amp;amp; done" in shown
    assert "by &lt;!channel&gt; ops" in shown
    assert "&lt;!everyone&gt;.pdf" in shown


def test_a_long_record_stays_within_slacks_limits(hbot: Bot) -> None:
    """Sixty completions with 20,000-character notes: one answer Slack accepts (at most 50
    blocks, 3,000 characters a section), the latest shown and the rest counted."""
    for day in range(1, 31):
        for task_id in ("restore_test", "log_review"):
            complete(
                hbot,
                task_id,
                day,
                datetime(2026, 12, day, 7, 0, tzinfo=UTC),
                note="&<>" * 7000,
                link="https://example.com/" + "x" * 2000,
            )

    answer = hbot.command("tasks history")

    assert len(answer["blocks"]) <= MAX_BLOCKS
    for block in answer["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= MAX_SECTION
    assert "40 more: `compliancebot tasks history`" in texts(answer)
    assert "Done 2026-12-30" in texts(answer)


def test_history_when_nothing_is_done_or_the_calendar_is_off(
    hbot: Bot, sessions: sessionmaker[Session], fake_slack: FakeSlack, clock: FakeClock
) -> None:
    """Nothing completed yet is said plainly; with the calendar off, the answer says how to
    turn it on."""
    assert "No completed compliance tasks yet." in texts(hbot.command("tasks history"))
    with serving(sessions, fake_slack, clock, slack_settings(fake_slack)) as off:
        answer = off.command("tasks history")
    assert "calendar.enabled" in answer["text"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tasks history ../../etc/passwd", "'../../etc/passwd' is not a task id"),
        ("tasks history a b", "`tasks` takes nothing (what is due) or `history [task id]`"),
        ("tasks later", "`tasks` takes nothing"),
        ("tasks history " + "x" * 3000, "is not a task id"),
        ("tasks history <!channel>", "is not a task id"),
    ],
)
def test_a_bad_history_request_is_answered_with_usage(hbot: Bot, text: str, message: str) -> None:
    """A malformed or oversized argument gets the usage and what was wrong, escaped."""
    answer = hbot.command(text)
    shown = texts(answer)
    assert message.replace("<", "&lt;").replace(">", "&gt;") in shown
    assert "tasks history [task]" in shown
    assert "<!channel>" not in shown


def test_a_forged_or_stale_history_request_reveals_nothing(hbot: Bot) -> None:
    """The record is read by requests Slack signed, recently: the same request forged or
    replayed late gets 401 and no evidence."""
    complete(hbot, "restore_test", 3, datetime(2026, 12, 3, 7, 0, tzinfo=UTC), note="secret")
    body = urlencode(
        {
            "command": "/compliance",
            "text": "tasks history",
            "user_id": "UALICE",
            "channel_id": CHANNEL,
            "team_id": "T0001",
            "response_url": hbot.slack.response_url(),
            "trigger_id": "t",
        }
    )
    stale = int((hbot.clock() - timedelta(minutes=6)).timestamp())

    signed = hbot.post(body)
    forged = hbot.post(body, secret="not-the-signing-secret-but-long-enough")
    replayed = hbot.post(body, timestamp=stale)

    assert "*Note:* secret" in texts(signed.json())
    for answer in (forged, replayed):
        assert answer.status_code == 401
        assert "secret" not in answer.text.replace("signing", "")


@given(st.text(max_size=120))
@example("restore_test")
@example("Log_Review ")
@example("")
def test_any_history_argument_parses_or_is_refused(arg: str) -> None:
    """Whatever follows `tasks history`, the parser gives the task id when it is written as
    one (any case), every task when nothing follows, else a message: never a crash."""
    words = arg.split()
    valid = not words or (len(words) == 1 and is_task_id(words[0].lower()))
    try:
        parsed = cmd.parse(f"tasks history {arg}", FRAMEWORKS)
    except SlackInputError as exc:
        assert not valid, arg
        assert str(exc)  # noqa: PT017 - a refusal must say what is wrong
    else:
        assert valid, arg
        assert parsed == cmd.TasksHistory(words[0].lower() if words else None)
