"""Fidelity on one seeded account: the hard cases peers catch, asserted as exact findings.

Each case is what a scanner gets wrong most often (IPv6-only rules, protocol -1 on ::/0, a
0-65535 range, a world CIDR second in a permission, keys disabled or pending deletion, public
bucket policies with and without a restricting condition, Aurora clusters, trails that are
single-region or not logging). The whole set of (resource, rule, detail) is compared: a finding
too many is as wrong as one missing.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.scanning import run_scan
from ledger.models import Finding
from rules.catalog import load_catalog
from scanners.aws.collector import AwsCollector, AwsTarget
from tests.conftest import FakeClock

pytestmark = pytest.mark.usefixtures("moto_world")

CATALOG = load_catalog()
REGION = "us-east-1"
SG_RULES = [
    "ec2_sg_all_traffic_open_to_world",
    "ec2_sg_database_ports_open_to_world",
    "ec2_sg_insecure_service_ports_open_to_world",
    "ec2_sg_rdp_open_to_world",
    "ec2_sg_ssh_open_to_world",
]
RULES = [
    *SG_RULES,
    "kms_key_pending_deletion",
    "s3_bucket_public_policy",
    "rds_cluster_storage_encrypted",
    "rds_cluster_backup_retention",
    "rds_cluster_deletion_protection",
    "rds_cluster_iam_authentication",
    "cloudtrail_trail_multi_region",
    "cloudtrail_logging_enabled",
]


def group(ec2: Any, name: str, *permissions: dict[str, Any]) -> str:
    gid = str(ec2.create_security_group(GroupName=name, Description=name)["GroupId"])
    if permissions:
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=list(permissions))
    return gid


def bucket_with_policy(s3: Any, name: str, condition: dict[str, Any] | None) -> None:
    s3.create_bucket(Bucket=name)
    statement: dict[str, Any] = {
        "Sid": "Everyone",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{name}/*",
    }
    if condition:
        statement["Condition"] = condition
    s3.put_bucket_policy(
        Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    )


def seed() -> dict[str, str]:
    """The account; returns the generated ids by name."""
    ec2 = boto3.client("ec2", region_name=REGION)
    ids = {
        "ipv6_ssh": group(
            ec2,
            "ipv6-ssh",
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
            },
        ),
        "all_v6": group(ec2, "all-v6", {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}),
        "wide": group(
            ec2,
            "wide",
            {
                "IpProtocol": "tcp",
                "FromPort": 0,
                "ToPort": 65535,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
        ),
        "second_cidr": group(
            ec2,
            "second-cidr",
            {
                "IpProtocol": "tcp",
                "FromPort": 3306,
                "ToPort": 3306,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}, {"CidrIp": "0.0.0.0/0"}],
            },
        ),
        "private": group(
            ec2,
            "private",
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
            },
        ),
    }
    kms = boto3.client("kms", region_name=REGION)
    disabled = kms.create_key(Description="disabled")["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=disabled)
    pending = kms.create_key(Description="pending")["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=pending, PendingWindowInDays=7)
    ids |= {"kms_disabled": disabled, "kms_pending": pending}

    s3 = boto3.client("s3", region_name=REGION)
    bucket_with_policy(s3, "fid-open", None)
    bucket_with_policy(s3, "fid-referer", {"StringLike": {"aws:Referer": "https://example.com/*"}})
    bucket_with_policy(s3, "fid-vpce", {"StringEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}})
    bucket_with_policy(s3, "fid-org", {"StringEquals": {"aws:PrincipalOrgID": "o-abc123def4"}})
    s3.create_bucket(Bucket="trail-logs")

    rds = boto3.client("rds", region_name=REGION)
    for name, settings in {
        "aurora-bad": {"StorageEncrypted": False, "BackupRetentionPeriod": 1},
        "aurora-good": {
            "StorageEncrypted": True,
            "BackupRetentionPeriod": 7,
            "DeletionProtection": True,
            "EnableIAMDatabaseAuthentication": True,
        },
    }.items():
        rds.create_db_cluster(
            DBClusterIdentifier=name,
            Engine="aurora-postgresql",
            MasterUsername="app",
            MasterUserPassword="correct-horse-battery",
            **settings,
        )

    trails = boto3.client("cloudtrail", region_name=REGION)
    trails.create_trail(Name="regional", S3BucketName="trail-logs")
    trails.start_logging(Name="regional")
    trails.create_trail(Name="org-wide-stopped", S3BucketName="trail-logs", IsMultiRegionTrail=True)
    return ids


def test_the_seeded_account_yields_exactly_these_findings(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    ids = seed()
    collector = AwsCollector(
        targets=[AwsTarget(name="t", regions=(REGION,))], sleep=lambda _s: None
    )
    run_scan(catalog=CATALOG, collector=collector, sessions=sessions, clock=clock, rule_ids=RULES)
    with sessions() as session:
        found = {(f.resource_id, f.rule_id, f.detail) for f in session.scalars(select(Finding))}

    def every_sg_rule(name: str, detail: str, rules: list[str] = SG_RULES) -> set[Any]:
        return {(ids[name], rule, detail) for rule in rules}

    trail = f"arn:aws:cloudtrail:{REGION}:123456789012:trail/"
    expected = {
        (ids["ipv6_ssh"], "ec2_sg_ssh_open_to_world", "tcp port 22 open to ::/0"),
        *every_sg_rule("all_v6", "all traffic open to ::/0"),
        *every_sg_rule("wide", "tcp ports 0-65535 open to 0.0.0.0/0"),
        (
            ids["second_cidr"],
            "ec2_sg_database_ports_open_to_world",
            "tcp port 3306 open to 0.0.0.0/0",
        ),
        (ids["kms_pending"], "kms_key_pending_deletion", "Metadata.KeyState: PendingDeletion"),
        (
            "fid-open",
            "s3_bucket_public_policy",
            "statement Everyone allows s3:GetObject on arn:aws:s3:::fid-open/* to everyone "
            "(condition: none)",
        ),
        (
            "fid-referer",
            "s3_bucket_public_policy",
            "statement Everyone allows s3:GetObject on arn:aws:s3:::fid-referer/* to everyone "
            '(condition: {"StringLike":{"aws:Referer":"https://example.com/*"}})',
        ),
        ("aurora-bad", "rds_cluster_storage_encrypted", "StorageEncrypted: false"),
        ("aurora-bad", "rds_cluster_backup_retention", "BackupRetentionPeriod: 1"),
        ("aurora-bad", "rds_cluster_deletion_protection", "DeletionProtection: false"),
        ("aurora-bad", "rds_cluster_iam_authentication", "IAMDatabaseAuthenticationEnabled: false"),
        (f"{trail}regional", "cloudtrail_trail_multi_region", "IsMultiRegionTrail: false"),
        (f"{trail}org-wide-stopped", "cloudtrail_logging_enabled", "Status.IsLogging: false"),
    }
    assert found - expected == set(), "reported but fine"
    assert expected - found == set(), "missed"
