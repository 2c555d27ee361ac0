"""The compliancebot command line, as an operator uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from bot.cli import app
from tests.fakes.hostile_files import HOSTILE, hostile_cases, limit_memory

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


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
        timeout=120,
    )


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
    return subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if k != "COLUMNS"},  # rich's default 80 columns
        cwd=cwd,
        check=False,
        timeout=120,
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
