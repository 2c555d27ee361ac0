"""`compliancebot demo`: a simulated AWS account (moto, in process), scanned into the ledger.

A newcomer sees the product work without credentials: findings, the posture per framework,
then a fix and a rescan that resolves what was fixed.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from rich.console import Console

from bot import output
from bot.logging import configure as configure_logging
from bot.scanning import run_scan, utcnow
from ledger import db
from ledger.queries import list_findings, posture
from rules.errors import CompliancebotError
from scanners.aws.collector import AwsCollector, AwsTarget, CollectorOptions

if TYPE_CHECKING:
    from bot.cli import Context

REGION = "us-east-1"
_DEMO_ENV = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",  # moto accepts anything
    "AWS_DEFAULT_REGION": REGION,
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_CONFIG_FILE": os.devnull,
}


def _clients() -> dict[str, Any]:
    import boto3

    names = ("iam", "ec2", "s3", "rds", "dynamodb", "kms", "cloudtrail", "guardduty")
    return {n: boto3.client(n, region_name=REGION) for n in names}


def world_ingress(port: int) -> list[dict[str, Any]]:
    """IpPermissions opening one TCP port to the whole internet."""
    return [
        {
            "IpProtocol": "tcp",
            "FromPort": port,
            "ToPort": port,
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
        }
    ]


def _open_group(ec2: Any, name: str, port: int) -> str:
    group = str(ec2.create_security_group(GroupName=name, Description=name)["GroupId"])
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=world_ingress(port))
    return group


def seed(c: dict[str, Any]) -> dict[str, str]:
    """A small company's account: mostly sensible, with the usual mistakes. Returns handles."""
    iam, ec2, s3 = c["iam"], c["ec2"], c["s3"]
    iam.update_account_password_policy(MinimumPasswordLength=8, RequireNumbers=True)
    for user in ("alice", "bob", "ci-deploy"):
        iam.create_user(UserName=user)
    iam.create_login_profile(UserName="bob", Password="Sup3r-secret-pw!")  # noqa: S106 - fake
    iam.create_access_key(UserName="ci-deploy")
    iam.attach_user_policy(
        UserName="ci-deploy", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"
    )
    admin = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
    )
    arn = iam.create_policy(PolicyName="break-glass", PolicyDocument=admin)["Policy"]["Arn"]
    iam.create_group(GroupName="ops")
    iam.attach_group_policy(GroupName="ops", PolicyArn=arn)

    _open_group(ec2, "web", 443)
    ssh = _open_group(ec2, "legacy-admin", 22)
    _open_group(ec2, "reporting-db", 5432)
    ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=50, Encrypted=True)
    plain = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=20)["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=plain, Description="nightly")["SnapshotId"]
    ec2.modify_snapshot_attribute(
        SnapshotId=snap, Attribute="createVolumePermission", OperationType="add", GroupNames=["all"]
    )

    s3.create_bucket(Bucket="acme-audit-logs")
    s3.put_bucket_encryption(
        Bucket="acme-audit-logs",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
        },
    )
    s3.put_bucket_versioning(
        Bucket="acme-audit-logs", VersioningConfiguration={"Status": "Enabled"}
    )
    s3.put_public_access_block(
        Bucket="acme-audit-logs",
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.create_bucket(Bucket="acme-marketing-assets")
    s3.put_bucket_acl(Bucket="acme-marketing-assets", ACL="public-read")

    c["rds"].create_db_instance(
        DBInstanceIdentifier="patients-db",
        DBInstanceClass="db.t3.medium",
        Engine="postgres",
        MasterUsername="app",
        MasterUserPassword="not-a-real-pw1",
        AllocatedStorage=100,
        StorageEncrypted=True,
        BackupRetentionPeriod=14,
        MultiAZ=True,
        DeletionProtection=True,
    )
    c["rds"].create_db_instance(
        DBInstanceIdentifier="analytics-scratch",
        DBInstanceClass="db.t3.micro",
        Engine="mysql",
        MasterUsername="app",
        MasterUserPassword="not-a-real-pw2",
        AllocatedStorage=20,
        PubliclyAccessible=True,
        BackupRetentionPeriod=0,
    )
    c["dynamodb"].create_table(
        TableName="sessions",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    key = c["kms"].create_key(Description="app data")["KeyMetadata"]["KeyId"]
    c["cloudtrail"].create_trail(
        Name="org-trail", S3BucketName="acme-audit-logs", IsMultiRegionTrail=True
    )
    c["cloudtrail"].start_logging(Name="org-trail")
    c["guardduty"].create_detector(Enable=True)
    return {
        "ssh_group": ssh,
        "public_bucket": "acme-marketing-assets",
        "kms_key": key,
        "plain_volume": plain,
    }


def remediate(c: dict[str, Any], handles: dict[str, str]) -> list[str]:
    """What an engineer fixes between the two scans."""
    c["ec2"].revoke_security_group_ingress(
        GroupId=handles["ssh_group"], IpPermissions=world_ingress(22)
    )
    c["s3"].put_bucket_acl(Bucket=handles["public_bucket"], ACL="private")
    c["kms"].enable_key_rotation(KeyId=handles["kms_key"])
    return [
        "closed SSH to the world on sg legacy-admin",
        "made acme-marketing-assets private",
        "turned on rotation for the app data KMS key",
    ]


def run_demo(app_ctx: Context, *, out: Console, database: str | None = None) -> None:
    """Seed, scan, show; fix three things, rescan, show what was resolved."""
    try:
        from moto import mock_aws
    except ImportError as exc:
        raise CompliancebotError(
            "the demo needs moto: pip install 'compliancebot[demo]' (make demo does this)"
        ) from exc
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "HTTPS_PROXY", "HTTP_PROXY"):
        os.environ.pop(var, None)
    os.environ.update(_DEMO_ENV)
    settings = app_ctx.settings
    configure_logging("warning", settings.logging.format)  # the demo narrates itself
    engine = db.make_engine(database or settings.database.url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    catalog = app_ctx.catalog
    where = db.shown_url(engine)
    # AWS managed policies (AdministratorAccess) exist only when moto is asked to load them.
    with mock_aws(config={"iam": {"load_aws_managed_policies": True}}):
        clients = _clients()
        handles = seed(clients)
        collector = AwsCollector(
            targets=[AwsTarget(name="demo", regions=(REGION,))],
            options=CollectorOptions(max_workers=settings.aws.max_workers),
            sleep=lambda _s: None,
        )
        out.rule(
            output.styled(
                ("compliancebot demo", "bold"), ": a simulated AWS account (moto, in process)"
            )
        )
        first = run_scan(catalog=catalog, collector=collector, sessions=sessions, trigger="demo")
        with sessions() as session:
            found = list_findings(session=session, catalog=catalog)
            output.findings_table(out, found, title=f"Open findings after scan #{first.scan.id}")
            output.posture_table(out, posture(session=session, catalog=catalog, now=utcnow()))
        out.print(
            f"Scan #{first.scan.id}: {first.scan.resources} resources, "
            f"{first.scan.api_calls} AWS API calls, {first.counts.new} new findings."
        )
        out.rule("An engineer fixes three things, and the next scan notices")
        for fix in remediate(clients, handles):
            out.print(f"  - {fix}")
        second = run_scan(catalog=catalog, collector=collector, sessions=sessions, trigger="demo")
        out.print(
            f"Scan #{second.scan.id}: {second.counts.resolved} findings resolved by the "
            f"scan, {second.counts.new} new, {second.counts.still_failing} still failing."
        )
    out.print(
        f"\nThe findings are in {where}. Try:\n"
        f"  compliancebot findings list --severity critical\n"
        f"  compliancebot findings show 1\n"
        f"  compliancebot status --framework hipaa\n"
        f"  compliancebot findings list --output json"
    )
