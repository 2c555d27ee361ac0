"""Task reminders in Slack: Done (evidence enforced in the modal, files fetched and kept),
Snooze, Reassign, and `/compliance tasks`, over real HTTP with signed requests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
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
from ledger.models import AuditEntry, OutboxItem, TaskOccurrence
from rules.catalog import load_catalog
from rules.tasks import load_tasks
from tests.bot.slack.conftest import APPROVER, Bot, serving, slack_settings
from tests.conftest import FakeClock
from tests.fakes.loopback import LoopbackServer
from tests.fakes.slack import FakeSlack

OWNER, CHANNEL = "U0OWNER", "C0TASKS"
GROUP, MEMBER = "S0OPS", "U0CAROL"  # a user group and one of its members
STRANGER = "UALICE"  # in the workspace, neither owner, assignee, member nor approver

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
    owner: str = OWNER,
    max_evidence_mb: int = 50,
) -> Any:
    """The bot with the calendar on and one monthly task of `owner` requiring `evidence`;
    files are fetched from the fake Slack's file host."""
    root = tmp_path / "tasks-root"
    (root / "tasks").mkdir(parents=True)
    (root / "tasks" / "restore_test.yaml").write_text(
        TASK.format(owner=owner, channel=CHANNEL, evidence=evidence)
    )
    builtin = sorted(load_tasks(frameworks=load_catalog().frameworks).tasks)
    base = slack_settings(fake_slack, files_url=fake_slack.root_url)
    settings = base.model_copy(
        update={
            "calendar": base.calendar.model_copy(
                update={
                    "enabled": True,
                    "paths": [root],
                    "disabled": builtin,
                    "evidence_dir": tmp_path / "evidence",
                    "max_snooze_days": 7,
                    "max_evidence_mb": max_evidence_mb,
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
def owner() -> str:
    """Who owns the task (parametrized by tests): a user or a user group ID."""
    return OWNER


@pytest.fixture
def max_evidence_mb() -> int:
    """calendar.max_evidence_mb (parametrized by tests)."""
    return 50


@pytest.fixture
def tbot(
    sessions: sessionmaker[Session],
    fake_slack: FakeSlack,
    clock: FakeClock,
    tmp_path: Path,
    evidence: str,
    owner: str,
    max_evidence_mb: int,
) -> Iterator[Bot]:
    """Serving, with the reminder for the 2026-12-15 occurrence posted to the channel."""
    clock.now = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    fake_slack.usergroups[GROUP] = [MEMBER]
    with task_bot(sessions, fake_slack, clock, tmp_path, evidence, owner, max_evidence_mb) as bot:
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

    answer = tbot.click("task.done", str(occ), user=OWNER, message=reminder(tbot))
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

    answer = tbot.submit("task.done.modal", ref, done_values(), OWNER)

    assert answer.json() == {
        "response_action": "errors",
        "errors": {NOTE_BLOCK: "This task needs a note saying what was done."},
    }
    assert stored(tbot, occ).status == "open"


def test_done_with_a_note_completes_and_updates_the_reminder(tbot: Bot) -> None:
    """The occurrence is done on time by the clicker; the posted reminder loses its buttons."""
    occ = occurrence_id(tbot)
    ref = TaskRef(occ, CHANNEL, reminder(tbot)["ts"]).dump()

    answer = tbot.submit("task.done.modal", ref, done_values(note="restored db-1: ok"), OWNER)
    tbot.executor.drain()

    done = stored(tbot, occ)
    assert answer.status_code == 200
    assert (done.status, done.completed_by, done.on_time) == ("done", OWNER, True)
    assert done.evidence_note == "restored db-1: ok"
    message = reminder(tbot)
    assert not [b for b in message["blocks"] if b["type"] == "actions"]
    assert f"Done by <@{OWNER}>, on time" in json.dumps(message["blocks"])


@pytest.mark.parametrize("evidence", ["file"])
def test_an_uploaded_file_is_fetched_from_slack_and_kept_with_its_hash(
    tbot: Bot, tmp_path: Path
) -> None:
    """The file_input's file is downloaded with the bot token and stored by SHA-256."""
    occ = occurrence_id(tbot)
    content = b"restore report: 1,204,331 rows match"
    shared = tbot.slack.shared_file("restore.txt", content)

    tbot.submit("task.done.modal", TaskRef(occ).dump(), done_values(files=[shared]), OWNER)
    tbot.executor.drain()

    done = stored(tbot, occ)
    digest = hashlib.sha256(content).hexdigest()
    assert done.status == "done"
    assert done.evidence_sha256 == digest
    assert Path(str(done.evidence_file)).read_bytes() == content
    assert Path(str(done.evidence_file)).parent == tmp_path / "evidence" / digest


@pytest.mark.parametrize("evidence", ["file"])
@pytest.mark.parametrize("name", ["..", ".", "../..", "/", " . ", "\x00\x1b", "\u202e", ""])
def test_a_file_whose_name_sanitizes_to_nothing_is_kept_under_a_generated_name(
    tbot: Bot, tmp_path: Path, name: str
) -> None:
    """An upload called '..' (or '/', control characters, nothing): its bytes are written under
    evidence_dir/<sha256>/ with a safe name before it is recorded done, and the recorded file
    holds them."""
    occ = occurrence_id(tbot)
    content = b"quarterly restore: 812 tables compared"
    shared = tbot.slack.shared_file(name, content)
    # Slack's download URL never carries the raw name; the fake's would.
    url = f"{tbot.slack.root_url}/files-pri/{tbot.slack.team_id}-{shared['id']}/download"
    tbot.slack.file_infos[shared["id"]]["url_private_download"] = url

    tbot.submit("task.done.modal", TaskRef(occ).dump(), done_values(files=[shared]), OWNER)
    tbot.executor.drain()

    done = stored(tbot, occ)
    digest = hashlib.sha256(content).hexdigest()
    kept = Path(str(done.evidence_file))
    assert (done.status, done.evidence_sha256) == ("done", digest)
    assert kept.parent == tmp_path / "evidence" / digest
    assert kept.name not in ("", ".", "..")
    assert kept.name.isprintable()
    assert kept.read_bytes() == content
    assert evidence_files(tmp_path) == [kept]


@pytest.mark.parametrize("evidence", ["link"])
def test_a_link_that_is_not_a_url_is_refused_in_the_modal(tbot: Bot) -> None:
    """A link task with a non-URL link: the modal says what a link must look like."""
    occ = occurrence_id(tbot)

    answer = tbot.submit(
        "task.done.modal", TaskRef(occ).dump(), done_values(link="see drive"), OWNER
    )

    assert answer.json()["errors"] == {LINK_BLOCK: "The link must start with https:// or http://."}


def test_snooze_past_the_limit_is_refused_and_within_it_recorded(tbot: Bot) -> None:
    """calendar.max_snooze_days (7): 10 days is refused in the modal; 5 days is kept."""
    occ = occurrence_id(tbot)
    ref = TaskRef(occ).dump()

    def pick(day: str) -> dict[str, Any]:
        return {DATE_BLOCK: {DATE_INPUT: {"type": "datepicker", "selected_date": day}}}

    too_far = tbot.submit("task.snooze.modal", ref, pick("2026-12-18"), OWNER)
    fine = tbot.submit("task.snooze.modal", ref, pick("2026-12-13"), OWNER)
    tbot.executor.drain()

    assert too_far.json()["errors"] == {
        DATE_BLOCK: "a task can be snoozed for at most 7 days (until 2026-12-15)"
    }
    assert fine.status_code == 200
    assert stored(tbot, occ).snoozed_until == datetime(2026, 12, 13, 9, 0, tzinfo=UTC)


def test_the_last_day_of_the_snooze_limit_is_allowed_before_the_due_time_too(tbot: Bot) -> None:
    """max_snooze_days 7, asked at 07:00 (before the 09:00 due time): today + 7 is kept and
    today + 8 refused, naming the last day, exactly as they are after 09:00."""
    occ = occurrence_id(tbot)
    ref = TaskRef(occ).dump()
    answers = {}

    for clock_at in (
        datetime(2026, 12, 9, 7, 0, tzinfo=UTC),
        datetime(2026, 12, 9, 20, 0, tzinfo=UTC),
    ):
        tbot.clock.now = clock_at
        answers[clock_at.hour] = [
            tbot.submit("task.snooze.modal", ref, pick_day(day), OWNER)
            for day in ("2026-12-17", "2026-12-16")
        ]
        tbot.executor.drain()

    for too_far, fine in answers.values():
        assert too_far.json()["errors"] == {
            DATE_BLOCK: "a task can be snoozed for at most 7 days (until 2026-12-16)"
        }
        assert fine.status_code == 200
        assert not fine.content or "errors" not in fine.json()
    assert stored(tbot, occ).snoozed_until == datetime(2026, 12, 16, 9, 0, tzinfo=UTC)


def test_reassign_gives_the_occurrence_away_and_tells_the_new_owner(tbot: Bot) -> None:
    """The picked user owns this occurrence and gets a DM with the reminder."""
    occ = occurrence_id(tbot)
    values = {USER_BLOCK: {USER_INPUT: {"type": "users_select", "selected_user": "U0BOB"}}}

    answer = tbot.submit("task.reassign.modal", TaskRef(occ).dump(), values, OWNER)
    tbot.executor.drain()
    tbot.deliver()

    assert answer.status_code == 200
    assert stored(tbot, occ).assignee == "U0BOB"
    (dm,) = tbot.slack.messages[tbot.slack.dm_channel("U0BOB")]
    assert "Test a backup restore" in dm["text"]
    with tbot.sessions() as session:
        keys = session.scalars(select(OutboxItem.key).where(OutboxItem.kind == "task_remind"))
        assert f"calendar:remind:{occ}:reassigned:U0BOB" in list(keys)


def posted(bot: Bot) -> list[dict[str, Any]]:
    """Every reminder posted about the task: the owner's DM and the channel's."""
    return [*bot.slack.messages[bot.slack.dm_channel(OWNER)], *bot.slack.messages[CHANNEL]]


def test_snooze_and_reassign_redraw_every_posted_reminder(tbot: Bot) -> None:
    """After a snooze the DM and the channel reminder say until when and by whom; after a
    reassign they name the new owner; the buttons stay (the task is still open)."""
    occ = occurrence_id(tbot)
    assert len(posted(tbot)) == 2

    tbot.submit("task.snooze.modal", TaskRef(occ).dump(), pick_day("2026-12-12"), OWNER)
    tbot.executor.drain()
    snoozed = [json.dumps(m["blocks"]) for m in posted(tbot)]
    tbot.submit("task.reassign.modal", TaskRef(occ).dump(), pick_user("U0BOB"), OWNER)
    tbot.executor.drain()
    moved = [json.dumps(m["blocks"]) for m in posted(tbot)]

    for text in snoozed:
        assert f"Snoozed by <@{OWNER}>: no reminders until 2026-12-12" in text
    for text in moved:
        assert "*Owner*\\n<@U0BOB>" in text
        assert '"action_id": "task.done"' in text
    assert len(tbot.slack.calls_to("chat.update")) == 4


def test_four_hours_past_due_is_overdue_in_compliance_tasks_and_the_app_home(
    tbot: Bot,
) -> None:
    """Due today at 09:00, asked at 13:00: `/compliance tasks` counts it overdue (red, "overdue
    since 09:00 today"), as the App Home does, not "due today"."""
    tbot.clock.now = datetime(2026, 12, 15, 13, 0, tzinfo=UTC)
    event = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0001",
            "api_app_id": "A0001",
            "event_id": "EvHome1",
            "event_time": 1,
            "event": {"type": "app_home_opened", "user": OWNER, "tab": "home"},
        }
    )

    answer = tbot.command("tasks")
    tbot.post(event, content_type="application/json")
    tbot.executor.drain()

    text = json.dumps(answer["blocks"])
    assert answer["text"] == "1 compliance task(s) due, 1 overdue"
    assert "(1 overdue, next 30 days)" in text
    assert ":red_circle: *Test a backup restore*" in text
    assert "2026-12-15 (overdue since 09:00 today)" in text
    home = json.dumps(tbot.slack.views_published[OWNER]["blocks"])
    assert "Test a backup restore: 2026-12-15 (overdue since 09:00 today)" in home


def test_compliance_tasks_lists_what_is_due(tbot: Bot) -> None:
    """`/compliance tasks`: the occurrence, when it is due, and who owns it."""
    answer = tbot.command("tasks")

    text = json.dumps(answer["blocks"])
    assert "Test a backup restore" in text
    assert "2026-12-15 (due in 7 days)" in text
    assert f"<@{OWNER}>" in text


# ---- who may act on a task ---------------------------------------------------------------------


def refusals(bot: Bot, occ: int) -> list[tuple[str, str]]:
    """(action, actor) of the audit trail's refused attempts on the occurrence."""
    with bot.sessions() as session:
        rows = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.object_type == "task_occurrence", AuditEntry.object_id == str(occ))
            .order_by(AuditEntry.id)
        ).all()
        return [(r.action, r.actor) for r in rows if r.action.endswith(".refused")]


def pick_user(user: str) -> dict[str, Any]:
    """The Reassign modal's state with `user` picked."""
    return {USER_BLOCK: {USER_INPUT: {"type": "users_select", "selected_user": user}}}


def pick_day(day: str) -> dict[str, Any]:
    """The Snooze modal's state with `day` picked."""
    return {DATE_BLOCK: {DATE_INPUT: {"type": "datepicker", "selected_date": day}}}


def test_a_strangers_buttons_open_no_modal_and_are_audited(tbot: Bot) -> None:
    """Done, Snooze, Reassign by someone else: an ephemeral refusal naming the owner, no modal,
    and one refused attempt per click in the audit trail."""
    occ = occurrence_id(tbot)

    for action in ("task.done", "task.snooze", "task.reassign"):
        tbot.click(action, str(occ), user=STRANGER, message=reminder(tbot))
        tbot.executor.drain()  # one at a time: the audit trail's order is the clicks' order

    assert tbot.slack.views_opened == []
    told = [r["text"] for r in tbot.slack.responses[-3:]]
    assert all(t.startswith(":no_entry: Only <@U0OWNER> or an approver") for t in told), told
    assert refusals(tbot, occ) == [
        ("task.complete.refused", STRANGER),
        ("task.snooze.refused", STRANGER),
        ("task.reassign.refused", STRANGER),
    ]


def test_a_strangers_forged_submissions_change_nothing_and_are_audited(tbot: Bot) -> None:
    """Modals submitted without the button (forged): each shows the refusal on its field, the
    occurrence stays open, unsnoozed and unassigned, and each attempt is audited."""
    occ = occurrence_id(tbot)
    ref = TaskRef(occ, CHANNEL, reminder(tbot)["ts"]).dump()

    done = tbot.submit("task.done.modal", ref, done_values(note="done, trust me"), STRANGER)
    snoozed = tbot.submit("task.snooze.modal", ref, pick_day("2026-12-12"), STRANGER)
    moved = tbot.submit("task.reassign.modal", ref, pick_user(STRANGER), STRANGER)
    tbot.executor.drain()

    assert list(done.json()["errors"]) == [NOTE_BLOCK]
    assert list(snoozed.json()["errors"]) == [DATE_BLOCK]
    assert list(moved.json()["errors"]) == [USER_BLOCK]
    assert "Only <@U0OWNER> or an approver" in moved.json()["errors"][USER_BLOCK]
    after = stored(tbot, occ)
    assert (after.status, after.snoozed_until, after.assignee) == ("open", None, None)
    assert [a for a, _ in refusals(tbot, occ)] == [
        "task.complete.refused",
        "task.snooze.refused",
        "task.reassign.refused",
    ]


@pytest.mark.parametrize(
    ("owner", "who"),
    [(OWNER, OWNER), (OWNER, "U0BOB"), (GROUP, MEMBER), (OWNER, APPROVER)],
    ids=["owner", "assignee", "group-member", "approver"],
)
def test_owner_assignee_group_member_and_approver_may_complete(tbot: Bot, who: str) -> None:
    """Each of them gets the Done modal and completes the task; nothing is refused."""
    occ = occurrence_id(tbot)
    if who == "U0BOB":  # the owner gave this occurrence to Bob first
        tbot.submit("task.reassign.modal", TaskRef(occ).dump(), pick_user(who), OWNER)

    tbot.click("task.done", str(occ), user=who, message=reminder(tbot))
    tbot.executor.drain()
    modal = tbot.slack.views_opened[-1]["view"]
    answer = tbot.submit(
        "task.done.modal", modal["private_metadata"], done_values(note="restored"), who
    )
    tbot.executor.drain()

    assert answer.status_code == 200
    assert not answer.content or "errors" not in answer.json()
    assert (stored(tbot, occ).status, stored(tbot, occ).completed_by) == ("done", who)
    assert refusals(tbot, occ) == []


@pytest.mark.parametrize("owner", [GROUP])
def test_a_group_owned_task_refuses_a_non_member(tbot: Bot) -> None:
    """A task owned by a user group: someone outside the group is refused."""
    occ = occurrence_id(tbot)

    answer = tbot.submit("task.done.modal", TaskRef(occ).dump(), done_values(note="x"), STRANGER)

    assert "Only <!subteam^S0OPS> or an approver" in answer.json()["errors"][NOTE_BLOCK]
    assert stored(tbot, occ).status == "open"


@pytest.mark.parametrize(
    "target", ["<!channel>", "<!here>", GROUP, "U0BOB\n", "here", "U" + "0" * 200, ""]
)
def test_reassign_only_to_one_real_user(tbot: Bot, target: str) -> None:
    """The owner cannot hand a task to a broadcast, a group or a made-up ID; nobody is told."""
    occ = occurrence_id(tbot)

    answer = tbot.submit("task.reassign.modal", TaskRef(occ).dump(), pick_user(target), OWNER)
    tbot.executor.drain()

    assert list(answer.json()["errors"]) == [USER_BLOCK]
    assert stored(tbot, occ).assignee is None
    with tbot.sessions() as session:
        assert not session.scalars(
            select(OutboxItem).where(OutboxItem.key.like("%reassigned%"))
        ).all()


# ---- evidence files: fetched by ID, from Slack's file host only, bounded -------------------------


@dataclass
class Thief:
    """A server on 127.0.0.1 that records what it is sent (a stolen token would show here)."""

    url: str
    seen: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def thief() -> Iterator[Thief]:
    """A listening thief."""
    seen: list[dict[str, str]] = []

    def handle(request: BaseHTTPRequestHandler, method: str) -> None:
        seen.append({"method": method, "path": request.path, **dict(request.headers.items())})
        body = b"stolen"
        request.send_response(200)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    server = LoopbackServer(handle)
    try:
        yield Thief(server.url, seen)
    finally:
        server.stop()


def told(bot: Bot) -> str:
    """The last thing the bot told the user privately."""
    return str(bot.slack.ephemerals[-1]["text"])


def evidence_files(tmp_path: Path) -> list[Path]:
    """Every file under evidence_dir, hidden ones included."""
    root = tmp_path / "evidence"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.parametrize("evidence", ["file"])
def test_a_payload_pointing_at_another_host_never_gets_the_token(
    tbot: Bot, thief: Thief, tmp_path: Path
) -> None:
    """The modal's url_private is ignored: the file is looked up by ID and fetched from
    Slack; the other server never hears from the bot."""
    occ = occurrence_id(tbot)
    content = b"the real report"
    shared = tbot.slack.shared_file("report.txt", content)
    forged = {**shared, "url_private": thief.url + "/x", "url_private_download": thief.url + "/x"}

    tbot.submit("task.done.modal", TaskRef(occ).dump(), done_values(files=[forged]), OWNER)
    tbot.executor.drain()

    assert thief.seen == []
    assert [c.params["file"] for c in tbot.slack.calls_to("files.info")] == [shared["id"]]
    done = stored(tbot, occ)
    assert done.status == "done"
    assert done.evidence_sha256 == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("evidence", ["file"])
@pytest.mark.parametrize("where", ["thief", "http-files.slack.com", "user-info"])
def test_a_files_info_answer_pointing_elsewhere_is_refused(
    tbot: Bot, thief: Thief, tmp_path: Path, where: str
) -> None:
    """Slack's answer names a download URL off the configured file host: nothing is fetched,
    the user is told, the task stays open."""
    occ = occurrence_id(tbot)
    shared = tbot.slack.shared_file("report.txt", b"report")
    host = tbot.slack.root_url.removeprefix("http://")
    url = {
        "thief": thief.url + "/files-pri/x",
        "http-files.slack.com": "http://files.slack.com/files-pri/x",
        "user-info": f"http://{host}@{thief.url.removeprefix('http://')}/files-pri/x",
    }[where]
    tbot.slack.file_infos[shared["id"]]["url_private_download"] = url

    tbot.submit(
        "task.done.modal",
        TaskRef(occ, CHANNEL, reminder(tbot)["ts"]).dump(),
        done_values(files=[shared]),
        OWNER,
    )
    tbot.executor.drain()

    assert thief.seen == []
    assert tbot.slack.downloads == []
    assert "is not stored on Slack's file host" in told(tbot)
    assert stored(tbot, occ).status == "open"


@pytest.mark.parametrize("evidence", ["file"])
def test_a_redirect_off_the_file_host_is_not_followed(tbot: Bot, thief: Thief) -> None:
    """Slack's file host answers 302 to another server: not followed, the token stays home."""
    occ = occurrence_id(tbot)
    shared = tbot.slack.shared_file("report.txt", b"report")
    tbot.slack.file_redirects[shared["id"]] = thief.url + "/collect"

    tbot.submit(
        "task.done.modal",
        TaskRef(occ, CHANNEL, reminder(tbot)["ts"]).dump(),
        done_values(files=[shared]),
        OWNER,
    )
    tbot.executor.drain()

    assert thief.seen == []
    assert len(tbot.slack.downloads) == 1
    assert "not followed" in told(tbot)
    assert stored(tbot, occ).status == "open"


@pytest.mark.parametrize("evidence", ["file"])
def test_a_redirect_within_the_file_host_is_followed(tbot: Bot) -> None:
    """A 302 to another path of the same file host is followed, with the token."""
    occ = occurrence_id(tbot)
    moved = tbot.slack.shared_file("report.txt", b"report v2")
    shared = tbot.slack.shared_file("report.txt", b"ignored")
    tbot.slack.file_redirects[shared["id"]] = moved["url_private_download"]

    tbot.submit("task.done.modal", TaskRef(occ).dump(), done_values(files=[shared]), OWNER)
    tbot.executor.drain()

    assert len(tbot.slack.downloads) == 2
    assert stored(tbot, occ).evidence_sha256 == hashlib.sha256(b"report v2").hexdigest()


@pytest.mark.parametrize("evidence", ["file"])
def test_an_oversized_file_is_refused_before_it_is_downloaded(tbot: Bot, tmp_path: Path) -> None:
    """files.info says 400 MB (the modal said little): refused with the sizes, nothing
    downloaded or recorded, nothing in evidence_dir."""
    occ = occurrence_id(tbot)
    shared = tbot.slack.shared_file("dump.bin", b"small in the payload")
    tbot.slack.file_infos[shared["id"]]["size"] = 400 * 1024 * 1024

    tbot.submit(
        "task.done.modal",
        TaskRef(occ, CHANNEL, reminder(tbot)["ts"]).dump(),
        done_values(files=[shared]),
        OWNER,
    )
    tbot.executor.drain()

    assert "dump.bin is 400 MB; an evidence file may be at most 50 MB" in told(tbot)
    assert tbot.slack.downloads == []
    assert stored(tbot, occ).status == "open"
    assert evidence_files(tmp_path) == []


@pytest.mark.parametrize(("evidence", "max_evidence_mb"), [("file", 1)])
def test_a_download_longer_than_announced_stops_at_the_cap_and_leaves_nothing(
    tbot: Bot, tmp_path: Path
) -> None:
    """files.info says 10 bytes and the body (no Content-Length) runs on for 3 MB: the
    download stops past 1 MB, the user is told, no partial file is left, nothing recorded."""
    occ = occurrence_id(tbot)
    shared = tbot.slack.shared_file("dump.bin", b"x" * (3 * 1024 * 1024))
    tbot.slack.file_infos[shared["id"]]["size"] = 10
    tbot.slack.unsized_downloads.add(shared["id"])

    tbot.submit(
        "task.done.modal",
        TaskRef(occ, CHANNEL, reminder(tbot)["ts"]).dump(),
        done_values(files=[{**shared, "size": 10}]),
        OWNER,
    )
    tbot.executor.drain()

    assert "dump.bin is over 1 MB, the most an evidence file may be" in told(tbot)
    assert evidence_files(tmp_path) == []
    done = stored(tbot, occ)
    assert (done.status, done.evidence_file) == ("open", None)


@pytest.mark.parametrize("evidence", ["file"])
@pytest.mark.parametrize(
    ("upload", "error"),
    [
        ({"id": "F1", "size": 1}, "That is not a file uploaded to Slack"),
        ({"id": "../../etc/passwd"}, "That is not a file uploaded to Slack"),
        ({"id": "F0" + "A" * 5000}, "That is not a file uploaded to Slack"),
        ("F0ABC", "That is not a file uploaded to Slack"),
        ({"id": "F0ABC", "name": "big.iso", "size": 4 * 1024**3}, "big.iso is 4096 MB"),
    ],
    ids=["short-id", "path", "huge-id", "not-an-object", "oversized"],
)
def test_a_malformed_or_oversized_upload_is_refused_in_the_modal(
    tbot: Bot, upload: Any, error: str
) -> None:
    """What the modal submits about the file is checked before the ack: the file field says
    what is wrong, and Slack is not even asked about the file."""
    occ = occurrence_id(tbot)

    answer = tbot.submit("task.done.modal", TaskRef(occ).dump(), done_values(files=[upload]), OWNER)

    assert error in answer.json()["errors"][FILE_BLOCK]
    assert tbot.slack.calls_to("files.info") == []
