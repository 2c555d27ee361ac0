"""The compliancebot command line, as an operator uses it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bot.cli import app
from bot.server import build_services
from bot.settings import Settings, SlackSettings
from ledger.models import TaskOccurrence
from tests.bot.test_reminders import CATALOG, CHANNEL, MANAGER, OWNER, settings_for, task_dir
from tests.cli import run_cli
from tests.conftest import FakeClock
from tests.fakes.hostile_files import HOSTILE, hostile_cases, limit_memory
from tests.fakes.jira import FakeJira
from tests.fakes.slack import FakeSlack
from tests.fakes.trello import KEY as TRELLO_KEY
from tests.fakes.trello import TOKEN as TRELLO_TOKEN
from tests.fakes.trello import FakeTrello

JSON_FIELDS = {
    "rule_id",
    "title",
    "severity",
    "status",
    "resource_type",
    "resource_id",
    "account",
    "region",
    "first_seen",
    "last_seen",
    "controls",
}


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner whose database is a fresh SQLite file in tmp_path."""
    monkeypatch.setenv("COMPLIANCEBOT_DATABASE__URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("COLUMNS", "250")  # tables unwrapped, as on a wide terminal
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def invoke(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def seed_bad_things() -> str:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)
    group = ec2.create_security_group(GroupName="open", Description="x")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    return str(group)


@pytest.mark.usefixtures("moto_world")
def test_scan_json_is_the_documented_schema(cli: CliRunner) -> None:
    """`scan --output json` prints schema_version, the scan summary and complete findings."""
    seed_bad_things()
    invoke(cli, "db", "upgrade")
    doc = json.loads(
        invoke(
            cli,
            "scan",
            "--rule",
            "ec2_volume_encrypted",
            "--rule",
            "ec2_sg_ssh_open_to_world",
            "--output",
            "json",
        )
    )
    assert doc["schema_version"] == "1"
    assert doc["scan"]["status"] == "complete"
    assert doc["scan"]["api_calls"] > 0
    assert {f["rule_id"] for f in doc["findings"]} == {
        "ec2_volume_encrypted",
        "ec2_sg_ssh_open_to_world",
    }
    for finding in doc["findings"]:
        assert set(finding) >= JSON_FIELDS
        assert finding["controls"]["cis_aws"]


@pytest.mark.usefixtures("moto_world")
def test_scan_ocsf_emits_compliance_findings(cli: CliRunner) -> None:
    """`--output ocsf` gives OCSF Compliance Finding events a SIEM can ingest."""
    group = seed_bad_things()
    invoke(cli, "db", "upgrade")
    events = json.loads(
        invoke(cli, "scan", "--rule", "ec2_sg_ssh_open_to_world", "--output", "ocsf")
    )
    assert len(events) == 1
    event = events[0]
    assert (event["class_uid"], event["type_uid"]) == (2003, 200301)
    assert event["resources"][0]["uid"] == group
    assert event["compliance"]["status"] == "Fail"
    assert "cis_aws:5.2" in event["compliance"]["requirements"]


@pytest.mark.usefixtures("moto_world")
def test_findings_lifecycle_from_the_cli(cli: CliRunner) -> None:
    """An operator lists, claims, inspects and accepts a finding; status reflects it."""
    seed_bad_things()
    invoke(cli, "db", "upgrade")
    invoke(cli, "scan", "--rule", "ec2_volume_encrypted", "--output", "json")
    listed = json.loads(invoke(cli, "findings", "list", "--severity", "high", "-o", "json"))
    finding_id = str(listed["findings"][0]["id"])
    assert "is now claimed" in invoke(cli, "findings", "claim", finding_id, "--user", "ana")
    shown = invoke(cli, "findings", "show", finding_id)
    assert "Remediation" in shown
    assert "claimed open -> claimed by ana" in shown
    assert "is now accepted" in invoke(
        cli,
        "findings",
        "accept",
        finding_id,
        "--user",
        "cto",
        "--reason",
        "legacy volume, retiring",
        "--until",
        # Within slack.max_acceptance_days (365) of today: the CLI's clock is the real one.
        f"{datetime.now(UTC).date() + timedelta(days=90):%Y-%m-%d}",
    )
    status = json.loads(invoke(cli, "status", "-o", "json"))
    assert status["accepted"] == 1
    assert sum(status["open_by_severity"].values()) == 0


def test_rules_list_filters_by_framework(cli: CliRunner) -> None:
    """`rules list --framework cis_aws` shows only rules mapped to CIS."""
    shown = invoke(cli, "rules", "list", "--framework", "cis_aws")
    assert "ec2_sg_ssh_open_to_world" in shown


def test_outdated_schema_refuses_to_run(tmp_path: Path) -> None:
    """On an empty or old database the CLI exits 2 and says to run `db upgrade`."""
    env = {
        **os.environ,
        "COMPLIANCEBOT_DATABASE__URL": f"sqlite:///{tmp_path / 'x.db'}",
        "COLUMNS": "200",
    }
    result = run_cli("findings", "list", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "run `compliancebot db upgrade`" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_is_one_clear_message(tmp_path: Path) -> None:
    """An invalid config file exits 2 with file:line and key, never a traceback."""
    (tmp_path / "compliancebot.yaml").write_text("aws:\n  max_workers: lots\n")
    result = run_cli("config", "check", env={**os.environ, "COLUMNS": "200"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "compliancebot.yaml:2: aws.max_workers" in result.stderr
    assert "Traceback" not in result.stderr


def test_rules_validate_reports_line(tmp_path: Path) -> None:
    """`rules validate` on a broken file exits 2 naming file, line and field."""
    bad = tmp_path / "broken_rule.yaml"
    bad.write_text("id: broken_rule\ntitle: Broken rule here\nseverity: catastrophic\n")
    result = run_cli(
        "rules", "validate", str(bad), env={**os.environ, "COLUMNS": "300"}, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "broken_rule.yaml:3: severity" in result.stderr


# ---- hostile files and leaked secrets ---------------------------------------------------------


def _bounded_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a process capped at 2 GB: a regression fails instead of swapping the host."""
    return run_cli(
        *args,
        env={k: v for k, v in env.items() if k != "COLUMNS"},  # rich's default 80 columns
        cwd=cwd,
        preexec_fn=limit_memory,  # only setrlimit: safe between fork and exec
    )


@hostile_cases
def test_a_hostile_config_file_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    """`--config` naming a bomb, /dev/zero, a pipe or binary exits 2 with one line: file:line."""
    path = tmp_path / "compliancebot.yaml"
    HOSTILE[case].make(path)

    result = _bounded_cli(
        "--config", str(path), "config", "check", env={**os.environ}, cwd=tmp_path
    )

    assert result.returncode == 2, result.stderr
    where = f"{path}:{HOSTILE[case].line}: " if HOSTILE[case].line else f"{path}: "
    assert result.stderr.startswith(f"error: {where}"), result.stderr
    assert HOSTILE[case].says in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr  # long paths are not wrapped
    assert result.stdout == ""


def test_a_database_password_from_the_environment_is_masked_in_every_db_command(
    tmp_path: Path, db_url: str
) -> None:
    """`config check`, `db upgrade` and `db current` show the URL with every password as ***."""
    url = make_url(db_url)
    if url.get_backend_name() == "postgresql":  # trust auth on loopback: the password is unused
        url = url.set(password="hunter1")
    secret_url = url.update_query_dict({"password": "hunter2", "sslpassword": "hunter3"})
    env = {
        **os.environ,
        "COMPLIANCEBOT_DATABASE__URL": secret_url.render_as_string(hide_password=False),
    }

    results = [
        _bounded_cli(*command, env=env, cwd=tmp_path)
        for command in (("config", "check"), ("db", "upgrade"), ("db", "current"))
    ]

    for result in results:
        assert result.returncode == 0, result.stderr
        assert "hunter" not in result.stdout + result.stderr
        assert "?password=***" in result.stdout
        assert "sslpassword=***" in result.stdout
    assert "this version needs" in results[2].stdout


def test_an_unreachable_database_is_named_without_its_passwords(tmp_path: Path) -> None:
    """When the database cannot be reached, the error names it with its passwords masked."""
    env = {
        **os.environ,
        # Port 1 of loopback: nothing listens, the connection is refused at once.
        "COMPLIANCEBOT_DATABASE__URL": "postgresql://bot:hunter1@127.0.0.1:1/c?password=hunter2",
    }

    result = _bounded_cli("db", "current", env=env, cwd=tmp_path)

    assert result.returncode == 2
    assert "cannot connect to the database postgresql+psycopg://bot:***@127.0.0.1:1/c" in (
        result.stderr
    )
    assert "password=***" in result.stderr
    assert "hunter" not in result.stdout + result.stderr


def test_a_database_url_with_an_unknown_driver_is_one_masked_error(tmp_path: Path) -> None:
    """A URL naming a driver that is not installed exits 2 naming the URL, password masked."""
    env = {**os.environ, "COMPLIANCEBOT_DATABASE__URL": "mysqlx://bot:hunter1@db/c"}

    result = _bounded_cli("db", "current", env=env, cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        "error: database.url is not a valid SQLAlchemy URL: mysqlx://bot:***@db/c (Can't load"
    )
    assert "hunter" not in result.stderr


# ---- secrets asked for where they are used; every tracker problem at once ----------------------

# Slack, Jira and Trello on, configured, and not one of their secrets set.
ON_WITHOUT_SECRETS = {
    "COMPLIANCEBOT_SLACK__ENABLED": "true",
    "COMPLIANCEBOT_SLACK__CHANNEL": "C0COMPLY",
    "COMPLIANCEBOT_TICKETS__JIRA__ENABLED": "true",
    "COMPLIANCEBOT_TICKETS__JIRA__URL": "http://127.0.0.1:9",
    "COMPLIANCEBOT_TICKETS__JIRA__EMAIL": "bot@example.com",
    "COMPLIANCEBOT_TICKETS__TRELLO__ENABLED": "true",
    "COMPLIANCEBOT_TICKETS__TRELLO__BOARD": "Compliance",
}


def _plain_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without any COMPLIANCEBOT_ setting of the caller's, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
    env.update(COMPLIANCEBOT_DATABASE__URL=f"sqlite:///{tmp_path / 'cli.db'}", COLUMNS="250")
    env.update(extra)
    return env


@pytest.mark.usefixtures("moto_world")
def test_commands_that_use_no_secret_run_without_the_integrations_secrets(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Slack, Jira and Trello on but no secret set, scan, findings, status and the
    ticket and Slack queues all work: none of them talks to Slack or a tracker."""
    for name, value in ON_WITHOUT_SECRETS.items():
        monkeypatch.setenv(name, value)
    for name in [k for k in os.environ if k.startswith("COMPLIANCEBOT_") and "__" in k]:
        if name.endswith(("TOKEN", "SECRET", "API_KEY")):
            monkeypatch.delenv(name)
    seed_bad_things()

    invoke(cli, "db", "upgrade")
    invoke(cli, "scan", "--rule", "ec2_volume_encrypted")
    listed = json.loads(invoke(cli, "findings", "list", "-o", "json"))
    invoke(cli, "status")
    tickets = invoke(cli, "tickets", "status")
    slack = invoke(cli, "slack", "status")

    assert listed["findings"][0]["rule_id"] == "ec2_volume_encrypted"
    assert tickets.startswith("Jira: 0 pending")
    assert "Trello: 0 pending" in tickets
    assert "0 pending" not in slack  # the scan queued its Slack messages for `serve`
    assert "0 failed Trello ticket item(s)" in invoke(cli, "tickets", "retry")


def test_commands_that_use_a_secret_name_the_variables_they_need(tmp_path: Path) -> None:
    """Without secrets, `tickets sync --tracker trello` names Trello's, `slack flush` Slack's,
    and `serve` every one it lacks, each exiting 2 without a traceback."""
    env = _plain_env(tmp_path, **ON_WITHOUT_SECRETS)
    assert run_cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0

    trello = run_cli("tickets", "sync", "--tracker", "trello", env=env, cwd=tmp_path)
    flush = run_cli("slack", "flush", env=env, cwd=tmp_path)
    serve = run_cli("serve", env=env, cwd=tmp_path)

    assert (trello.returncode, flush.returncode, serve.returncode) == (2, 2, 2)
    assert "COMPLIANCEBOT_TICKETS__TRELLO__API_KEY and COMPLIANCEBOT_TICKETS__TRELLO__TOKEN" in (
        trello.stderr
    )
    assert "JIRA" not in trello.stderr
    assert "SLACK" not in trello.stderr
    assert "COMPLIANCEBOT_SLACK__BOT_TOKEN and COMPLIANCEBOT_SLACK__SIGNING_SECRET" in flush.stderr
    assert "TICKETS" not in flush.stderr
    assert serve.stderr.startswith("error: secrets are missing:\n")
    for variable in (
        "COMPLIANCEBOT_SLACK__SIGNING_SECRET",
        "COMPLIANCEBOT_TICKETS__JIRA__API_TOKEN",
        "COMPLIANCEBOT_TICKETS__TRELLO__TOKEN",
    ):
        assert variable in serve.stderr
    assert "Traceback" not in trello.stderr + flush.stderr + serve.stderr


def _trackers_env(
    tmp_path: Path, jira: FakeJira, trello: FakeTrello, **extra: str
) -> dict[str, str]:
    """Jira (Server, a token) and Trello on, pointed at the fakes."""
    return _plain_env(
        tmp_path,
        COMPLIANCEBOT_TICKETS__JIRA__ENABLED="true",
        COMPLIANCEBOT_TICKETS__JIRA__URL=jira.url,
        COMPLIANCEBOT_TICKETS__JIRA__TOKEN="pat-secret-123",
        COMPLIANCEBOT_TICKETS__TRELLO__ENABLED="true",
        COMPLIANCEBOT_TICKETS__TRELLO__API_URL=trello.url,
        COMPLIANCEBOT_TICKETS__TRELLO__API_KEY=TRELLO_KEY,
        COMPLIANCEBOT_TICKETS__TRELLO__TOKEN=TRELLO_TOKEN,
        COMPLIANCEBOT_TICKETS__TRELLO__BOARD="Compliance",
        **extra,
    )


def test_config_check_names_a_wrong_jira_project_and_a_wrong_trello_list_together(
    tmp_path: Path,
) -> None:
    """A wrong Jira project and a wrong Trello list are both named by one `config check`."""
    with FakeJira() as jira, FakeTrello() as trello:
        trello.add_board("Compliance")
        env = _trackers_env(
            tmp_path,
            jira,
            trello,
            COMPLIANCEBOT_TICKETS__JIRA__PROJECT="OPS",
            COMPLIANCEBOT_TICKETS__TRELLO__LISTS='{"open": "Backlog", "claimed": "Doing"}',
        )

        result = run_cli("config", "check", env=env, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: 2 problems in the configuration:",
        "  tickets.jira.project 'OPS' does not exist; projects: SEC",
        "  tickets.trello.lists.open: board 'Compliance' has no list 'Backlog'; lists: To Do, "
        "Doing, Done",
    ]
    assert "pat-secret-123" not in result.stdout + result.stderr


def test_config_check_names_a_wrong_transition_users_naming_nobody_and_missing_secrets(
    tmp_path: Path,
) -> None:
    """A done transition the workflow lacks, a Jira user nobody is, a Trello user who is not
    on the board and Slack's missing secrets: all named at once, before any ticket exists."""
    with FakeJira() as jira, FakeTrello() as trello:
        trello.add_board("Compliance")
        jira.add_user(name="alice", email="alice@example.com")
        jira.add_issue("SEC", "someone's open task", [])
        env = _trackers_env(
            tmp_path,
            jira,
            trello,
            COMPLIANCEBOT_TICKETS__JIRA__DONE_TRANSITION="Close",
            COMPLIANCEBOT_TICKETS__JIRA__USERS='{"UALICE": "alice", "UBOB": "bob"}',
            COMPLIANCEBOT_TICKETS__TRELLO__USERS=f'{{"UPAT": "{trello.person["id"]}", "UX": "x"}}',
            COMPLIANCEBOT_SLACK__ENABLED="true",
            COMPLIANCEBOT_SLACK__CHANNEL="C0COMPLY",
        )

        result = run_cli("config", "check", env=env, cwd=tmp_path)

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "error: 4 problems in the configuration:"
    assert lines[1].startswith("  slack.bot_token and slack.signing_secret are not set")
    assert lines[2].startswith(
        "  tickets.jira.done_transition: 'Close' is not a transition from status 'To Do' "
        "(e.g. SEC-1)"
    )
    assert lines[3].startswith("  tickets.jira.users.UBOB: 'bob' finds no Jira user")
    assert lines[4].startswith("  tickets.trello.users.UX: 'x' is not the id of a member")
    assert not jira.calls_to("POST", "issue")
    assert not trello.calls_to("POST", "cards")


# ---- the compliance calendar on the command line ---------------------------------------------


@dataclass
class CalendarCli:
    """The CLI over a migrated ledger with the monthly firewall review task (due the 15th,
    09:00 Berlin), its clock injected."""

    runner: CliRunner
    config: Path
    clock: FakeClock
    sessions: sessionmaker[Session]
    settings: Settings

    def run(self, *args: str) -> str:
        """Run a command that must succeed; its output."""
        result = self.runner.invoke(app, ["--config", str(self.config), *args])
        assert result.exit_code == 0, result.output
        return result.output


@pytest.fixture
def calendar_cli(
    tmp_path: Path,
    db_url: str,
    sessions: sessionmaker[Session],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> CalendarCli:
    """The calendar CLI on SQLite and PostgreSQL, evidence kept in tmp_path/evidence."""
    root = task_dir(tmp_path / "mytasks")
    settings = settings_for(root, evidence_dir=str(tmp_path / "evidence"))
    config = tmp_path / "compliancebot.yaml"
    calendar = settings.calendar
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "database": {"url": db_url},
                "calendar": {
                    "enabled": True,
                    "timezone": calendar.timezone,
                    "paths": [str(p) for p in calendar.paths],
                    "disabled": list(calendar.disabled),
                    "escalation": calendar.escalation.model_dump(),
                    "horizon_days": calendar.horizon_days,
                    "evidence_dir": str(calendar.evidence_dir),
                },
            }
        )
    )
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr("bot.cli.utcnow", clock)
    return CalendarCli(CliRunner(), config, clock, sessions, settings)


def occurrence_due(sessions: sessionmaker[Session], day: date) -> TaskOccurrence:
    """The occurrence due on `day`."""
    with sessions() as session:
        found = session.scalar(select(TaskOccurrence).where(TaskOccurrence.due_on == day))
        assert found is not None
        return found


def test_completing_on_the_cli_redraws_the_reminders_and_the_escalation_in_slack(
    calendar_cli: CalendarCli,
) -> None:
    """`tasks done` on the CLI: the next Slack round redraws the owner's DM, the channel's
    reminder and the manager's escalation as done (late, by whom), with no buttons left."""
    cal = calendar_cli
    with FakeSlack() as slack:
        settings = cal.settings.model_copy(
            update={
                "slack": SlackSettings(
                    enabled=True,
                    api_url=slack.base_url,
                    bot_token="xoxb-test",
                    signing_secret="s" * 32,
                    channel="C0FINDINGS",
                    max_retries=0,
                )
            }
        )
        services = build_services(
            settings=settings, catalog=CATALOG, engine=cal.sessions.kw["bind"], clock=cal.clock
        )
        cal.clock.now = datetime(2026, 12, 15, 9, 0, tzinfo=UTC)  # an hour past due: reminded
        cal.run("tasks", "sweep")
        cal.clock.now = datetime(2026, 12, 17, 9, 0, tzinfo=UTC)  # two days: escalated
        cal.run("tasks", "sweep")
        services.delivery.run_once()
        occ = occurrence_due(cal.sessions, date(2026, 12, 15)).id
        before = {
            ch: list(slack.messages[ch]) for ch in (slack.dm_channel(OWNER), CHANNEL, MANAGER)
        }

        said = cal.run("tasks", "done", str(occ), "--by", "alice", "--note", "rules reviewed")
        services.delivery.run_once()
        services.delivery.run_once()  # nothing left: each message is redrawn once

        after = {ch: slack.messages[ch] for ch in before}
        updates = slack.calls_to("chat.update")

    assert "done by alice, late" in said
    assert [len(m) for m in before.values()] == [1, 1, 1]
    assert len(updates) == 3
    for channel, (message,) in after.items():
        blocks = json.dumps(message["blocks"])
        assert not [b for b in message["blocks"] if b["type"] == "actions"], channel
        assert "Done by alice, late" in blocks
    (escalated,) = after[MANAGER]
    assert "*Overdue:* Review the firewall rules" in json.dumps(escalated["blocks"])
    assert escalated["text"] == "Review the firewall rules: done (2026-12-15)"


def test_tasks_list_says_overdue_four_hours_after_the_due_time(calendar_cli: CalendarCli) -> None:
    """Due today at 09:00 Berlin, listed at 13:00: "overdue since 09:00 today", not "due
    today"; tomorrow's due date is still "due in 1 day"."""
    cal = calendar_cli
    cal.clock.now = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)

    cal.run("tasks", "sweep")
    listed = cal.run("tasks", "list", "--days", "45")

    (row,) = [line for line in listed.splitlines() if "2026-12-15" in line]
    assert "overdue since 09:00 today" in row
    assert "due today" not in listed


@pytest.mark.parametrize("name", ["...", " . ", "\u202e", "\x1b[31m"])
def test_tasks_done_keeps_a_file_whose_name_sanitizes_to_nothing(
    calendar_cli: CalendarCli, tmp_path: Path, name: str
) -> None:
    """`tasks done --file` with a file called '...' (or a space and a dot, a control
    character): its bytes are written under evidence/<sha256>/ with a safe name, and the
    recorded location holds them."""
    cal = calendar_cli
    cal.clock.now = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
    cal.run("tasks", "sweep")
    occ = occurrence_due(cal.sessions, date(2026, 12, 15)).id
    upload = tmp_path / "upload"
    upload.mkdir()
    (upload / name).write_bytes(b"firewall export: 41 rules, 0 open to the world")

    cal.run(
        "tasks", "done", str(occ), "--by", "alice", "--note", "ok", "--file", str(upload / name)
    )

    done = occurrence_due(cal.sessions, date(2026, 12, 15))
    digest = hashlib.sha256(b"firewall export: 41 rules, 0 open to the world").hexdigest()
    kept = Path(str(done.evidence_file))
    assert (done.status, done.evidence_sha256) == ("done", digest)
    assert kept.parent == tmp_path / "evidence" / digest
    assert kept.name.strip(". ")
    assert kept.name.isprintable()
    assert kept.read_bytes() == b"firewall export: 41 rules, 0 open to the world"


def test_a_refused_completion_keeps_no_evidence_file(
    calendar_cli: CalendarCli, tmp_path: Path
) -> None:
    """`tasks done --file` with a link that is not a URL: refused with the ledger's reason, the
    occurrence stays open, and no file is left in the evidence directory."""
    cal = calendar_cli
    cal.clock.now = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
    cal.run("tasks", "sweep")
    occ = occurrence_due(cal.sessions, date(2026, 12, 15)).id
    report = tmp_path / "report.txt"
    report.write_bytes(b"firewall export")

    result = cal.runner.invoke(
        app,
        [
            "--config",
            str(cal.config),
            "tasks",
            "done",
            str(occ),
            "--by",
            "alice",
            "--note",
            "ok",
            "--link",
            "javascript:alert(1)",
            "--file",
            str(report),
        ],
    )

    assert result.exit_code != 0
    assert "--link: the link must start with https:// or http://" in str(result.exception)
    assert occurrence_due(cal.sessions, date(2026, 12, 15)).status == "open"
    assert not (tmp_path / "evidence").exists() or not any((tmp_path / "evidence").rglob("*.*"))


def test_config_check_names_an_unmapped_owner_role_at_its_line(
    tmp_path: Path, calendar_cli: CalendarCli
) -> None:
    """An owner role missing from calendar.owners: exit 2, the problem on one line as
    file:line: owner: what is wrong (never a bare file name, never split over lines)."""
    task = tmp_path / "mytasks" / "tasks" / "firewall_review.yaml"
    task.write_text(task.read_text().replace(f"owner: {OWNER}", "owner: auditors"))
    env = {**os.environ, "COLUMNS": "80", "COMPLIANCEBOT_CALENDAR__OWNERS": '{"it": "U0123ABCD"}'}

    result = run_cli("--config", str(calendar_cli.config), "config", "check", env=env, cwd=tmp_path)

    problem = f"{task}:10: owner: owner role 'auditors' is not in calendar.owners (defined: it)"
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"error: {problem}"]


def test_tasks_done_says_why_a_file_cannot_be_kept_and_leaves_the_task_open(
    calendar_cli: CalendarCli, tmp_path: Path
) -> None:
    """calendar.evidence_dir is a file, not a folder: exit 2 with one line naming the setting
    and the reason, no traceback, and the occurrence is not recorded done without its file."""
    cal = calendar_cli
    cal.clock.now = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
    cal.run("tasks", "sweep")
    occ = occurrence_due(cal.sessions, date(2026, 12, 15)).id
    (tmp_path / "evidence").write_text("not a folder")
    (tmp_path / "export.csv").write_text("rule,open\n")

    result = run_cli(
        "--config",
        str(cal.config),
        "tasks",
        "done",
        str(occ),
        "--by",
        "alice",
        "--note",
        "ok",
        "--file",
        str(tmp_path / "export.csv"),
        env={**os.environ, "COLUMNS": "80"},
        cwd=tmp_path,
    )

    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"error: export.csv could not be kept in calendar.evidence_dir ({tmp_path / 'evidence'})"
        ": File exists\n"
    )
    assert occurrence_due(cal.sessions, date(2026, 12, 15)).status == "open"
