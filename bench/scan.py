"""Benchmark one full compliancebot scan against a seeded moto server, over real HTTP.

    python bench/scan.py --scale N [--rule ID ...] [--workers W] [--port P] [--database URL]
                         [--json]

What happens:

1. A moto server is started on 127.0.0.1 (by default in a subprocess, so that this process's
   peak RSS is the scanner's alone; `--moto in-process` runs moto's ThreadedMotoServer here).
2. A spawned child process seeds N resources of every kind the scanner collects, with a thread
   pool (a few kinds are capped: see CAPS). Seeding happens in a child so that boto3 clients
   and seeding garbage never count towards the scanner's memory.
3. This process runs one full scan through the product's own code path (`bot.scanning.run_scan`
   with an `AwsCollector`) and times only that call.
4. It prints what it measured: wall time, resources, API calls (total, per service, per
   operation), HTTP requests, findings, scan errors, peak RSS and a duplicate-call check.

This is a measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.parsers import ResponseParserError

from bot.logging import configure as configure_logging
from bot.scanning import recheck, run_scan
from ledger import db
from rules.catalog import Catalog, load_catalog
from scanners.aws.collector import (
    AwsCollector,
    AwsTarget,
    CollectorOptions,
    aws_session,
    default_model_cache,
)
from scanners.model import Collection

REGION = "us-east-1"
AZS = (f"{REGION}a", f"{REGION}b")
# Kinds seeded fewer than N times, and why. Printed with every run.
CAPS: dict[str, tuple[int, str]] = {
    "vpcs": (5, "the default AWS quota is 5 VPCs per region"),
    "cloudtrail_trails": (3, "the AWS quota is 5 trails per region"),
    "load_balancers": (200, "each ALB also needs a listener; 200 keeps seeding quick"),
    "ec2_images": (1, "one registered AMI backs every instance"),
}
INSTANCE_BATCH = 100  # run_instances MinCount=MaxCount per call
PUBLIC_EVERY = 100  # every 100th EBS / RDS snapshot is shared with everyone
SAMPLE_ERRORS = 5
# Calls that may legitimately repeat with identical parameters (polled until ready).
POLLED = {("iam", "GenerateCredentialReport")}


# ---- environment and the moto server ------------------------------------------------------------


def configure_environment(endpoint: str) -> None:
    """Point every boto3 client of this process (and its children) at the local moto server."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "AWS_PROFILE"):
        os.environ.pop(var, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - moto accepts anything
        AWS_DEFAULT_REGION=REGION,
        MOTO_EC2_LOAD_DEFAULT_AMIS="false",
        # moto counts automated snapshots (one per DB instance) against a default quota of
        # 1,000 DB snapshots; lift it so N instances and N manual snapshots both fit.
        MOTO_RDS_SNAPSHOT_LIMIT="1000000",
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_CONFIG_FILE=os.devnull,
        AWS_ENDPOINT_URL=endpoint,
        NO_PROXY="127.0.0.1,localhost",
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answering(
    endpoint: str, timeout: float, proc: subprocess.Popen[bytes] | None
) -> None:
    """Poll the server until it answers HTTP (any status), or fail after `timeout` seconds."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"moto server exited early with status {proc.returncode}")
        try:
            with opener.open(f"{endpoint}/moto-api/", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # an HTTP error status is still an answer
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto server at {endpoint} did not answer") from None
            time.sleep(0.1)


def peak_rss_of(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of another live process in MB, if Linux tells us."""
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def cpu_seconds_of(pid: int) -> float | None:
    """User + system CPU seconds another live process has used, from /proc/PID/stat."""
    with suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)"; utime, stime: 14, 15
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class MotoServer:
    """Where the moto server listens, and (subprocess mode) how to measure it."""

    endpoint: str
    mode: str
    pid: int | None = None

    def peak_rss_mb(self) -> float | None:
        """The server subprocess's peak RSS; None when moto runs in this process."""
        return peak_rss_of(self.pid) if self.pid else None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server subprocess has used so far."""
        return cpu_seconds_of(self.pid) if self.pid else None


@contextmanager
def moto_server(port: int, mode: str, log_path: Path) -> Iterator[MotoServer]:
    """Run a moto server on 127.0.0.1:`port` for the duration of the block; always stop it."""
    endpoint = f"http://127.0.0.1:{port}"
    configure_environment(endpoint)  # before the server starts: it reads MOTO_* at import
    if mode == "in-process":
        # Imported only here: in subprocess mode moto must not weigh on this process's RSS.
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            wait_until_answering(endpoint, timeout=30, proc=None)
            yield MotoServer(endpoint=endpoint, mode=mode)
        finally:
            server.stop()
        return
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_until_answering(endpoint, timeout=60, proc=proc)
            yield MotoServer(endpoint=endpoint, mode=mode, pid=proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---- seeding (runs in a spawned child process) ---------------------------------------------------


@dataclass
class KindReport:
    """How seeding one kind of resource went."""

    kind: str
    requested: int
    created: int = 0
    failed: int = 0
    seconds: float = 0.0
    first_error: str | None = None
    cap: str | None = None


@dataclass
class SeedReport:
    """Everything the seeding child hands back."""

    seconds: float
    kinds: list[KindReport] = field(default_factory=list)


def _again_on_server_error(make: Callable[[int], Any], i: int, attempts: int = 3) -> Any:
    """make(i), retried when an overloaded moto answers an HTML 500 botocore cannot parse."""
    for attempt in range(1, attempts + 1):
        try:
            return make(i)
        except ResponseParserError:
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)
    return None


def _policy(statement: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


class Seeder:
    """Creates N resources of every kind, fanning single creations out to a thread pool."""

    def __init__(self, endpoint: str, scale: int, workers: int) -> None:
        self.scale = scale
        config = Config(
            retries={"mode": "standard", "max_attempts": 10},
            max_pool_connections=workers + 8,
            read_timeout=120,
        )
        session = boto3.Session(region_name=REGION)
        names = ("ec2", "s3", "iam", "rds", "dynamodb", "kms", "cloudtrail", "elbv2")
        self.c: dict[str, Any] = {
            n: session.client(n, region_name=REGION, endpoint_url=endpoint, config=config)
            for n in names
        }
        self.items = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seed")

    # Each kind: a prologue (sequential set-up), then `count` creations run on the pool.

    def fan_out(
        self, report: KindReport, make: Callable[[int], Any], sizes: list[int] | None = None
    ) -> None:
        """Run make(i) on the pool for each job; tally resources and keep the first failure.

        Job i creates sizes[i] resources (default: one job per requested resource).
        """
        sizes = sizes if sizes is not None else [1] * report.requested
        futures: list[Future[Any]] = [
            self.items.submit(_again_on_server_error, make, i) for i in range(len(sizes))
        ]
        for size, fut in zip(sizes, futures, strict=True):
            exc = fut.exception()
            if exc is None:
                report.created += size
            else:
                report.failed += size
                report.first_error = report.first_error or f"{type(exc).__name__}: {exc}"

    def seed_security_groups(self, report: KindReport) -> None:
        """Security groups in the default VPC; every other one open to 0.0.0.0/0."""
        ec2 = self.c["ec2"]
        ports = (22, 3389, 443, 5432)

        def make(i: int) -> None:
            group = ec2.create_security_group(GroupName=f"bench-sg-{i:05d}", Description="bench")[
                "GroupId"
            ]
            port = ports[(i // 2) % len(ports)]
            cidr = "0.0.0.0/0" if i % 2 == 0 else "10.0.0.0/8"
            ec2.authorize_security_group_ingress(
                GroupId=group,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": port,
                        "ToPort": port,
                        "IpRanges": [{"CidrIp": cidr}],
                    }
                ],
            )

        self.fan_out(report, make)

    def seed_volumes(self, report: KindReport) -> None:
        """EBS volumes, half of them unencrypted."""
        ec2 = self.c["ec2"]

        def make(i: int) -> None:
            ec2.create_volume(
                AvailabilityZone=AZS[i % 2],
                Size=1,
                Encrypted=i % 2 == 0,
                TagSpecifications=[
                    {
                        "ResourceType": "volume",
                        "Tags": [{"Key": "Name", "Value": f"bench-vol-{i:05d}"}],
                    }
                ],
            )

        self.fan_out(report, make)

    def seed_snapshots(self, report: KindReport) -> None:
        """EBS snapshots of one extra volume; every PUBLIC_EVERY-th one shared publicly."""
        ec2 = self.c["ec2"]
        source = ec2.create_volume(AvailabilityZone=AZS[0], Size=1)["VolumeId"]

        def make(i: int) -> None:
            snap = ec2.create_snapshot(VolumeId=source, Description=f"bench {i}")["SnapshotId"]
            if i % PUBLIC_EVERY == 0:
                ec2.modify_snapshot_attribute(
                    SnapshotId=snap,
                    Attribute="createVolumePermission",
                    OperationType="add",
                    GroupNames=["all"],
                )

        self.fan_out(report, make)

    def seed_buckets(self, report: KindReport) -> None:
        """S3 buckets with a mix of encryption, versioning, public access block, policy, ACLs."""
        s3 = self.c["s3"]
        s3.create_bucket(Bucket="bench-access-logs")
        s3.put_bucket_acl(Bucket="bench-access-logs", ACL="log-delivery-write")

        def make(i: int) -> None:
            name = f"bench-bucket-{i:05d}"
            s3.create_bucket(Bucket=name)
            if i % 4 == 0:
                s3.put_bucket_encryption(
                    Bucket=name,
                    ServerSideEncryptionConfiguration={
                        "Rules": [
                            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}
                        ]
                    },
                )
            if i % 3 == 0:
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            if i % 5 == 0:
                s3.put_public_access_block(
                    Bucket=name,
                    PublicAccessBlockConfiguration={
                        "BlockPublicAcls": True,
                        "IgnorePublicAcls": True,
                        "BlockPublicPolicy": True,
                        "RestrictPublicBuckets": True,
                    },
                )
            if i % 7 == 0:
                public = i % 14 == 0
                s3.put_bucket_policy(
                    Bucket=name,
                    Policy=_policy(
                        {
                            "Effect": "Allow" if public else "Deny",
                            "Principal": "*",
                            "Action": "s3:GetObject",
                            "Resource": f"arn:aws:s3:::{name}/*",
                            **(
                                {}
                                if public
                                else {"Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                            ),
                        }
                    ),
                )
            if i % 11 == 0:
                s3.put_bucket_logging(
                    Bucket=name,
                    BucketLoggingStatus={
                        "LoggingEnabled": {
                            "TargetBucket": "bench-access-logs",
                            "TargetPrefix": f"{name}/",
                        }
                    },
                )
            if i % 13 == 0:
                s3.put_bucket_acl(Bucket=name, ACL="public-read")

        self.fan_out(report, make)

    def seed_users(self, report: KindReport) -> None:
        """IAM users: some with access keys, login profiles, inline or attached policies."""
        iam = self.c["iam"]
        iam.update_account_password_policy(MinimumPasswordLength=14, RequireNumbers=True)
        shared = iam.create_policy(
            PolicyName="bench-shared-readonly",
            PolicyDocument=_policy({"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}),
        )["Policy"]["Arn"]

        def make(i: int) -> None:
            user = f"bench-user-{i:05d}"
            iam.create_user(UserName=user)
            if i % 3 == 0:
                iam.create_access_key(UserName=user)
            if i % 4 == 0:
                iam.create_login_profile(UserName=user, Password=f"Bench-pw-{i:05d}!")
            if i % 6 == 0:
                iam.attach_user_policy(UserName=user, PolicyArn=shared)
            if i % 10 == 0:
                iam.put_user_policy(
                    UserName=user,
                    PolicyName="inline",
                    PolicyDocument=_policy(
                        {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}
                    ),
                )

        self.fan_out(report, make)

    def seed_policies(self, report: KindReport) -> None:
        """Customer managed policies; every tenth one grants *:*."""
        iam = self.c["iam"]

        def make(i: int) -> None:
            action = "*" if i % 10 == 0 else "s3:ListBucket"
            iam.create_policy(
                PolicyName=f"bench-policy-{i:05d}",
                PolicyDocument=_policy({"Effect": "Allow", "Action": action, "Resource": "*"}),
            )

        self.fan_out(report, make)

    def seed_rds_instances(self, report: KindReport) -> None:
        """RDS instances with mixed encryption, exposure, backups and multi-AZ."""
        rds = self.c["rds"]

        def make(i: int) -> None:
            rds.create_db_instance(
                DBInstanceIdentifier=f"bench-db-{i:05d}",
                DBInstanceClass="db.t3.micro",
                Engine="postgres",
                AllocatedStorage=20,
                MasterUsername="app",
                MasterUserPassword="bench-password-1",
                StorageEncrypted=i % 2 == 0,
                PubliclyAccessible=i % 10 == 0,
                BackupRetentionPeriod=7 if i % 3 else 0,
                MultiAZ=i % 4 == 0,
                DeletionProtection=i % 5 == 0,
            )

        self.fan_out(report, make)

    def seed_rds_clusters(self, report: KindReport) -> None:
        """Aurora PostgreSQL clusters with mixed encryption, backups, protection and IAM auth."""
        rds = self.c["rds"]

        def make(i: int) -> None:
            rds.create_db_cluster(
                DBClusterIdentifier=f"bench-cluster-{i:05d}",
                Engine="aurora-postgresql",
                MasterUsername="app",
                MasterUserPassword="bench-password-1",
                StorageEncrypted=i % 2 == 0,
                BackupRetentionPeriod=7 if i % 3 else 1,
                DeletionProtection=i % 5 == 0,
                EnableIAMDatabaseAuthentication=i % 4 == 0,
            )

        self.fan_out(report, make)

    def seed_rds_snapshots(self, report: KindReport) -> None:
        """Manual snapshots of one extra instance; every PUBLIC_EVERY-th one restorable by all."""
        rds = self.c["rds"]
        rds.create_db_instance(
            DBInstanceIdentifier="bench-snapshot-source",
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            AllocatedStorage=20,
            MasterUsername="app",
            MasterUserPassword="bench-password-1",
        )

        def make(i: int) -> None:
            name = f"bench-dbsnap-{i:05d}"
            rds.create_db_snapshot(
                DBInstanceIdentifier="bench-snapshot-source", DBSnapshotIdentifier=name
            )
            if i % PUBLIC_EVERY == 0:
                rds.modify_db_snapshot_attribute(
                    DBSnapshotIdentifier=name, AttributeName="restore", ValuesToAdd=["all"]
                )

        self.fan_out(report, make)

    def seed_tables(self, report: KindReport) -> None:
        """DynamoDB tables; half with point-in-time recovery."""
        ddb = self.c["dynamodb"]

        def make(i: int) -> None:
            name = f"bench-table-{i:05d}"
            ddb.create_table(
                TableName=name,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            )
            if i % 2 == 0:
                ddb.update_continuous_backups(
                    TableName=name,
                    PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
                )

        self.fan_out(report, make)

    def seed_kms_keys(self, report: KindReport) -> None:
        """Customer KMS keys; half with rotation on."""
        kms = self.c["kms"]

        def make(i: int) -> None:
            key = kms.create_key(Description=f"bench key {i}")["KeyMetadata"]["KeyId"]
            if i % 2 == 0:
                kms.enable_key_rotation(KeyId=key)

        self.fan_out(report, make)

    def seed_instances(self, report: KindReport) -> None:
        """EC2 instances from one registered AMI, INSTANCE_BATCH per run_instances call."""
        ec2 = self.c["ec2"]
        image = ec2.register_image(Name="bench-ami", RootDeviceName="/dev/xvda")["ImageId"]
        starts = range(0, self.scale, INSTANCE_BATCH)
        batches = [min(INSTANCE_BATCH, self.scale - s) for s in starts]

        def make(b: int) -> None:
            tokens = "required" if b % 2 == 0 else "optional"
            ec2.run_instances(
                ImageId=image,
                InstanceType="t3.micro",
                MinCount=batches[b],
                MaxCount=batches[b],
                MetadataOptions={"HttpTokens": tokens},
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [{"Key": "Name", "Value": f"bench-batch-{b:03d}"}],
                    }
                ],
            )

        self.fan_out(report, make, sizes=batches)

    def seed_vpcs(self, report: KindReport) -> None:
        """A handful of VPCs (quota-capped); the first two with S3 flow logs."""
        ec2 = self.c["ec2"]
        self.c["s3"].create_bucket(Bucket="bench-flow-logs")

        def make(i: int) -> None:
            vpc = ec2.create_vpc(CidrBlock=f"10.{10 + i}.0.0/16")["Vpc"]["VpcId"]
            if i < 2:
                ec2.create_flow_logs(
                    ResourceIds=[vpc],
                    ResourceType="VPC",
                    TrafficType="ALL",
                    LogDestinationType="s3",
                    LogDestination="arn:aws:s3:::bench-flow-logs",
                )

        self.fan_out(report, make)

    def seed_load_balancers(self, report: KindReport) -> None:
        """ALBs (capped) in one extra VPC, each with a plain-HTTP fixed-response listener."""
        ec2, elb = self.c["ec2"], self.c["elbv2"]
        vpc = ec2.create_vpc(CidrBlock="10.200.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.200.{n}.0/24", AvailabilityZone=az)[
                "Subnet"
            ]["SubnetId"]
            for n, az in enumerate(AZS)
        ]

        def make(i: int) -> None:
            arn = elb.create_load_balancer(
                Name=f"bench-lb-{i:05d}",
                Subnets=subnets,
                Type="application",
                Scheme="internet-facing" if i % 2 == 0 else "internal",
            )["LoadBalancers"][0]["LoadBalancerArn"]
            elb.create_listener(
                LoadBalancerArn=arn,
                Protocol="HTTP",
                Port=80,
                DefaultActions=[
                    {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}
                ],
            )

        self.fan_out(report, make)

    def seed_trails(self, report: KindReport) -> None:
        """A few CloudTrail trails into one bucket; all but the last one logging."""
        trail_api = self.c["cloudtrail"]
        self.c["s3"].create_bucket(Bucket="bench-cloudtrail")

        def make(i: int) -> None:
            name = f"bench-trail-{i}"
            trail_api.create_trail(
                Name=name,
                S3BucketName="bench-cloudtrail",
                IsMultiRegionTrail=i == 0,
                EnableLogFileValidation=i % 2 == 0,
            )
            if i < report.requested - 1:
                trail_api.start_logging(Name=name)

        self.fan_out(report, make)


# (kind, seeder method, key in CAPS or None)
KINDS: tuple[tuple[str, str, str | None], ...] = (
    ("ec2_instances", "seed_instances", None),
    ("security_groups", "seed_security_groups", None),
    ("ebs_volumes", "seed_volumes", None),
    ("ebs_snapshots", "seed_snapshots", None),
    ("s3_buckets", "seed_buckets", None),
    ("iam_users", "seed_users", None),
    ("iam_policies", "seed_policies", None),
    ("rds_instances", "seed_rds_instances", None),
    ("rds_clusters", "seed_rds_clusters", None),
    ("rds_snapshots", "seed_rds_snapshots", None),
    ("dynamodb_tables", "seed_tables", None),
    ("kms_keys", "seed_kms_keys", None),
    ("vpcs", "seed_vpcs", "vpcs"),
    ("load_balancers", "seed_load_balancers", "load_balancers"),
    ("cloudtrail_trails", "seed_trails", "cloudtrail_trails"),
)


def seed(endpoint: str, scale: int, workers: int) -> SeedReport:
    """Seed every kind concurrently (each kind's items on a shared pool); never raises."""
    configure_environment(endpoint)
    start = time.perf_counter()
    seeder = Seeder(endpoint, scale, workers)
    reports: list[KindReport] = []
    for kind, _method, cap_key in KINDS:
        report = KindReport(kind=kind, requested=scale)
        if cap_key is not None:
            cap, why = CAPS[cap_key]
            if scale > cap:
                report.requested, report.cap = cap, f"capped at {cap}: {why}"
        reports.append(report)

    def run_kind(method: str, report: KindReport) -> None:
        began = time.perf_counter()
        try:
            getattr(seeder, method)(report)
        except Exception as exc:  # noqa: BLE001 - a broken prologue is reported, not fatal
            report.first_error = report.first_error or f"{type(exc).__name__}: {exc}"
        report.seconds = time.perf_counter() - began

    # One thread per kind runs its prologue and waits; the item pool does the creating.
    with ThreadPoolExecutor(max_workers=len(KINDS), thread_name_prefix="kind") as kinds:
        for (_kind, method, _cap), report in zip(KINDS, reports, strict=True):
            kinds.submit(run_kind, method, report)
    seeder.items.shutdown(wait=True)
    return SeedReport(seconds=time.perf_counter() - start, kinds=reports)


def seed_in_child(endpoint: str, scale: int, workers: int) -> SeedReport:
    """Seed from a spawned process so its memory never shows in this process's peak RSS."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(seed, endpoint, scale, workers).result()


# ---- the scan ------------------------------------------------------------------------------------


class CallRecorder:
    """Records every logical API call (service, operation, parameters) a session's clients make.

    Hooked on `before-parameter-build`, which fires once per logical call (each page of a
    listing is its own call) with the caller's parameters; `before-call` would hand over the
    serialized request instead. `response-received` (once per HTTP attempt, failed ones too)
    adds the time since the call began, so the totals include retries and their back-off.
    """

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str, str]] = Counter()
        self.seconds: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, model: Any = None, params: Any = None, context: Any = None, **_: Any) -> None:
        """botocore `before-parameter-build` handler."""
        service, op = model.service_model.service_name, model.name
        key = (service, op, json.dumps(params, sort_keys=True, default=str))
        if context is not None:
            context["bench_call"] = (f"{service}.{op}", time.perf_counter())
        with self._lock:
            self.calls[key] += 1

    def attempt_done(self, context: Any = None, **_: Any) -> None:
        """botocore `response-received` handler: charge the elapsed time to the operation."""
        if not context or "bench_call" not in context:
            return
        name, since = context["bench_call"]
        now = time.perf_counter()
        context["bench_call"] = (name, now)
        with self._lock:
            self.seconds[name] += now - since

    def session_factory(self, _target: Any) -> boto3.Session:
        """The collector's default session (trimmed service models), reporting to us."""
        session = aws_session(model_cache=default_model_cache())
        session.events.register("before-parameter-build", self.record)
        session.events.register("response-received", self.attempt_done)
        return session

    def per_operation(self) -> Counter[str]:
        """Logical calls per service.Operation."""
        out: Counter[str] = Counter()
        for (service, op, _), n in self.calls.items():
            out[f"{service}.{op}"] += n
        return out

    def duplicates(self) -> tuple[int, int, list[tuple[str, int]]]:
        """(unexpected repeats, polled repeats, worst offenders) among identical calls."""
        unexpected = polled = 0
        worst: list[tuple[str, int]] = []
        for (service, op, params), n in self.calls.items():
            if n < 2:
                continue
            if (service, op) in POLLED:
                polled += n - 1
                continue
            unexpected += n - 1
            worst.append((f"{service}.{op} {params[:120]}", n))
        worst.sort(key=lambda item: -item[1])
        return unexpected, polled, worst[:SAMPLE_ERRORS]


def max_rss_mb() -> float:
    """This process's peak RSS so far, in MB (ru_maxrss is KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_benchmark_scan(
    server: MotoServer, workers: int, database: str, rule_ids: list[str] | None = None
) -> dict[str, Any]:
    """Run one scan through bot.scanning.run_scan and return what was measured."""
    configure_logging("warning")
    recorder = CallRecorder()
    slept: list[float] = []
    timing: dict[str, float] = {}

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    class TimedCollector(AwsCollector):
        """The product's collector, timing its own share of the scan.

        `collect_thread_cpu` is the CPU of the calling thread only: the collector's
        dispatch loop (waiting on futures) and its final derive step, not the workers.
        """

        def collect(self, **kwargs: Any) -> Collection:
            began, cpu_began = time.perf_counter(), time.thread_time()
            try:
                return super().collect(**kwargs)
            finally:
                timing["collect"] = time.perf_counter() - began
                timing["collect_thread_cpu"] = time.thread_time() - cpu_began

    engine = db.make_engine(database)
    try:
        db.upgrade(engine)
        sessions = db.session_factory(engine)
        catalog = load_catalog()
        collector = TimedCollector(
            targets=[AwsTarget(name="bench", regions=(REGION,), endpoint_url=server.endpoint)],
            options=CollectorOptions(max_workers=workers),
            session_factory=recorder.session_factory,
            sleep=sleep,
        )
        # Trimmed service models kept from an earlier run: without them the scan reads each
        # whole model once (see CollectorOptions.model_cache).
        cache = default_model_cache()
        models_cached = cache.is_dir() and any(cache.glob("*.json"))
        rss_before = max_rss_mb()
        cpu_before, moto_cpu_before = own_cpu_seconds(), server.cpu_seconds()
        began = time.perf_counter()
        outcome = run_scan(
            catalog=catalog,
            collector=collector,
            sessions=sessions,
            trigger="bench",
            rule_ids=rule_ids,
        )
        wall = time.perf_counter() - began
        cpu = own_cpu_seconds() - cpu_before
        moto_cpu_after = server.cpu_seconds()
        rss_peak = max_rss_mb()
    finally:
        engine.dispose()

    col = outcome.collection
    rechecks = measure_rechecks(catalog, server, col)
    api_calls = sum(col.api_calls.values())
    http = sum(col.http_requests.values())
    unexpected, polled, worst = recorder.duplicates()
    by_type = Counter(r.type for r in col.resources)
    return {
        "scan_wall_s": round(wall, 3),
        "collect_s": round(timing.get("collect", 0.0), 3),
        "collect_main_thread_cpu_s": round(timing.get("collect_thread_cpu", 0.0), 2),
        "evaluate_and_ledger_s": round(wall - timing.get("collect", 0.0), 3),
        "slept_s": round(sum(slept), 3),
        "scan_cpu_s": round(cpu, 2),
        "moto_cpu_s": (
            round(moto_cpu_after - moto_cpu_before, 2)
            if moto_cpu_after is not None and moto_cpu_before is not None
            else None
        ),
        "api_calls_per_s": round(sum(col.api_calls.values()) / wall, 1),
        "resources": len(col.resources),
        "resources_by_type": dict(sorted(by_type.items())),
        "api_calls": api_calls,
        "api_calls_by_service": dict(col.api_calls.most_common()),
        "api_calls_by_operation": dict(recorder.per_operation().most_common()),
        "api_calls_recorded": sum(recorder.calls.values()),
        "call_seconds_by_operation": {
            op: round(sec, 3) for op, sec in recorder.seconds.most_common()
        },
        "scan_row_api_calls": outcome.scan.api_calls,
        "http_requests": http,
        "http_requests_by_host_label": dict(col.http_requests.most_common()),
        "retries": http - api_calls,
        "api_calls_per_resource": round(api_calls / max(1, len(col.resources)), 3),
        "findings_new": outcome.counts.new,
        "findings_failing": sum(outcome.counts.by_severity.values()),
        "findings_failing_by_severity": outcome.counts.by_severity,
        "scan_errors": len(col.errors),
        "scan_errors_sample": [
            f"{e.service}.{e.operation} [{e.region}] {e.code}: {e.message}"
            for e in col.errors[:SAMPLE_ERRORS]
        ],
        "duplicate_calls": unexpected,
        "duplicate_calls_polled": polled,
        "duplicate_calls_sample": [f"{n}x {what}" for what, n in worst],
        "recheck_api_calls": rechecks,
        "rss_before_scan_mb": round(rss_before, 1),
        "service_models_cached": models_cached,
        "peak_rss_mb": round(rss_peak, 1),
    }


# One rule per collected type (a Slack Resolve or a closed ticket re-checks one resource).
RECHECK_RULES = (
    "ec2_sg_ssh_open_to_world",
    "ec2_instance_imdsv2_required",
    "ec2_volume_encrypted",
    "ec2_snapshot_public",
    "s3_bucket_public_policy",
    "iam_user_console_without_mfa",
    "iam_policy_full_admin_attached",
    "rds_instance_storage_encrypted",
    "rds_cluster_storage_encrypted",
    "rds_snapshot_public",
    "dynamodb_pitr_enabled",
    "kms_key_rotation_enabled",
    "cloudtrail_trail_multi_region",
    "elbv2_listener_https_only",
)


def measure_rechecks(catalog: Catalog, server: MotoServer, col: Collection) -> dict[str, int]:
    """API calls to re-check one resource (the first collected) for each RECHECK_RULES rule."""
    collector = AwsCollector(
        targets=[AwsTarget(name="bench", regions=(REGION,), endpoint_url=server.endpoint)],
        sleep=lambda _s: None,
    )
    out: dict[str, int] = {}
    for rule_id in RECHECK_RULES:
        rule = catalog.rules.get(rule_id)
        if rule is None:
            continue
        sample = next((r for r in col.resources if r.type == rule.resource_type), None)
        if sample is None:
            continue
        outcome = recheck(
            catalog=catalog,
            collector=collector,
            rule_id=rule_id,
            account=sample.account,
            region=sample.region,
            resource_id=sample.id,
        )
        out[f"{rule_id} ({outcome.verdict})"] = outcome.api_calls
    return out


# ---- reporting -----------------------------------------------------------------------------------


def print_report(result: dict[str, Any]) -> None:
    """The human-readable summary."""
    seed_info = result["seeding"]
    print(
        f"compliancebot scan benchmark: N={result['scale']}, workers={result['workers']}, "
        f"moto={result['moto_mode']}, database={result['database_kind']}, "
        f"rules={'full catalog' if result['rules'] == 'all' else ','.join(result['rules'])}"
    )
    print(f"\nseeding: {seed_info['seconds']:.1f} s (in a child process)")
    for k in seed_info["kinds"]:
        line = f"  {k['kind']:<18} {k['created']:>6} created in {k['seconds']:6.1f} s"
        if k["failed"]:
            line += f", {k['failed']} FAILED (first: {k['first_error']})"
        elif k["first_error"]:
            line += f", ERROR: {k['first_error']}"
        if k["cap"]:
            line += f"  [{k['cap']}]"
        print(line)
    print(
        f"\nscan wall time:      {result['scan_wall_s']:.2f} s"
        f" (collect {result['collect_s']:.2f} s, of which {result['slept_s']:.1f} s sleeping"
        f" on the credential report; evaluate + ledger {result['evaluate_and_ledger_s']:.2f} s)"
    )
    moto_cpu = result["moto_cpu_s"]
    print(
        f"CPU during the scan: {result['scan_cpu_s']:.1f} s in this process"
        + (f", {moto_cpu:.1f} s in the moto server" if moto_cpu is not None else "")
        + f" ({os.cpu_count()} CPUs); {result['api_calls_per_s']:.0f} API calls/s"
    )
    print(
        f"  of which the collector's dispatching thread (wait loop + derive): "
        f"{result['collect_main_thread_cpu_s']:.1f} s"
    )
    print(f"resources collected: {result['resources']}")
    for rtype, n in result["resources_by_type"].items():
        print(f"  {rtype:<26} {n:>6}")
    print(
        f"API calls (logical): {result['api_calls']}"
        f" ({result['api_calls_per_resource']:.2f} per resource;"
        f" recorder saw {result['api_calls_recorded']}, scan row says"
        f" {result['scan_row_api_calls']})"
    )
    for service, n in result["api_calls_by_service"].items():
        print(f"  {service:<12} {n:>7}")
    print("  by operation:")
    for op, n in result["api_calls_by_operation"].items():
        print(f"    {op:<40} {n:>7}")
    print("  slowest operations (summed call time incl. retries and back-off, across threads):")
    for op, sec in list(result["call_seconds_by_operation"].items())[:8]:
        print(f"    {op:<40} {sec:>9.2f} s")
    print(
        f"HTTP requests:       {result['http_requests']} ({result['retries']} retries)"
        f" by host label {result['http_requests_by_host_label']}"
    )
    print(
        f"findings:            {result['findings_new']} new,"
        f" {result['findings_failing']} failing {result['findings_failing_by_severity']}"
    )
    print(f"scan errors:         {result['scan_errors']}")
    for line in result["scan_errors_sample"]:
        print(f"  {line}")
    print(
        f"duplicate calls:     {result['duplicate_calls']} identical repeats"
        f" (+{result['duplicate_calls_polled']} polled GenerateCredentialReport)"
    )
    for line in result["duplicate_calls_sample"]:
        print(f"  {line}")
    rechecks = result["recheck_api_calls"]
    if rechecks:
        print(
            f"re-check of one resource: at most {max(rechecks.values())} API calls"
            " (sts.GetCallerIdentity included)"
        )
        for what, n in rechecks.items():
            print(f"  {what:<52} {n:>3}")
    moto_rss = result["moto_peak_rss_mb"]
    print(
        f"peak RSS:            {result['peak_rss_mb']:.1f} MB for this process"
        f" ({result['rss_before_scan_mb']:.1f} MB before the scan"
        + (", moto included" if result["moto_mode"] == "in-process" else "")
        + ")"
        + (f"; moto server peak {moto_rss:.1f} MB" if moto_rss else "")
    )
    print(
        "service models:      "
        + (
            "trimmed, read from the cache"
            if result["service_models_cached"]
            else "trimmed on first read (cold cache: the next run peaks lower)"
        )
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--scale", type=int, required=True, help="N: resources of each kind to seed"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=16,
        help="collector max_workers (default 16, the product default)",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="moto server port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument(
        "--database",
        default=None,
        help="ledger URL (default: a SQLite file in a temporary directory)",
    )
    parser.add_argument(
        "--moto",
        choices=("subprocess", "in-process"),
        default="subprocess",
        help="run moto in a subprocess (default: RSS is the scanner's alone) "
        "or in this process (ThreadedMotoServer)",
    )
    parser.add_argument(
        "--seed-workers",
        type=int,
        default=16,
        help="threads creating resources while seeding (default 16)",
    )
    parser.add_argument(
        "--rule",
        action="append",
        default=None,
        metavar="RULE_ID",
        help="scan only this rule (repeatable; default: the full catalog)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="also print every number as one JSON object on the last line",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start moto, seed, scan once, report."""
    args = parse_args(argv)
    port = args.port or free_port()
    with tempfile.TemporaryDirectory(prefix="compliancebot-bench-") as tmp:
        database = args.database or f"sqlite:///{Path(tmp) / 'ledger.db'}"
        log_path = Path(tmp) / "moto.log"
        try:
            with moto_server(port, args.moto, log_path) as server:
                print(
                    f"moto server ({server.mode}) at {server.endpoint}; seeding N={args.scale}",
                    file=sys.stderr,
                )
                seeding = seed_in_child(server.endpoint, args.scale, args.seed_workers)
                print(f"seeded in {seeding.seconds:.1f} s; scanning", file=sys.stderr)
                measured = run_benchmark_scan(server, args.workers, database, args.rule)
                moto_rss = server.peak_rss_mb()
        except BaseException:
            if log_path.exists():
                tail = log_path.read_text(errors="replace").splitlines()[-20:]
                print("moto server log (tail):\n" + "\n".join(tail), file=sys.stderr)
            raise
    result: dict[str, Any] = {
        "scale": args.scale,
        "workers": args.workers,
        "rules": args.rule or "all",
        "moto_mode": args.moto,
        "database_kind": database.split(":", 1)[0],
        "seeding": asdict(seeding),
        **measured,
        "moto_peak_rss_mb": moto_rss,
    }
    print_report(result)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
