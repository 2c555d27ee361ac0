"""What a scan costs in API calls against moto: account-wide IAM, buckets placed per region."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.loaders import Loader

from bot.scanning import recheck
from rules.catalog import load_catalog
from rules.conditions import EvalContext
from rules.engine import Verdict, evaluate_all
from scanners.aws.collector import (
    AwsCollector,
    AwsTarget,
    CallContext,
    CollectorOptions,
    _pruned_loader,
    aws_session,
    endpoint_keys,
    operations_called,
)
from scanners.aws.spec import Enrich
from scanners.aws.specs import SPECS_BY_TYPE
from scanners.model import Collection, Resource

CATALOG = load_catalog()
ACCOUNT = "123456789012"
NOW = datetime(2026, 12, 3, tzinfo=UTC)
ADMIN_ARN = "arn:aws:iam::aws:policy/AdministratorAccess"
# Calls per user (or per policy) that an account-wide listing makes unnecessary.
PER_ENTITY = {
    "iam.ListAttachedUserPolicies",
    "iam.ListUserPolicies",
    "iam.ListMFADevices",
    "iam.GetLoginProfile",
    "iam.ListAccessKeys",
    "iam.ListGroupsForUser",
    "iam.GetPolicyVersion",
    "iam.GetUser",
    "iam.GetPolicy",
    "s3.GetBucketLocation",
}


@pytest.fixture
def world() -> Iterator[None]:
    """A fresh moto account, with AWS's managed policies (AdministratorAccess) to attach."""
    from moto import mock_aws

    with mock_aws(config={"iam": {"load_aws_managed_policies": True}}):
        yield


class Calls:
    """Logical API calls per `service.Operation`, seen on the sessions the collector opens."""

    def __init__(self, tamper: Callable[[boto3.Session], None] | None = None) -> None:
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._tamper = tamper

    def _record(self, model: Any = None, **_: Any) -> None:
        with self._lock:
            self.seen[f"{model.service_model.service_name}.{model.name}"] += 1

    def session(self, _target: AwsTarget) -> boto3.Session:
        session = boto3.Session()
        session.events.register("before-parameter-build", self._record)
        if self._tamper is not None:
            self._tamper(session)
        return session

    def service(self, name: str) -> Counter[str]:
        return Counter({op: n for op, n in self.seen.items() if op.startswith(f"{name}.")})


def _collector(calls: Calls, regions: tuple[str, ...] = ("us-east-1",)) -> AwsCollector:
    return AwsCollector(
        targets=[AwsTarget(name="test", account_id=ACCOUNT, regions=regions)],
        session_factory=calls.session,
        sleep=lambda _s: None,
    )


def _full_scan(calls: Calls, regions: tuple[str, ...] = ("us-east-1",)) -> Collection:
    """Every enabled rule's data, as `scan` collects it."""
    collection = _collector(calls, regions).collect(needs=CATALOG.needs(CATALOG.rules.values()))
    assert not collection.errors, collection.errors
    return collection


def _failing(collection: Collection, resource_type: str) -> set[tuple[str, str]]:
    rules = [r for r in CATALOG.rules.values() if r.resource_type == resource_type]
    results = evaluate_all(rules, collection.resources, EvalContext(now=NOW))
    return {(r.resource.id, r.rule.id) for r in results if r.verdict is Verdict.failed}


def _doc(action: str) -> str:
    statement = {"Effect": "Allow", "Action": action, "Resource": "*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _seed_iam(users: int, first: int = 0) -> None:
    """`users` users: one in three with AdministratorAccess, one in three with an inline policy."""
    iam = boto3.client("iam")
    for i in range(first, first + users):
        name = f"user-{i:03d}"
        iam.create_user(UserName=name)
        if i % 3 == 0:
            iam.attach_user_policy(UserName=name, PolicyArn=ADMIN_ARN)
        if i % 3 == 1:
            iam.put_user_policy(UserName=name, PolicyName="inline", PolicyDocument=_doc("s3:*"))
        iam.create_access_key(UserName=name)


@pytest.mark.usefixtures("world")
def test_iam_calls_do_not_grow_with_users_or_policies() -> None:
    """Three users or thirty cost the same IAM calls: nothing is asked user by user."""
    _seed_iam(3)
    few = Calls()
    _full_scan(few)
    _seed_iam(27, first=3)
    iam = boto3.client("iam")
    for i in range(20):
        iam.create_policy(PolicyName=f"extra-{i}", PolicyDocument=_doc("ec2:Describe*"))
    many = Calls()
    collection = _full_scan(many)

    assert sum(1 for r in collection.resources if r.type == "aws.iam.user") == 30
    assert sum(1 for r in collection.resources if r.type == "aws.iam.policy") == 20
    # GenerateCredentialReport is polled until the report is ready, however many users.
    polled = "iam.GenerateCredentialReport"
    assert {op: n for op, n in many.service("iam").items() if op != polled} == {
        op: n for op, n in few.service("iam").items() if op != polled
    }
    assert many.seen["iam.GetAccountAuthorizationDetails"] == 2  # users, then policies
    assert not PER_ENTITY & set(many.seen), many.seen
    # Every other operation is a listing or an account setting: well under one per resource.
    assert sum(many.service("iam").values()) <= 8


@pytest.mark.usefixtures("world")
def test_account_wide_iam_listing_keeps_every_verdict() -> None:
    """Admin-attached and inline-policy users fail as before; the default version is judged."""
    _seed_iam(3)
    iam = boto3.client("iam")
    # Admin in v1 only: the default (v2) is narrow, so the policy passes.
    was_admin = iam.create_policy(PolicyName="was-admin", PolicyDocument=_doc("*"))["Policy"]
    iam.create_policy_version(
        PolicyArn=was_admin["Arn"], PolicyDocument=_doc("s3:GetObject"), SetAsDefault=True
    )
    # Narrow in v1, admin in the default v2: fails.
    now_admin = iam.create_policy(PolicyName="now-admin", PolicyDocument=_doc("s3:*"))["Policy"]
    iam.create_policy_version(
        PolicyArn=now_admin["Arn"], PolicyDocument=_doc("*"), SetAsDefault=True
    )
    for arn in (was_admin["Arn"], now_admin["Arn"]):
        iam.attach_user_policy(UserName="user-002", PolicyArn=arn)

    collection = _full_scan(Calls())

    users = {r.id: r for r in collection.resources if r.type == "aws.iam.user"}
    assert users["user-000"].data["AttachedPolicies"] == [
        {"PolicyName": "AdministratorAccess", "PolicyArn": ADMIN_ARN}
    ]
    assert users["user-001"].data["InlinePolicies"] == ["inline"]
    assert "UserPolicyList" not in users["user-001"].data  # inline documents are not kept
    assert _failing(collection, "aws.iam.user") >= {
        ("user-000", "iam_user_admin_policy_attached"),
        ("user-000", "iam_user_direct_policies"),
        ("user-001", "iam_user_direct_policies"),
        ("user-002", "iam_user_direct_policies"),
    }
    assert ("user-002", "iam_user_admin_policy_attached") not in _failing(
        collection, "aws.iam.user"
    )
    policies = {r.name: r for r in collection.resources if r.type == "aws.iam.policy"}
    assert "PolicyVersionList" not in policies["now-admin"].data
    assert _failing(collection, "aws.iam.policy") == {
        (now_admin["Arn"], "iam_policy_full_admin_attached")
    }


@pytest.mark.usefixtures("world")
def test_recheck_of_one_user_still_asks_for_that_user_only() -> None:
    """A Resolve on one user costs a few calls, whatever the number of users."""
    _seed_iam(12)
    calls = Calls()
    for user, expected in (("user-001", "fail"), ("user-002", "pass"), ("gone", "pass")):
        outcome = recheck(
            catalog=CATALOG,
            collector=_collector(calls),
            rule_id="iam_user_direct_policies",
            account=ACCOUNT,
            region="global",
            resource_id=user,
            clock=lambda: NOW,
        )
        assert (user, outcome.verdict) == (user, expected)
        assert outcome.api_calls <= 5
    assert "iam.GetAccountAuthorizationDetails" not in calls.seen


def _forge_details(session: boto3.Session) -> None:
    """Answers an attacker-controlled or broken endpoint could give: wrong types, junk text."""

    def forge(parsed: dict[str, Any], model: Any = None, **_: Any) -> None:
        if model is None or model.name != "GetAccountAuthorizationDetails":
            return
        for user in parsed.get("UserDetailList", []):
            user["AttachedManagedPolicies"] = ["not-a-mapping", {"PolicyArn": ADMIN_ARN}, 7]
            user["UserPolicyList"] = {"PolicyName": "not-a-list"}
        for policy in parsed.get("Policies", []):
            policy["PolicyVersionList"] = [
                "junk",
                {"IsDefaultVersion": "true", "Document": _doc("*")},  # a string is not True
                {"IsDefaultVersion": True, "Document": "{not json" * 10_000},
            ]

    # Last on the service's event: after botocore's own handler has decoded the documents.
    session.events.register_last("after-call.iam", forge)


@pytest.mark.usefixtures("world")
def test_malformed_account_details_never_crash_a_scan() -> None:
    """Junk in the account-wide IAM answer is dropped or leaves the key unknown, scan goes on."""
    _seed_iam(1)
    iam = boto3.client("iam")
    iam.create_policy(PolicyName="p", PolicyDocument=_doc("*"))
    calls = Calls(tamper=_forge_details)
    collection = _collector(calls).collect(needs=CATALOG.needs(CATALOG.rules.values()))

    user = next(r for r in collection.resources if r.type == "aws.iam.user")
    assert user.data["AttachedPolicies"] == [{"PolicyName": None, "PolicyArn": ADMIN_ARN}]
    assert user.data["InlinePolicies"] == []
    policy = next(r for r in collection.resources if r.type == "aws.iam.policy")
    # No readable default version in the listing: GetPolicyVersion is asked instead.
    assert calls.seen["iam.GetPolicyVersion"] == 1
    assert policy.data["Document"]["Statement"][0]["Action"] == ["*"]
    assert not collection.errors


@pytest.mark.usefixtures("world")
def test_buckets_are_placed_by_a_listing_per_region_not_a_call_per_bucket() -> None:
    """Buckets land in their regions at one ListBuckets per scanned region, not per bucket."""
    for i in range(8):
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=f"east-{i}")
    for i in range(4):
        boto3.client("s3", region_name="eu-west-1").create_bucket(
            Bucket=f"west-{i}", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
    calls = Calls()
    collection = _full_scan(calls, regions=("us-east-1", "eu-west-1"))

    placed = {(r.id, r.region) for r in collection.resources if r.type == "aws.s3.bucket"}
    assert placed == {(f"east-{i}", "us-east-1") for i in range(8)} | {
        (f"west-{i}", "eu-west-1") for i in range(4)
    }
    assert calls.seen["s3.ListBuckets"] == 3  # all, then one per scanned region
    assert calls.seen["s3.GetBucketLocation"] == 0

    # Scanning only us-east-1: the eu-west-1 buckets are asked where they are, and left out.
    only_east = Calls()
    collection = _full_scan(only_east)
    assert {r.id for r in collection.resources if r.type == "aws.s3.bucket"} == {
        f"east-{i}" for i in range(8)
    }
    assert only_east.seen["s3.GetBucketLocation"] == 4


# ---- what a scan keeps in memory ---------------------------------------------------------------


def test_every_endpoint_key_matches_the_installed_models() -> None:
    """Each called service's endpoint entry survives trimming (botocore upgrades included)."""
    loader = Loader()
    called = operations_called()
    for service in called:
        prefix = loader.load_service_model(service, "service-2")["metadata"]["endpointPrefix"]
        assert prefix in endpoint_keys([service]), service


@pytest.mark.usefixtures("world")
def test_clients_load_only_the_operations_a_scan_calls(tmp_path: Path) -> None:
    """A scan's EC2 client knows ten-odd operations, not 800; the trimmed models are cached."""
    session = aws_session(model_cache=tmp_path)
    ec2 = session.client("ec2", region_name="us-east-1")
    assert set(ec2.meta.service_model.operation_names) <= {
        "DescribeInstances",
        "DescribeSecurityGroups",
        "DescribeVolumes",
        "DescribeSnapshots",
        "DescribeSnapshotAttribute",
        "DescribeImages",
        "DescribeVpcs",
        "DescribeFlowLogs",
        "GetEbsEncryptionByDefault",
        "DescribeRegions",
    }
    assert not hasattr(ec2, "run_instances")
    cached = sorted(p.name.split("-")[0] for p in tmp_path.glob("*.json"))
    assert "ec2" in cached
    assert "endpoints" in cached
    # A scan through trimmed models finds what one through whole models finds.
    boto3.client("ec2", region_name="us-east-1").create_security_group(
        GroupName="g", Description="x"
    )
    trimmed = AwsCollector(
        targets=[AwsTarget(name="t", account_id=ACCOUNT)],
        options=CollectorOptions(model_cache=tmp_path),
        sleep=lambda _s: None,
    ).collect(needs=CATALOG.needs(CATALOG.rules.values()))
    whole = _full_scan(Calls())
    assert not trimmed.errors
    assert sorted((r.type, r.id) for r in trimmed.resources) == sorted(
        (r.type, r.id) for r in whole.resources
    )


@pytest.mark.usefixtures("world")
def test_a_tampered_or_truncated_model_cache_is_read_again(tmp_path: Path) -> None:
    """Junk in the model cache is ignored and replaced: clients still work."""
    aws_session(model_cache=tmp_path).client("sts", region_name="us-east-1")
    for path in tmp_path.glob("*.json"):
        path.write_text('{"metadata": "x", "operations": [' * 1000, encoding="utf-8")
    _pruned_loader.cache_clear()  # a new process: nothing read yet
    sts = aws_session(model_cache=tmp_path).client("sts", region_name="us-east-1")
    assert sts.get_caller_identity()["Account"] == ACCOUNT
    for path in tmp_path.glob("*.json"):
        assert json.loads(path.read_text(encoding="utf-8"))  # written again, whole


@pytest.mark.usefixtures("world")
def test_an_operation_left_out_of_the_models_is_a_scan_error_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A custom enricher calling an undeclared operation fails that key; the scan goes on."""
    region = SPECS_BY_TYPE["aws.region"]

    def undeclared(ctx: CallContext, _res: Resource) -> Any:
        return ctx.call("ec2", "describe_addresses")

    broken = dataclasses.replace(
        region, enrich=(*region.enrich, Enrich("Addresses", service="ec2", custom=undeclared))
    )
    monkeypatch.setitem(SPECS_BY_TYPE, "aws.region", broken)  # the collector's, too
    collection = AwsCollector(
        targets=[AwsTarget(name="t", account_id=ACCOUNT)],
        options=CollectorOptions(model_cache=tmp_path),
        sleep=lambda _s: None,
    ).collect(needs={"aws.region": {"Addresses", "EbsEncryptionByDefault"}})
    (res,) = collection.resources
    assert "Addresses" in res.unknown
    assert res.data["EbsEncryptionByDefault"] is False
    assert [(e.operation, e.code) for e in collection.errors] == [
        ("describe_addresses", "OperationNotLoaded")
    ]


@pytest.mark.usefixtures("world")
def test_resources_keep_only_the_keys_rules_read() -> None:
    """An instance's data holds what the selected rules read, not the whole answer."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image = ec2.describe_images()["Images"]
    ami = image[0]["ImageId"] if image else "ami-12c6146b"
    ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)
    rule = CATALOG.rules["ec2_instance_imdsv2_required"]
    collection = _collector(Calls()).collect(needs=CATALOG.needs([rule]))
    (instance,) = [r for r in collection.resources if r.type == "aws.ec2.instance"]
    assert set(instance.data) <= rule.keys()
    assert "MetadataOptions" in instance.data
    results = evaluate_all([rule], collection.resources, EvalContext(now=NOW))
    assert [r.verdict for r in results] == [Verdict.failed]


def test_sessions_share_one_loader_that_does_not_grow(tmp_path: Path) -> None:
    """A server opening a session per account per scan keeps one loader of constant size."""
    aws_session(model_cache=tmp_path)
    loader = _pruned_loader(None, tmp_path)
    paths = list(loader.search_paths)
    for _ in range(50):
        aws_session(model_cache=tmp_path)
    assert loader.search_paths == paths


@pytest.mark.usefixtures("world")
def test_an_unreadable_answer_leaves_its_key_unknown_not_the_scan_dead() -> None:
    """A bucket policy that is not JSON is a scan error on that bucket; the others are judged."""
    s3 = boto3.client("s3", region_name="us-east-1")
    policy = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}
    for name in ("broken", "fine"):
        s3.create_bucket(Bucket=name)
        statement = {**policy, "Resource": f"arn:aws:s3:::{name}/*"}
        s3.put_bucket_policy(
            Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        )

    def garble(session: boto3.Session) -> None:
        def forge(parsed: dict[str, Any], **_: Any) -> None:
            if "arn:aws:s3:::broken/*" in str(parsed.get("Policy", "")):
                parsed["Policy"] = '{"Statement": ' + "[" * 100_000  # too deep to read

        session.events.register("after-call.s3.GetBucketPolicy", forge)

    rule = CATALOG.rules["s3_bucket_public_policy"]
    collection = _collector(Calls(tamper=garble)).collect(needs=CATALOG.needs([rule]))
    buckets = {r.id: r for r in collection.resources if r.type == "aws.s3.bucket"}
    assert "Policy" in buckets["broken"].unknown
    assert "Policy" not in buckets["fine"].unknown
    assert [(e.operation, e.code, e.resource_id) for e in collection.errors] == [
        ("get_bucket_policy", "MalformedAnswer", "broken")
    ]
    results = evaluate_all([rule], collection.resources, EvalContext(now=NOW))
    failed = {r.resource.id for r in results if r.verdict is Verdict.failed}
    assert failed == {"fine"}
