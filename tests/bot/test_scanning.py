"""A scan end to end against moto: collect, evaluate, merge, and survive a denied service."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.scanning import NothingScannedError, ScanOutcome, recheck, run_scan
from ledger.models import Finding, FindingStatus, Scan, ScanErrorRow, ScanStatus
from rules.catalog import load_catalog
from scanners.aws.collector import AwsCollector, AwsTarget
from tests.cli import run_cli
from tests.conftest import FakeClock

pytestmark = pytest.mark.usefixtures("moto_world")

CATALOG = load_catalog()
ACCOUNT = "123456789012"  # moto's account
EAST, WEST = "us-east-1", "us-west-2"
VOLUME, SSH, BUCKET_ENCRYPTION = (
    "ec2_volume_encrypted",
    "ec2_sg_ssh_open_to_world",
    "s3_bucket_default_encryption",
)


def test_rule_ids_used_here_exist() -> None:
    """The rules these scenarios rely on are in the built-in catalog."""
    assert {VOLUME, SSH, BUCKET_ENCRYPTION} <= set(CATALOG.rules)


# ---- building the simulated account ------------------------------------------------------------


def unencrypted_volume(region: str = EAST) -> str:
    """An EBS volume without encryption."""
    ec2 = boto3.client("ec2", region_name=region)
    return str(
        ec2.create_volume(AvailabilityZone=f"{region}a", Size=1, Encrypted=False)["VolumeId"]
    )


def ssh_open_group(name: str = "ssh") -> str:
    """A security group letting the whole internet in on port 22."""
    ec2 = boto3.client("ec2", region_name=EAST)
    group = str(ec2.create_security_group(GroupName=name, Description="ssh")["GroupId"])
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[SSH_FROM_WORLD])
    return group


SSH_FROM_WORLD: dict[str, Any] = {
    "IpProtocol": "tcp",
    "FromPort": 22,
    "ToPort": 22,
    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
}


def legacy_bucket(name: str, region: str = EAST) -> str:
    """An S3 bucket with no default encryption (moto does not add SSE-S3 on its own)."""
    s3 = boto3.client("s3", region_name=region)
    if region == EAST:
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return name


def failing_call(predicate: Callable[[str, str], bool]) -> boto3.Session:
    """A boto3 session on which every call matching (service, operation) is AccessDenied."""

    def deny(model: Any, **_: Any) -> None:
        if predicate(model.service_model.service_name, model.name):
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "denied by test"}}, model.name
            )

    session = boto3.Session()
    session.events.register("before-call", deny)
    return session


# ---- running scans and reading the ledger ------------------------------------------------------


def collector(
    *, session: boto3.Session | None = None, regions: tuple[str, ...] = (EAST,)
) -> AwsCollector:
    """A collector for the moto account; `session` replaces the default credentials."""
    target = AwsTarget(name="t", regions=regions)
    factory = (lambda _t: session) if session is not None else None
    return AwsCollector(targets=[target], session_factory=factory, sleep=lambda _s: None)


def scan(
    sessions: sessionmaker[Session],
    clock: FakeClock,
    *,
    using: AwsCollector | None = None,
    **kw: Any,
) -> ScanOutcome:
    """One scan an hour after the previous one."""
    clock.advance(hours=1)
    return run_scan(
        catalog=CATALOG, collector=using or collector(), sessions=sessions, clock=clock, **kw
    )


def finding(sessions: sessionmaker[Session], rule_id: str, resource_id: str) -> Finding:
    """The finding for one rule on one resource."""
    with sessions() as session:
        return session.scalars(
            select(Finding).where(Finding.rule_id == rule_id, Finding.resource_id == resource_id)
        ).one()


def all_findings(sessions: sessionmaker[Session]) -> list[Finding]:
    """Every finding in the ledger."""
    with sessions() as session:
        return list(session.scalars(select(Finding).order_by(Finding.id)))


def stored_scan(sessions: sessionmaker[Session], scan_id: int) -> tuple[Scan, list[ScanErrorRow]]:
    """A scan as the CLI would show it, with its errors."""
    with sessions() as session:
        row = session.get(Scan, scan_id)
        assert row is not None
        errors = list(session.scalars(select(ScanErrorRow).where(ScanErrorRow.scan_id == scan_id)))
        return row, errors


# ---- the tests ---------------------------------------------------------------------------------


def test_scan_raises_findings_and_resolves_deleted_resource(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Bad resources show up as findings; deleting one resolves it and leaves the others open."""
    volume, group = unencrypted_volume(), ssh_open_group()

    first = scan(sessions, clock)

    assert first.scan.status == ScanStatus.complete
    assert first.counts.new >= 2
    vol_finding = finding(sessions, VOLUME, volume)
    sg_finding = finding(sessions, SSH, group)
    assert (vol_finding.status, vol_finding.account, vol_finding.region) == (
        FindingStatus.open,
        ACCOUNT,
        EAST,
    )
    assert sg_finding.status == FindingStatus.open
    assert sg_finding.resource_name == "ssh"

    boto3.client("ec2", region_name=EAST).delete_volume(VolumeId=volume)
    second = scan(sessions, clock)

    assert second.scan.status == ScanStatus.complete
    assert (second.counts.new, second.counts.resolved) == (0, 1)
    gone = finding(sessions, VOLUME, volume)
    assert gone.status == FindingStatus.resolved
    assert gone.resolved_by == "scanner"
    assert gone.resolution_note == f"scan {second.scan.id} no longer found the resource"
    still = finding(sessions, SSH, group)
    assert still.status == FindingStatus.open
    assert still.last_seen == clock()
    assert still.last_scan_id == second.scan.id


def test_fixing_a_resource_resolves_its_finding(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Closing port 22 to the world resolves the security-group finding as compliant."""
    group = ssh_open_group()
    scan(sessions, clock, rule_ids=[SSH])

    boto3.client("ec2", region_name=EAST).revoke_security_group_ingress(
        GroupId=group, IpPermissions=[SSH_FROM_WORLD]
    )
    outcome = scan(sessions, clock, rule_ids=[SSH])

    fixed = finding(sessions, SSH, group)
    assert fixed.status == FindingStatus.resolved
    assert fixed.resolution_note == f"scan {outcome.scan.id} found the resource compliant"


def test_denied_service_leaves_rest_of_scan_intact(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """When S3 is AccessDenied the scan is partial, S3 findings stay open, EC2 still updates."""
    volume, group, bucket = unencrypted_volume(), ssh_open_group(), legacy_bucket("legacy")
    first = scan(sessions, clock)
    assert first.scan.status == ScanStatus.complete
    s3_before = {f.id: f for f in all_findings(sessions) if f.resource_id == bucket}
    assert BUCKET_ENCRYPTION in {f.rule_id for f in s3_before.values()}
    assert all(f.status == FindingStatus.open for f in s3_before.values())

    boto3.client("ec2", region_name=EAST).delete_volume(VolumeId=volume)
    denied = failing_call(lambda service, _op: service == "s3")
    second = scan(sessions, clock, using=collector(session=denied))

    row, errors = stored_scan(sessions, second.scan.id)
    assert row.status == ScanStatus.partial
    assert row.error_count == len(errors) >= 1
    s3_errors = [e for e in errors if e.service == "s3"]
    assert [(e.account, e.code, e.message) for e in s3_errors] == [
        (ACCOUNT, "AccessDenied", "denied by test")
    ]
    assert {e.service for e in errors} == {"s3"}
    # S3 could not be listed: nothing there is resolved or even touched.
    s3_after = {f.id: f for f in all_findings(sessions) if f.resource_id == bucket}
    assert s3_after.keys() == s3_before.keys()
    for before_id, before in s3_before.items():
        after = s3_after[before_id]
        assert (after.status, after.last_seen, after.resolved_at) == (
            FindingStatus.open,
            before.last_seen,
            None,
        ), after.rule_id
    # ... while EC2 in the very same scan is judged as usual.
    assert finding(sessions, VOLUME, volume).status == FindingStatus.resolved
    sg = finding(sessions, SSH, group)
    assert (sg.status, sg.last_scan_id) == (FindingStatus.open, second.scan.id)
    assert second.counts.resolved == 1


def test_denied_enrich_call_does_not_resolve_finding(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """If only GetBucketEncryption is denied, the bucket's encryption finding stays open."""
    bucket = legacy_bucket("legacy")
    scan(sessions, clock, rule_ids=[BUCKET_ENCRYPTION])
    assert finding(sessions, BUCKET_ENCRYPTION, bucket).status == FindingStatus.open

    denied = failing_call(lambda service, op: (service, op) == ("s3", "GetBucketEncryption"))
    outcome = scan(sessions, clock, using=collector(session=denied), rule_ids=[BUCKET_ENCRYPTION])

    assert outcome.scan.status == ScanStatus.partial
    assert [(e.operation, e.code) for e in outcome.collection.errors] == [
        ("get_bucket_encryption", "AccessDenied")
    ]
    assert finding(sessions, BUCKET_ENCRYPTION, bucket).status == FindingStatus.open


def test_unreachable_account_fails_the_scan_and_resolves_nothing(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """If every call is denied (bad credentials) the scan fails with the reason; nothing changes."""
    unencrypted_volume()
    ssh_open_group()
    legacy_bucket("legacy")
    scan(sessions, clock)
    before = [(f.id, f.status, f.last_seen) for f in all_findings(sessions)]
    assert before

    with pytest.raises(NothingScannedError, match=r"every target failed.*sts\.\w+: AccessDenied"):
        scan(sessions, clock, using=collector(session=failing_call(lambda *_: True)))

    with sessions() as session:
        last = session.scalars(select(Scan).order_by(Scan.id.desc())).first()
        assert last is not None
        assert last.status == ScanStatus.failed
        assert "AccessDenied" in (last.message or "")
    assert [(f.id, f.status, f.last_seen) for f in all_findings(sessions)] == before


def test_missing_profile_fails_the_cli_scan(tmp_path: Path) -> None:
    """`scan` with a profile that does not exist exits non-zero and names the target and why."""
    config = tmp_path / "compliancebot.yaml"
    config.write_text(
        f"database:\n  url: sqlite:///{tmp_path / 'l.db'}\n"
        "aws:\n  targets:\n    - name: prod\n      profile: no-such-profile\n"
        "      regions: [us-east-1]\n"
    )
    env = {**os.environ, "COMPLIANCEBOT_CONFIG": str(config), "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=env)

    assert run("db", "upgrade").returncode == 0
    result = run("scan")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "every target failed" in result.stderr
    assert "prod: sts.session: ProfileNotFound" in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr


def test_scan_limited_to_one_rule_resolves_only_that_rule(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """`scan --rule X` resolves X's findings only; other rules' findings wait for their scan."""
    volume, group = unencrypted_volume(), ssh_open_group()
    scan(sessions, clock, rule_ids=[VOLUME, SSH])
    ec2 = boto3.client("ec2", region_name=EAST)
    ec2.delete_volume(VolumeId=volume)
    ec2.delete_security_group(GroupId=group)

    only_volumes = scan(sessions, clock, rule_ids=[VOLUME])

    assert only_volumes.scan.scope["rules"] == [VOLUME]
    assert finding(sessions, VOLUME, volume).status == FindingStatus.resolved
    assert finding(sessions, SSH, group).status == FindingStatus.open

    scan(sessions, clock, rule_ids=[VOLUME, SSH])
    assert finding(sessions, SSH, group).status == FindingStatus.resolved


def test_region_filter_leaves_other_regions_untouched(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """`scan --region us-east-1` resolves nothing in us-west-2, regional or S3."""
    rules = [VOLUME, BUCKET_ENCRYPTION]
    east_volume, west_volume = unencrypted_volume(EAST), unencrypted_volume(WEST)
    west_bucket = legacy_bucket("west-legacy", WEST)
    both = collector(regions=(EAST, WEST))
    scan(sessions, clock, using=both, rule_ids=rules)
    assert finding(sessions, VOLUME, west_volume).region == WEST
    assert finding(sessions, BUCKET_ENCRYPTION, west_bucket).region == WEST
    boto3.client("ec2", region_name=EAST).delete_volume(VolumeId=east_volume)
    boto3.client("ec2", region_name=WEST).delete_volume(VolumeId=west_volume)
    boto3.client("s3", region_name=WEST).delete_bucket(Bucket=west_bucket)

    east_only = scan(sessions, clock, using=both, rule_ids=rules, regions={EAST})

    assert east_only.scan.status == ScanStatus.complete
    assert east_only.counts.resolved == 1
    assert finding(sessions, VOLUME, east_volume).status == FindingStatus.resolved
    assert finding(sessions, VOLUME, west_volume).status == FindingStatus.open
    assert finding(sessions, BUCKET_ENCRYPTION, west_bucket).status == FindingStatus.open

    scan(sessions, clock, using=both, rule_ids=rules)
    assert finding(sessions, VOLUME, west_volume).status == FindingStatus.resolved
    assert finding(sessions, BUCKET_ENCRYPTION, west_bucket).status == FindingStatus.resolved


def test_scan_records_its_aws_api_calls(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    """Each scan shows how many AWS API calls it made, per service."""
    unencrypted_volume()

    outcome = scan(sessions, clock)

    row, _ = stored_scan(sessions, outcome.scan.id)
    assert row.api_calls > 0
    assert row.api_calls_by_service["ec2"] > 0
    assert row.api_calls == sum(row.api_calls_by_service.values())
    assert row.resources > 0
    assert row.finished_at == clock()
    assert row.counts["new"] == outcome.counts.new


# ---- the re-check after a person resolves a finding -----------------------------------------


def test_recheck_answers_for_one_resource_with_one_rule() -> None:
    """Re-checking reads only what the rule needs and says fail, pass or gone for that resource."""
    bad = unencrypted_volume()
    ec2 = boto3.client("ec2", region_name=EAST)
    good = str(ec2.create_volume(AvailabilityZone=f"{EAST}a", Size=1, Encrypted=True)["VolumeId"])

    def check(resource_id: str) -> Any:
        return recheck(
            catalog=CATALOG,
            collector=collector(),
            rule_id=VOLUME,
            account=ACCOUNT,
            region=EAST,
            resource_id=resource_id,
        )

    failing, passing = check(bad), check(good)
    ec2.delete_volume(VolumeId=bad)
    gone = check(bad)

    assert (failing.verdict, passing.verdict, gone.verdict) == ("fail", "pass", "pass")
    assert gone.detail == "the resource no longer exists"
    assert 0 < failing.api_calls <= 3  # the volumes listing (and the account), not a full scan


def test_recheck_of_a_disabled_rule_cannot_tell() -> None:
    """A rule switched off since the finding was raised gives 'unknown', not a verdict."""
    result = recheck(
        catalog=CATALOG,
        collector=collector(),
        rule_id="no_such_rule",
        account=ACCOUNT,
        region=EAST,
        resource_id="vol-1",
    )

    assert result.verdict == "unknown"
    assert "not enabled" in result.detail
