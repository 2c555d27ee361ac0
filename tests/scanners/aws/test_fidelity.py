"""Fidelity on a seeded moto account: the hard cases peers catch, each asserted exactly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from bot.scanning import recheck
from rules.catalog import load_catalog
from rules.checks import statement_is_public
from rules.conditions import EvalContext
from rules.engine import Verdict, evaluate_all
from scanners.aws import specs
from scanners.aws.collector import AwsCollector, AwsTarget
from scanners.model import Collection

CATALOG = load_catalog()
ACCOUNT = "123456789012"
NOW = datetime(2026, 12, 3, tzinfo=UTC)
BLOCK_ALL = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


@pytest.fixture
def world() -> Iterator[None]:
    """A fresh moto account."""
    from moto import mock_aws

    with mock_aws():
        yield


def _collector(**kwargs: Any) -> AwsCollector:
    return AwsCollector(
        targets=[AwsTarget(name="test", account_id=ACCOUNT, regions=("us-east-1",))],
        sleep=kwargs.pop("sleep", lambda _s: None),
        **kwargs,
    )


def _failing(rule_ids: list[str], collector: AwsCollector | None = None) -> set[tuple[str, str]]:
    rules = [CATALOG.rules[r] for r in rule_ids]
    collection = (collector or _collector()).collect(needs=CATALOG.needs(rules))
    assert not collection.errors, collection.errors
    results = evaluate_all(rules, collection.resources, EvalContext(now=NOW))
    return {(r.resource.id, r.rule.id) for r in results if r.verdict is Verdict.failed}


def _bucket(name: str, statement: dict[str, Any] | None = None) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=name)
    if statement is not None:
        resource = {"Resource": f"arn:aws:s3:::{name}/*", "Action": "s3:GetObject"}
        policy = {"Version": "2012-10-17", "Statement": [{**resource, **statement}]}
        s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))


# ---- A. public bucket policies ------------------------------------------------------------------


def _seed_policies() -> None:
    everyone = {"Effect": "Allow", "Principal": "*"}
    _bucket("private")
    _bucket("world", everyone)
    _bucket("referer", {**everyone, "Condition": {"StringLike": {"aws:Referer": "https://a/*"}}})
    _bucket("tls", {**everyone, "Condition": {"Bool": {"aws:SecureTransport": "true"}}})
    _bucket("any-ip", {**everyone, "Condition": {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}})
    _bucket("office", {**everyone, "Condition": {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}})
    _bucket("vpce", {**everyone, "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1a2b"}}})
    _bucket("org", {**everyone, "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}})
    _bucket(
        "not-account",
        {**everyone, "Condition": {"StringNotEquals": {"aws:SourceAccount": ACCOUNT}}},
    )
    _bucket("bucket-blocked", everyone)
    boto3.client("s3", region_name="us-east-1").put_public_access_block(
        Bucket="bucket-blocked", PublicAccessBlockConfiguration=BLOCK_ALL
    )


@pytest.mark.usefixtures("world")
def test_public_policy_uses_aws_restricting_conditions() -> None:
    """Public buckets are reported unless AWS-restricting conditions or Block Public Access."""
    _seed_policies()
    assert _failing(["s3_bucket_public_policy"]) == {
        ("world", "s3_bucket_public_policy"),
        ("referer", "s3_bucket_public_policy"),
        ("tls", "s3_bucket_public_policy"),
        ("any-ip", "s3_bucket_public_policy"),
        ("not-account", "s3_bucket_public_policy"),
    }


@pytest.mark.usefixtures("world")
def test_account_block_public_access_mitigates_every_public_policy() -> None:
    """With RestrictPublicBuckets on for the account, no bucket policy is reported public."""
    _seed_policies()
    boto3.client("s3control", region_name="us-east-1").put_public_access_block(
        AccountId=ACCOUNT, PublicAccessBlockConfiguration=BLOCK_ALL
    )
    assert _failing(["s3_bucket_public_policy"]) == set()


@pytest.mark.parametrize(
    ("condition", "public"),
    [
        ({"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}, False),
        ({"IpAddress": {"aws:SourceIp": "::/0"}}, True),
        ({"IpAddress": {"aws:SourceIp": "0.0.0.0/1"}}, True),
        ({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}, False),
        ({"IpAddress": {"aws:SourceIp": "not-an-ip"}}, True),
        ({"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, True),
        ({"StringEquals": {"aws:SourceVpc": "vpc-1"}}, False),
        ({"StringEquals": {"aws:SourceAccount": "210987654321"}}, False),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:topic"}}, False),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:*:*"}}, True),
        ({"StringEquals": {"aws:PrincipalAccount": "210987654321"}}, False),
        ({"StringEquals": {"aws:PrincipalOrgID": "${aws:PrincipalOrgID}"}}, True),
        ({"stringequals": {"AWS:SOURCEVPCE": "vpce-1"}}, False),
        ({"ForAnyValue:StringEquals": {"aws:SourceVpce": ["vpce-1"]}}, False),
        ({"ForAllValues:StringEquals": {"aws:SourceVpce": ["vpce-1"]}}, True),
        ({"StringEqualsIfExists": {"aws:SourceVpce": "vpce-1"}}, True),
        ({"StringEquals": {"s3:DataAccessPointAccount": "123456789012"}}, False),
        ({"StringEquals": {"aws:UserAgent": "curl"}}, True),
        ({"StringEquals": {"aws:SourceVpce": []}}, True),
        ({}, True),
        ("garbage", True),
    ],
)
def test_statement_public_semantics(condition: Any, public: bool) -> None:
    """A condition narrows a wildcard grant only with a fixed value of a restricting key."""
    statement = {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Condition": condition}
    assert statement_is_public(statement) is public


def test_statement_public_principals() -> None:
    """Named principals and Deny statements are not public; NotPrincipal with Allow is."""
    assert statement_is_public({"Effect": "Allow", "Principal": "*"})
    assert statement_is_public({"Effect": "Allow", "NotPrincipal": {"AWS": ["arn:x"]}})
    assert not statement_is_public({"Effect": "Deny", "Principal": "*"})
    assert not statement_is_public(
        {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::1:root"]}}
    )
    assert not statement_is_public({"Effect": "Allow", "Principal": {"Service": ["*"]}})
    assert not statement_is_public(["not", "a", "statement"])


# ---- B. per-trail multi-region ------------------------------------------------------------------


@pytest.mark.usefixtures("world")
def test_single_region_trail_is_its_own_finding() -> None:
    """A single-region trail is its own finding, beside the account-level logging rule."""
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="trail-logs")
    cloudtrail = boto3.client("cloudtrail", region_name="us-east-1")
    home = cloudtrail.create_trail(Name="home-only", S3BucketName="trail-logs")["TrailARN"]
    cloudtrail.create_trail(Name="everywhere", S3BucketName="trail-logs", IsMultiRegionTrail=True)
    rules = ["cloudtrail_trail_multi_region", "cloudtrail_multi_region_enabled"]
    assert _failing(rules) == {
        (home, "cloudtrail_trail_multi_region"),
        (ACCOUNT, "cloudtrail_multi_region_enabled"),  # nothing is logging yet
    }
    cloudtrail.start_logging(Name="everywhere")
    assert _failing(rules) == {(home, "cloudtrail_trail_multi_region")}


# ---- C. DB clusters -----------------------------------------------------------------------------


@pytest.mark.usefixtures("world")
def test_unencrypted_aurora_cluster_is_reported() -> None:
    """An unencrypted Aurora cluster is a finding on the cluster, not on its member."""
    rds = boto3.client("rds", region_name="us-east-1")
    common = {"MasterUsername": "app", "MasterUserPassword": "correct-horse-battery"}
    rds.create_db_cluster(
        DBClusterIdentifier="plain",
        Engine="aurora-postgresql",
        StorageEncrypted=False,
        BackupRetentionPeriod=1,
        **common,
    )
    rds.create_db_cluster(
        DBClusterIdentifier="good",
        Engine="aurora-postgresql",
        StorageEncrypted=True,
        BackupRetentionPeriod=7,
        DeletionProtection=True,
        EnableIAMDatabaseAuthentication=True,
        **common,
    )
    rds.create_db_instance(
        DBInstanceIdentifier="plain-1",
        DBInstanceClass="db.r6g.large",
        Engine="aurora-postgresql",
        DBClusterIdentifier="plain",
    )
    rds.create_db_instance(
        DBInstanceIdentifier="standalone",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        AllocatedStorage=20,
        StorageEncrypted=False,
        **common,
    )
    rules = [
        "rds_cluster_storage_encrypted",
        "rds_cluster_backup_retention",
        "rds_cluster_deletion_protection",
        "rds_cluster_iam_authentication",
        "rds_instance_storage_encrypted",
    ]
    assert _failing(rules) == {
        ("plain", "rds_cluster_storage_encrypted"),
        ("plain", "rds_cluster_backup_retention"),
        ("plain", "rds_cluster_deletion_protection"),
        ("plain", "rds_cluster_iam_authentication"),
        ("standalone", "rds_instance_storage_encrypted"),
    }


# ---- D. cost ------------------------------------------------------------------------------------


def _with_bucket_region(target: AwsTarget) -> boto3.Session:
    """A session whose ListBuckets answers carry BucketRegion, as AWS's do (moto's do not)."""
    session = boto3.Session()

    def add_region(parsed: dict[str, Any], **_: Any) -> None:
        for bucket in parsed.get("Buckets", []):
            bucket.setdefault("BucketRegion", "us-east-1")

    session.events.register("after-call.s3.ListBuckets", add_region)
    return session


def _bucket_calls(collector: AwsCollector) -> Collection:
    rule = CATALOG.rules["s3_bucket_versioning_enabled"]
    collection = collector.collect(needs=CATALOG.needs([rule]))
    assert not collection.errors, collection.errors
    return collection


@pytest.mark.usefixtures("world")
def test_bucket_region_from_listing_saves_a_call_per_bucket() -> None:
    """ListBuckets' BucketRegion saves GetBucketLocation per bucket; without it, it falls back."""
    for name in ("a-bucket", "b-bucket", "c-bucket"):
        _bucket(name)
    given = _bucket_calls(_collector(session_factory=_with_bucket_region))
    fallback = _bucket_calls(_collector())
    # list_buckets + get_bucket_versioning x3; without the region, one more list_buckets per
    # scanned region (filtered by BucketRegion) instead of get_bucket_location per bucket
    assert given.api_calls["s3"] == 4
    assert fallback.api_calls["s3"] == 5
    for collection in (given, fallback):
        assert {(r.id, r.region) for r in collection.resources} == {
            ("a-bucket", "us-east-1"),
            ("b-bucket", "us-east-1"),
            ("c-bucket", "us-east-1"),
        }


@pytest.mark.usefixtures("world")
def test_credential_report_polled_with_short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """A report not yet ready is polled after 0.25 s, doubling to a 4 s cap, never 2 s flat."""
    states = iter(["STARTED"] * 7 + ["COMPLETE"])
    waits: list[float] = []

    def fake_call(self: Any, service: str, operation: str, **params: Any) -> dict[str, Any]:
        if operation == "generate_credential_report":
            state = next(states)
            if state == "COMPLETE":  # moto answers STARTED once: make the report exist
                original_call(self, service, operation, **params)
            return {"State": state}
        return original_call(self, service, operation, **params)

    from scanners.aws import collector as collector_module

    original_call = collector_module.CallContext.call
    monkeypatch.setattr(collector_module.CallContext, "call", fake_call)
    boto3.client("iam").create_user(UserName="alice")
    rule = CATALOG.rules["iam_user_console_without_mfa"]
    collection = _collector(sleep=waits.append).collect(needs=CATALOG.needs([rule]))
    assert not collection.errors, collection.errors
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


# ---- E. targeted re-check -----------------------------------------------------------------------


def _recheck(rule_id: str, resource_id: str, region: str = "us-east-1") -> tuple[str, int]:
    outcome = recheck(
        catalog=CATALOG,
        collector=_collector(),
        rule_id=rule_id,
        account=ACCOUNT,
        region=region,
        resource_id=resource_id,
        clock=lambda: NOW,
    )
    return outcome.verdict, outcome.api_calls


@pytest.mark.usefixtures("world")
def test_recheck_fetches_only_the_resource() -> None:
    """Re-checking one resource costs at most 5 API calls; a deleted one passes as gone."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    groups = [
        ec2.create_security_group(GroupName=f"g{i}", Description="x")["GroupId"] for i in range(6)
    ]
    ec2.authorize_security_group_ingress(
        GroupId=groups[0], IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="0.0.0.0/0"
    )
    for i in range(6):
        _bucket(f"bucket-{i}", {"Effect": "Allow", "Principal": "*"} if i == 0 else None)
    iam = boto3.client("iam")
    for i in range(6):
        iam.create_user(UserName=f"user-{i}")
    rds = boto3.client("rds", region_name="us-east-1")
    for i in range(3):
        rds.create_db_cluster(
            DBClusterIdentifier=f"c{i}",
            Engine="aurora-postgresql",
            MasterUsername="app",
            MasterUserPassword="correct-horse-battery",
            StorageEncrypted=i != 0,
        )

    cases = {
        ("ec2_sg_ssh_open_to_world", groups[0]): "fail",
        ("ec2_sg_ssh_open_to_world", groups[1]): "pass",
        ("s3_bucket_public_policy", "bucket-0"): "fail",
        ("s3_bucket_public_policy", "bucket-1"): "pass",
        ("iam_user_direct_policies", "user-0"): "pass",  # IAM: the "global" pseudo-region
        ("rds_cluster_storage_encrypted", "c0"): "fail",
        ("rds_cluster_storage_encrypted", "c1"): "pass",
    }
    for (rule_id, resource_id), expected in cases.items():
        region = "global" if rule_id.startswith("iam_") else "us-east-1"
        verdict, calls = _recheck(rule_id, resource_id, region)
        assert (rule_id, resource_id, verdict) == (rule_id, resource_id, expected)
        assert calls <= 5, (rule_id, calls)

    ec2.delete_security_group(GroupId=groups[1])
    assert _recheck("ec2_sg_ssh_open_to_world", groups[1])[0] == "pass"
    assert _recheck("rds_cluster_storage_encrypted", "no-such-cluster")[0] == "pass"
    boto3.client("s3", region_name="us-east-1").delete_bucket(Bucket="bucket-1")
    assert _recheck("s3_bucket_public_policy", "bucket-1")[0] == "pass"
    assert _recheck("iam_user_direct_policies", "nobody", "global")[0] == "pass"


def test_every_listed_type_can_be_fetched_by_id_or_is_synthetic() -> None:
    """Every resource type a finding can name is re-checked by id, not by a full listing."""
    listed = [s for s in specs.SPECS if s.scope in ("regional", "global")]
    assert [s.type for s in listed if s.by_id is None] == []
