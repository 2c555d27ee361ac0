"""The completion record on the command line (`tasks history`), reads of the calendar that change
nothing (`tasks list`, `tasks export-ics`), and the operator's dry run (`tasks sweep --dry-run
--now`). Each test runs the real CLI against SQLite and PostgreSQL; the CLI's clock is injected."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from bot.cli import app
from ledger import db
from ledger.models import OutboxItem, TaskOccurrence
from rules.catalog import load_catalog
from rules.tasks import load_tasks
from tests.conftest import FakeClock

OWNER, CHANNEL, MANAGER = "U0OWNER", "C0TASKS", "C0MANAGER"

TASK = """\
id: {id}
title: {title}
policy: Configuration Management
description: Look at every rule.
controls:
  soc2: [CC6.6]
recurrence: {recurrence}
start: 2026-01-01
owner: {owner}
channel: {channel}
reminders: [7d, 1d, due]
evidence: {evidence}
"""


class Calendar:
    """The CLI over one database, with the calendar on and the clock in the test's hand."""

    def __init__(self, root: Path, db_url: str, clock: FakeClock, runner: CliRunner) -> None:
        self.root, self.db_url, self.clock, self.runner = root, db_url, clock, runner
        engine = db.make_engine(db_url)
        self.sessions = db.session_factory(engine)

    def run(self, *args: str, code: int = 0) -> Result:
        """Run `compliancebot --config ... ARGS` and check its exit code."""
        result = self.runner.invoke(app, ["--config", str(self.root / "config.yaml"), *args])
        assert result.exit_code == code, (result.output, result.exception)
        return result

    def state(self) -> dict[str, Any]:
        """Everything a sweep could change: occurrences with their reminder marks, outbox keys."""
        with self.sessions() as session:
            occurrences = [
                (o.id, o.task_id, o.due_on, o.status, o.reminded, o.escalations)
                for o in session.scalars(select(TaskOccurrence).order_by(TaskOccurrence.id))
            ]
            keys = list(session.scalars(select(OutboxItem.key).order_by(OutboxItem.id)))
        return {"occurrences": occurrences, "outbox": keys}

    def occurrence_id(self, task_id: str, day: str) -> int:
        """The id of a task's occurrence due on a day."""
        with self.sessions() as session:
            found = session.scalar(
                select(TaskOccurrence.id).where(
                    TaskOccurrence.task_id == task_id,
                    TaskOccurrence.due_on == datetime.fromisoformat(day).date(),
                )
            )
        assert found is not None
        return found


def write_task(root: Path, task_id: str, **fields: str) -> None:
    """One task file (monthly on the 15th unless `recurrence` says otherwise)."""
    values = {
        "id": task_id,
        "title": "Review the firewall rules",
        "recurrence": "FREQ=MONTHLY;BYMONTHDAY=15",
        "owner": OWNER,
        "channel": CHANNEL,
        "evidence": "none",
        **fields,
    }
    (root / "tasks" / f"{task_id}.yaml").write_text(TASK.format(**values))


@pytest.fixture
def cal(tmp_path: Path, db_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Calendar:
    """Two tasks due on the 15th (09:00 Berlin = 08:00 UTC in winter), the built-ins off,
    escalation to a manager 2 days after the due date; the CLI's clock is `clock`."""
    root = tmp_path / "cal"
    (root / "tasks").mkdir(parents=True)
    write_task(root, "firewall_review")
    write_task(root, "access_review", title="Review who has access")
    builtin = sorted(load_tasks(frameworks=load_catalog().frameworks).tasks)
    config = {
        "database": {"url": db_url},
        "calendar": {
            "enabled": True,
            "timezone": "Europe/Berlin",
            "paths": [str(root)],
            "disabled": builtin,
            "escalation": {"to": MANAGER, "after_days": 2, "every_days": 2},
            "horizon_days": 60,
            "evidence_dir": str(tmp_path / "evidence"),
        },
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.delenv("COMPLIANCEBOT_DATABASE__URL", raising=False)
    monkeypatch.setenv("COLUMNS", "400")  # tables unwrapped, as on a wide terminal
    monkeypatch.setattr("bot.cli.utcnow", clock)  # the CLI's one clock
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    engine.dispose()
    clock.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    calendar = Calendar(root, db_url, clock, CliRunner())
    calendar.run("tasks", "sweep")
    return calendar


def rows_of(sessions: sessionmaker[Session]) -> tuple[int, int]:
    """How many occurrences and outbox items there are."""
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(TaskOccurrence)) or 0,
            session.scalar(select(func.count()).select_from(OutboxItem)) or 0,
        )


# ---- tasks history -----------------------------------------------------------------------------


def test_history_shows_who_when_timeliness_and_evidence_latest_first(
    cal: Calendar, tmp_path: Path
) -> None:
    """An auditor sees each completion: task, due date, when, by whom, on time or late by how
    much, the note, the link, the file's name, SHA-256 and where it is kept; the latest first."""
    firewall = cal.occurrence_id("firewall_review", "2026-12-15")
    access = cal.occurrence_id("access_review", "2026-12-15")
    report = tmp_path / "export.csv"
    report.write_bytes(b"rule,verdict\nssh,closed\n")
    cal.clock.now = datetime(2026, 12, 14, 16, 30, tzinfo=UTC)
    cal.run("tasks", "done", str(firewall), "--by", "alice", "--file", str(report))
    cal.clock.now = datetime(2026, 12, 16, 10, 15, tzinfo=UTC)  # 1 day 2 h 15 min late
    cal.run(
        "tasks",
        "done",
        str(access),
        "--by",
        "bob",
        "--note",
        "Removed 3 leavers",
        "--link",
        "https://wiki.example.com/access/2026-12",
    )

    table = cal.run("tasks", "history").stdout
    document = json.loads(cal.run("tasks", "history", "--output", "json").stdout)

    assert table.index("Review who has access") < table.index("Review the firewall rules")
    assert "2026-12-16 11:15 CET" in table  # in calendar.timezone
    assert "late by 1 day 2 h" in table
    assert "on time" in table
    assert "Removed 3 leavers" in table
    assert "https://wiki.example.com/access/2026-12" in table
    digest = hashlib.sha256(report.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in table
    assert "export.csv" in table
    late, on_time = document["completions"]
    assert document["total"] == 2
    assert late == {
        "occurrence_id": access,
        "task_id": "access_review",
        "title": "Review who has access",
        "due_on": "2026-12-15",
        "due_at": "2026-12-15T08:00:00Z",
        "completed_at": "2026-12-16T10:15:00Z",
        "completed_by": "bob",
        "on_time": False,
        "late_seconds": 26 * 3600 + 15 * 60,
        "note": "Removed 3 leavers",
        "link": "https://wiki.example.com/access/2026-12",
        "evidence_file": None,
    }
    assert on_time["on_time"] is True
    assert on_time["late_seconds"] is None
    kept = on_time["evidence_file"]
    assert kept["name"] == "export.csv"
    assert kept["sha256"] == digest
    assert Path(kept["location"]).read_bytes() == report.read_bytes()


def test_history_narrows_to_a_task_and_a_day_in_the_calendars_time_zone(cal: Calendar) -> None:
    """--task keeps one task; --since counts days in calendar.timezone: 23:30 UTC on the 14th
    is the 15th in Berlin, so --since 2026-12-15 includes it and the 14th's earlier one not."""
    firewall = cal.occurrence_id("firewall_review", "2026-12-15")
    access = cal.occurrence_id("access_review", "2026-12-15")
    cal.clock.now = datetime(2026, 12, 14, 22, 30, tzinfo=UTC)  # 23:30 Berlin, the 14th
    cal.run("tasks", "done", str(firewall), "--by", "alice")
    cal.clock.now = datetime(2026, 12, 14, 23, 30, tzinfo=UTC)  # 00:30 Berlin, the 15th
    cal.run("tasks", "done", str(access), "--by", "bob")

    def ids(*args: str) -> list[int]:
        out = cal.run("tasks", "history", "-o", "json", *args).stdout
        return [c["occurrence_id"] for c in json.loads(out)["completions"]]

    assert ids() == [access, firewall]
    assert ids("--task", "firewall_review") == [firewall]
    assert ids("--since", "2026-12-15") == [access]
    assert ids("--since", "2026-12-14") == [access, firewall]
    assert ids("--since", "2026-12-16") == []
    assert ids("--limit", "1") == [access]
    assert "1 more" in cal.run("tasks", "history", "--limit", "1").stdout
    assert (
        "No completed compliance tasks match."
        in cal.run("tasks", "history", "--since", "2027-01-01").stdout
    )


def test_history_prints_untrusted_evidence_literally(cal: Calendar, tmp_path: Path) -> None:
    """Notes, links and file names show exactly as typed: rich markup is not applied, escape
    sequences are shown as text and never reach the terminal; JSON keeps the bytes as given."""
    occ = cal.occurrence_id("firewall_review", "2026-12-15")
    note = (
        "[bold red]ALL CLEAR[/] [link=https://evil.example]x[/link] \x1b[2J\x1b]0;pwned\x07 \u202e"
    )
    link = "https://example.com/[/]"
    evil = tmp_path / "[bold]report[red].pdf"
    evil.write_bytes(b"%PDF")
    cal.clock.now = datetime(2026, 12, 14, 9, 0, tzinfo=UTC)
    cal.run(
        "tasks",
        "done",
        str(occ),
        "--by",
        "[red]mallory[/red]",
        "--note",
        note,
        "--link",
        link,
        "--file",
        str(evil),
    )

    shown = cal.run("tasks", "history").stdout
    raw = json.loads(cal.run("tasks", "history", "-o", "json").stdout)["completions"][0]

    assert "[bold red]ALL CLEAR[/]" in shown
    assert "[link=https://evil.example]x[/link]" in shown
    assert not {"\x1b", "\x07", "\u202e"} & set(shown)
    assert "\\x1b[2J" in shown
    assert "[red]mallory[/red]" in shown
    assert "https://example.com/[/]" in shown
    assert "[bold]report[red].pdf" in shown
    assert (raw["note"], raw["link"], raw["completed_by"]) == (note, link, "[red]mallory[/red]")
    assert raw["evidence_file"]["name"] == "[bold]report[red].pdf"


def test_history_of_a_task_no_longer_in_the_catalog_stays_readable(cal: Calendar) -> None:
    """A task removed from the catalog keeps its record: shown by id, never dropped."""
    occ = cal.occurrence_id("access_review", "2026-12-15")
    cal.clock.now = datetime(2026, 12, 14, 9, 0, tzinfo=UTC)
    cal.run("tasks", "done", str(occ), "--by", "alice")
    (cal.root / "tasks" / "access_review.yaml").unlink()

    shown = cal.run("tasks", "history", "--task", "access_review").stdout
    raw = json.loads(cal.run("tasks", "history", "-o", "json").stdout)["completions"]

    assert "access_review (no longer in the catalog)" in shown
    assert [(c["task_id"], c["title"]) for c in raw] == [("access_review", None)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "../../etc/passwd"], "'../../etc/passwd' is not a task id"),
        (["--task", "A" * 5000], "is not a task id"),
        (["--task", "no_such_task"], "no task has the id 'no_such_task'"),
        (["--since", "2026-13-01"], "'2026-13-01' is not a date: write YYYY-MM-DD"),
        (["--since", "9" * 100_000], "is not a date"),
        (["--output", "ocsf"], "'ocsf' is not one of"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_history_refuses_bad_arguments_by_name(
    cal: Calendar, args: list[str], message: str
) -> None:
    """A wrong --task, --since, --output or --limit is one message naming it, exit status 2."""
    result = cal.run("tasks", "history", *args, code=2)
    assert message in " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in result.output


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
@example(text="firewall_review")
@example(text="firewall_review\n")
@example(text="-")
def test_any_task_argument_lists_or_is_refused(cal: Calendar, text: str) -> None:
    """Whatever follows --task, a task of the catalog is listed and anything else is a usage
    error naming --task: never a crash."""
    result = cal.runner.invoke(
        app, ["--config", str(cal.root / "config.yaml"), "tasks", "history", "--task", text]
    )
    if text in ("firewall_review", "access_review"):
        assert result.exit_code == 0, (result.output, result.exception)
    else:
        assert result.exit_code == 2, (result.output, result.exception)
        assert "--task" in result.output


# ---- reads that change nothing -----------------------------------------------------------------


def test_list_and_export_ics_only_read_and_say_what_is_not_made(
    cal: Calendar, tmp_path: Path
) -> None:
    """`tasks list` and `export-ics` record nothing (no occurrences, no reminders, no Slack
    posts); when the sweep has not made what they are asked for, they say so and how to fix it."""
    cal.clock.now = datetime(2027, 1, 20, 9, 0, tzinfo=UTC)  # past the made horizon
    before = cal.state()

    listed = cal.run("tasks", "list", "--days", "40")
    exported = cal.run("tasks", "export-ics", str(tmp_path / "feed.ics"), "--days", "40")

    assert cal.state() == before
    for text in (listed.stdout, exported.stderr):
        flat = " ".join(text.split())
        assert "Not shown: 2 task(s) have occurrences due from 2027-02-15 that are not made" in flat
        assert "`compliancebot tasks sweep` once" in flat
    cal.run("tasks", "sweep")
    after = cal.run("tasks", "list", "--days", "40").stdout
    assert "Not shown" not in after
    assert "2027-02-15" in after


def test_list_says_what_lies_beyond_the_horizon(cal: Calendar) -> None:
    """Asking further ahead than calendar.horizon_days is answered with what exists and why
    the rest is missing (a sweep does not make them either)."""
    shown = " ".join(cal.run("tasks", "list", "--days", "120").stdout.split())
    assert (
        "Not shown: occurrences after 2027-01-30: they are made calendar.horizon_days (60)" in shown
    )


# ---- the operator's dry run --------------------------------------------------------------------


def test_a_dry_run_shows_what_would_go_out_at_a_moment_and_records_nothing(cal: Calendar) -> None:
    """`tasks sweep --dry-run --now` lists the reminders and escalations a sweep at that moment
    would send, leaves the database as it was, and a real sweep then sends exactly those."""
    firewall = cal.occurrence_id("firewall_review", "2026-12-15")
    before = cal.state()

    result = cal.run("tasks", "sweep", "--dry-run", "--now", "2026-12-17T10:00")
    shown = result.stdout

    assert cal.state() == before
    logged = [line for line in result.stderr.splitlines() if "reminders.swept" in line]
    assert logged
    assert all("dry_run=True" in line for line in logged)
    flat = " ".join(shown.split())
    assert "nothing was recorded and nothing is sent" in flat
    assert "record 4 reminder(s) and 2 escalation(s)" in flat
    lines = [line for line in shown.splitlines() if "Review the firewall rules" in line]
    kinds = sorted((line.split("│")[1].strip(), line.split("│")[2].strip()) for line in lines)
    assert kinds == [("escalation", MANAGER), ("reminder", CHANNEL), ("reminder", OWNER)]
    assert all(str(firewall) in line for line in lines)
    assert "round 0: overdue by 2 days" in flat
    assert "at the due time" in flat

    cal.clock.now = datetime(2026, 12, 17, 9, 0, tzinfo=UTC)  # 10:00 Berlin
    cal.run("tasks", "sweep")
    with cal.sessions() as session:
        recorded = list(
            session.scalars(select(OutboxItem.kind).where(OutboxItem.key.like(f"%:{firewall}:%")))
        )
    assert sorted(recorded) == ["task_escalate", "task_remind", "task_remind"]


def test_a_dry_run_reads_now_in_the_calendars_time_zone_unless_it_has_an_offset(
    cal: Calendar,
) -> None:
    """--now without an offset is calendar.timezone: 08:30 Berlin is before the escalation
    (due 09:00 Berlin + 2 days), 08:30Z is after it."""
    local = " ".join(
        cal.run("tasks", "sweep", "--dry-run", "--now", "2026-12-17T08:30").stdout.split()
    )
    utc = " ".join(
        cal.run("tasks", "sweep", "--dry-run", "--now", "2026-12-17T08:30Z").stdout.split()
    )

    assert "0 escalation(s)" in local
    assert "2 escalation(s)" in utc
    assert "Dry run at 2026-12-17 08:30 CET" in local
    assert "Dry run at 2026-12-17 09:30 CET" in utc


def test_a_dry_run_shows_occurrences_it_would_make_without_an_id(cal: Calendar) -> None:
    """Occurrences a sweep then would make first are marked as not made yet, never given an id
    that is rolled back (which `tasks done` would then not find, or find as another)."""
    before = rows_of(cal.sessions)
    shown = cal.run("tasks", "sweep", "--dry-run", "--now", "2027-03-10T09:00").stdout
    made = [line for line in shown.splitlines() if "2027-02-15" in line]
    assert made
    assert all("(not made yet)" in line for line in made)
    assert rows_of(cal.sessions) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--now", "2026-12-17T10:00"], "only with --dry-run"),
        (["--dry-run", "--now", "9999-12-31T00:00"], "more than a year from now"),
        (["--dry-run", "--now", "tomorrow"], "'tomorrow' is not a date and time"),
        (["--dry-run", "--now", "2026-12-17T10:00" + "0" * 100_000], "is not a date and time"),
    ],
)
def test_a_sweep_refuses_a_moment_it_cannot_use(
    cal: Calendar, args: list[str], message: str
) -> None:
    """--now only with --dry-run, within a year, and a real date: else exit 2 naming --now, and
    nothing recorded."""
    before = cal.state()
    result = cal.run("tasks", "sweep", *args, code=2)
    assert message in " ".join(result.output.replace("│", " ").split())
    assert "--now" in result.output
    assert cal.state() == before
