"""The compliancebot command line, as an operator uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from bot.cli import app

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
        "2099-01-01",
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
