"""A finding says what is wrong: stored by the scan, changed on rescans, shown everywhere."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import boto3
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot import output
from bot.scanning import run_scan
from bot.settings import Settings
from bot.slack.blocks import finding_blocks
from bot.slack.render import finding_view
from bot.tickets import jira_sync
from ledger.models import Finding
from rules.catalog import load_catalog
from scanners.aws.collector import AwsCollector, AwsTarget
from tests.conftest import FakeClock
from tests.fakes.jira import FakeJira
from tests.integrations.rendered import jira_text
from tests.ledger.helpers import obs, only_finding, scan

CATALOG = load_catalog()
SSH = "ec2_sg_ssh_open_to_world"


def aws_scan(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    clock.advance(hours=1)
    collector = AwsCollector(
        targets=[AwsTarget(name="t", regions=("us-east-1",))], sleep=lambda _s: None
    )
    run_scan(catalog=CATALOG, collector=collector, sessions=sessions, clock=clock, rule_ids=[SSH])


def ssh_finding(sessions: sessionmaker[Session]) -> Finding:
    with sessions() as session:
        return session.scalars(select(Finding).where(Finding.rule_id == SSH)).one()


@pytest.mark.usefixtures("moto_world")
def test_scan_stores_the_detail_and_a_change_bumps_the_version(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Port 22 open to the internet beside a private range: the detail names only the internet;
    opening it to IPv6 too changes the detail (and the version, so Slack re-renders); a quiet
    rescan changes neither."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    group = ec2.create_security_group(GroupName="admin", Description="admin")["GroupId"]
    ssh = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[{**ssh, "IpRanges": [{"CidrIp": "10.0.0.0/8"}, {"CidrIp": "0.0.0.0/0"}]}],
    )
    aws_scan(sessions, clock)
    first = ssh_finding(sessions)
    assert first.detail == "tcp port 22 open to 0.0.0.0/0"
    assert first.evidence is not None
    assert first.evidence["items"][0]["sources"] == ["0.0.0.0/0"]

    ec2.authorize_security_group_ingress(
        GroupId=group, IpPermissions=[{**ssh, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]
    )
    aws_scan(sessions, clock)
    second = ssh_finding(sessions)
    assert second.detail == "tcp port 22 open to 0.0.0.0/0, ::/0"
    assert second.version == first.version + 1

    aws_scan(sessions, clock)
    assert ssh_finding(sessions).version == second.version

    # What `findings --output json` and the Slack message show.
    doc = output.finding_json(second, CATALOG.rule(SSH))
    assert doc["detail"] == "tcp port 22 open to 0.0.0.0/0, ::/0"
    assert doc["evidence"]["items"][0]["from_port"] == 22
    event = output.ocsf_event(second, CATALOG.rule(SSH), product_version="t", now=clock())
    assert event["status_detail"] == "tcp port 22 open to 0.0.0.0/0, ::/0"
    assert event["compliance"]["status_details"] == [event["status_detail"]]
    assert event["unmapped"]["evidence"]["items"][0]["sources"] == ["0.0.0.0/0", "::/0"]
    blocks = finding_blocks(finding_view(second, CATALOG, clock()))
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    assert "*What is wrong*\ntcp port 22 open to 0.0.0.0/0, ::/0" in texts


def test_slack_escapes_a_hostile_detail(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    """Values in a detail come from the account (names, Sids): never a ping or a link in Slack."""
    scan(sessions, clock, [dataclasses.replace(obs(), detail="statement <!channel> <https://x|y>")])
    finding = only_finding(sessions)
    blocks = finding_blocks(finding_view(finding, CATALOG, clock()))
    shown = "\n".join(b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b)
    assert "<!channel>" not in shown
    assert "<https://x|y>" not in shown
    assert "&lt;!channel&gt;" in shown


@pytest.fixture
def jira() -> Iterator[FakeJira]:
    with FakeJira() as fake:
        yield fake


def test_the_ticket_says_what_is_wrong_and_is_told_when_it_changes(
    jira: FakeJira, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    settings = Settings.model_validate(
        {"tickets": {"jira": {"enabled": True, "url": jira.url, "token": "pat", "timeout": 5}}}
    )
    tickets = jira_sync(settings=settings, catalog=CATALOG, sessions=sessions, clock=clock)
    before = dataclasses.replace(obs(), detail="Encrypted: false", evidence={"Encrypted": False})
    scan(sessions, clock, [before])
    tickets.run_once()
    (issue,) = jira.issues.values()
    assert "What is wrong: Encrypted: false" in jira_text(issue["fields"]["description"])

    scan(sessions, clock, [before])  # the same detail: nothing to tell
    calls = len(jira.calls)
    tickets.run_once()
    assert len(jira.calls) == calls

    after = dataclasses.replace(before, detail="Encrypted: false; KmsKeyId: not set")
    scan(sessions, clock, [after])
    tickets.run_once()
    tickets.run_once()
    comments = [jira_text(c["body"]) for c in issue["fields"]["comment"]["comments"]]
    assert comments == ["compliancebot: what is wrong now: Encrypted: false; KmsKeyId: not set"]
