"""The AWS resource types compliancebot collects, declared as data.

Each resource's `data` is the listing item as boto3 returns it (reshaped by the spec's `shape`
where an account-wide listing stands in for per-resource calls), plus one key per enricher;
a scan keeps only the keys its rules read. docs/resources.md lists every type and key; rules
read them with JMESPath.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scanners.aws.normalize import bucket_region, normalize_policy, parse_credential_report
from scanners.aws.spec import ById, Derive, Enrich, ResourceSpec
from scanners.model import GLOBAL_REGION

if TYPE_CHECKING:
    from scanners.aws.collector import CallContext
    from scanners.model import Resource

ROOT_USER = "<root_account>"
# The credential report is usually ready within a second: poll soon, then back off, giving up
# after about 30 s in all (0.25 + 0.5 + 1 + 2 + 4 * 6).
CREDENTIAL_REPORT_POLLS = 10
CREDENTIAL_REPORT_FIRST_WAIT = 0.25
CREDENTIAL_REPORT_MAX_WAIT = 4.0
# ListBuckets answers with each bucket's region (BucketRegion) only when the request carries a
# parameter; 10,000 is the largest page (and the default bucket quota), so one call lists all.
LIST_BUCKETS_PAGE = 10_000
CREDENTIAL_REPORT_CALLS = ("generate_credential_report", "get_credential_report")
# GetAccountAuthorizationDetails pages hold 100 entities unless asked; 1,000 is the maximum.
IAM_DETAILS_PAGE = 1_000


def _credential_report(ctx: CallContext) -> dict[str, dict[str, Any]]:
    def load() -> dict[str, dict[str, Any]]:
        wait = CREDENTIAL_REPORT_FIRST_WAIT
        for _ in range(CREDENTIAL_REPORT_POLLS):
            state = ctx.call("iam", "generate_credential_report").get("State")
            if state == "COMPLETE":
                break
            ctx.sleep(wait)
            wait = min(wait * 2, CREDENTIAL_REPORT_MAX_WAIT)
        report = ctx.call("iam", "get_credential_report")
        return parse_credential_report(report["Content"])

    result: dict[str, dict[str, Any]] = ctx.shared(("iam", "credential_report"), load)
    return result


def _user_credentials(ctx: CallContext, res: Resource) -> Any:
    return _credential_report(ctx).get(res.data["UserName"])


def _root_credentials(ctx: CallContext, res: Resource) -> Any:
    return _credential_report(ctx).get(ROOT_USER)


def _guardduty_detectors(ctx: CallContext, res: Resource) -> Any:
    ids = ctx.paginate("guardduty", "list_detectors", "DetectorIds")
    detectors = []
    for detector_id in ids:
        answer = ctx.call("guardduty", "get_detector", DetectorId=detector_id)
        detectors.append({"DetectorId": detector_id, **answer})
    return detectors


def _config_recorders(ctx: CallContext, res: Resource) -> Any:
    recorders = ctx.call("config", "describe_configuration_recorders")["ConfigurationRecorders"]
    if not recorders:
        return []
    statuses = ctx.call("config", "describe_configuration_recorder_status")
    by_name = {s["name"]: s for s in statuses.get("ConfigurationRecordersStatus", [])}
    return [{**r, "status": by_name.get(r["name"], {})} for r in recorders]


def _vpc_flow_logs(ctx: CallContext, res: Resource) -> Any:
    def load() -> list[dict[str, Any]]:
        return ctx.paginate("ec2", "describe_flow_logs", "FlowLogs")

    every: list[dict[str, Any]] = ctx.shared(("ec2", "flow_logs", res.region), load)
    return [fl for fl in every if fl.get("ResourceId") == res.data["VpcId"]]


def _buckets_by_region(ctx: CallContext) -> dict[str, str]:
    """{bucket name: region} for the scanned regions: one filtered ListBuckets per region."""

    def load() -> dict[str, str]:
        placed: dict[str, str] = {}
        for region in ctx.regions:
            names = ctx.paginate(
                "s3",
                "list_buckets",
                "Buckets[].Name",
                region=GLOBAL_REGION,
                BucketRegion=region,
                MaxBuckets=LIST_BUCKETS_PAGE,
            )
            placed.update(dict.fromkeys(names, region))
        return placed

    result: dict[str, str] = ctx.shared(("s3", "buckets_by_region"), load)
    return result


def _bucket_region(ctx: CallContext, res: Resource) -> Any:
    # Given by ListBuckets (called with MaxBuckets) and by HeadBucket. An endpoint that does not
    # say (an older one, an emulator) is asked which buckets are in each scanned region, a call
    # per region instead of a GetBucketLocation per bucket; that one is left for a bucket found
    # in none of them (created since, or the filter ignored).
    if res.data.get("BucketRegion"):
        return res.data["BucketRegion"]
    name = res.data["Name"]
    region = _buckets_by_region(ctx).get(name)
    if region is not None:
        return region
    answer = ctx.call("s3", "get_bucket_location", Bucket=name)
    return bucket_region(answer.get("LocationConstraint"))


def _account_public_access_block(ctx: CallContext, res: Resource) -> Any:
    """The account's S3 Block Public Access, fetched once per account for all its buckets."""

    def load() -> Any:
        answer = ctx.call_optional(
            "s3control",
            "get_public_access_block",
            missing=("NoSuchPublicAccessBlockConfiguration",),
            region=GLOBAL_REGION,
            AccountId=ctx.account_id,
        )
        return None if answer is None else answer.get("PublicAccessBlockConfiguration")

    return ctx.shared(("s3control", "public_access_block"), load)


def _account_trails(trails: list[Resource]) -> list[dict[str, Any]]:
    keys = (
        "Name",
        "TrailARN",
        "HomeRegion",
        "IsMultiRegionTrail",
        "LogFileValidationEnabled",
        "KmsKeyId",
        "IncludeGlobalServiceEvents",
        "S3BucketName",
        "CloudWatchLogsLogGroupArn",
    )
    return [
        {
            **{k: t.data.get(k) for k in keys},
            "IsLogging": (t.data.get("Status") or {}).get("IsLogging"),
        }
        for t in trails
    ]


def _statement_doc(value: Any) -> Any:
    return normalize_policy(value)


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The mappings of a list from an answer; anything else in it (or instead of it) is dropped."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _user_from_details(item: dict[str, Any]) -> dict[str, Any]:
    """A GetAccountAuthorizationDetails user as the per-user calls would have described it.

    `AttachedPolicies` and `InlinePolicies` are what ListAttachedUserPolicies and
    ListUserPolicies return; the inline documents themselves are not kept.
    """
    data = {k: v for k, v in item.items() if k not in ("AttachedManagedPolicies", "UserPolicyList")}
    data["AttachedPolicies"] = [
        {"PolicyName": p.get("PolicyName"), "PolicyArn": p.get("PolicyArn")}
        for p in _dicts(item.get("AttachedManagedPolicies"))
    ]
    data["InlinePolicies"] = [p.get("PolicyName") for p in _dicts(item.get("UserPolicyList"))]
    return data


def _policy_from_details(item: dict[str, Any]) -> dict[str, Any]:
    """A GetAccountAuthorizationDetails policy with its default version as `Document`.

    The other versions are dropped; without a readable default version `Document` is left
    out, and its enricher (GetPolicyVersion) asks for it.
    """
    data = {k: v for k, v in item.items() if k != "PolicyVersionList"}
    if not data.get("PolicyName") and isinstance(data.get("Arn"), str):
        # The name is the ARN's last segment (moto leaves it out of this answer).
        data["PolicyName"] = data["Arn"].rsplit("/", 1)[-1]
    versions = _dicts(item.get("PolicyVersionList"))
    default = next((v for v in versions if v.get("IsDefaultVersion") is True), None)
    if default is not None:
        try:
            document = normalize_policy(default.get("Document"))
        except (ValueError, TypeError, AttributeError, RecursionError):
            document = None
        if document is not None:
            data["Document"] = document
    return data


SPECS: tuple[ResourceSpec, ...] = (
    # ---- account-wide settings ---------------------------------------------------------------
    ResourceSpec(
        type="aws.account",
        service="iam",
        scope="account",
        enrich=(
            Enrich("Summary", "get_account_summary", result="SummaryMap"),
            Enrich(
                "PasswordPolicy",
                "get_account_password_policy",
                result="PasswordPolicy",
                missing=("NoSuchEntity",),
            ),
            Enrich("RootCredentials", custom=_root_credentials, calls=CREDENTIAL_REPORT_CALLS),
            # Shared with the buckets' AccountPublicAccessBlock: one call per account.
            Enrich(
                "S3PublicAccessBlock",
                service="s3control",
                custom=_account_public_access_block,
                calls=("get_public_access_block",),
            ),
        ),
        derive=(
            Derive(
                "Trails",
                source_type="aws.cloudtrail.trail",
                source_keys=("Status",),
                fn=_account_trails,
            ),
        ),
    ),
    ResourceSpec(
        type="aws.region",
        service="ec2",
        scope="region",
        enrich=(
            Enrich(
                "EbsEncryptionByDefault",
                "get_ebs_encryption_by_default",
                result="EbsEncryptionByDefault",
            ),
            Enrich(
                "GuardDutyDetectors",
                service="guardduty",
                custom=_guardduty_detectors,
                calls=("list_detectors", "get_detector"),
            ),
            Enrich(
                "ConfigRecorders",
                service="config",
                custom=_config_recorders,
                calls=(
                    "describe_configuration_recorders",
                    "describe_configuration_recorder_status",
                ),
            ),
        ),
    ),
    # ---- IAM (global) --------------------------------------------------------------------------
    ResourceSpec(
        type="aws.iam.user",
        service="iam",
        scope="global",
        # One account-wide listing carries each user's attached and inline policies: no call per
        # user. A re-check (GetUser) asks for them with the per-user calls below.
        operation="get_account_authorization_details",
        constants={"Filter": ["User"]},
        page_size=IAM_DETAILS_PAGE,
        result="UserDetailList",
        shape=_user_from_details,
        listed=("AttachedPolicies", "InlinePolicies"),
        id="UserName",
        by_id=ById("get_user", "UserName", as_list=False, result="[User]", gone=("NoSuchEntity",)),
        name="UserName",
        enrich=(
            Enrich("Credentials", custom=_user_credentials, calls=CREDENTIAL_REPORT_CALLS),
            Enrich(
                "AttachedPolicies",
                "list_attached_user_policies",
                params={"UserName": "UserName"},
                result="AttachedPolicies",
            ),
            Enrich(
                "InlinePolicies",
                "list_user_policies",
                params={"UserName": "UserName"},
                result="PolicyNames",
            ),
        ),
    ),
    ResourceSpec(
        type="aws.iam.policy",
        service="iam",
        scope="global",
        # Customer managed policies with their versions' documents, in one account-wide listing.
        operation="get_account_authorization_details",
        constants={"Filter": ["LocalManagedPolicy"]},
        page_size=IAM_DETAILS_PAGE,
        result="Policies",
        shape=_policy_from_details,
        listed=("Document",),
        id="Arn",
        by_id=ById(
            "get_policy", "PolicyArn", as_list=False, result="[Policy]", gone=("NoSuchEntity",)
        ),
        name="PolicyName",
        enrich=(
            Enrich(
                "Document",
                "get_policy_version",
                params={"PolicyArn": "Arn", "VersionId": "DefaultVersionId"},
                result="PolicyVersion.Document",
                transform=_statement_doc,
            ),
        ),
    ),
    # ---- EC2 and VPC ---------------------------------------------------------------------------
    ResourceSpec(
        type="aws.ec2.security_group",
        service="ec2",
        scope="regional",
        operation="describe_security_groups",
        result="SecurityGroups",
        id="GroupId",
        by_id=ById("describe_security_groups", "GroupIds", gone=("InvalidGroup.NotFound",)),
        name="GroupName",
    ),
    ResourceSpec(
        type="aws.ec2.instance",
        service="ec2",
        scope="regional",
        operation="describe_instances",
        result="Reservations[].Instances[]",
        id="InstanceId",
        by_id=ById("describe_instances", "InstanceIds", gone=("InvalidInstanceID.NotFound",)),
        name="Tags[?Key=='Name'].Value | [0]",
    ),
    ResourceSpec(
        type="aws.ec2.volume",
        service="ec2",
        scope="regional",
        operation="describe_volumes",
        result="Volumes",
        id="VolumeId",
        by_id=ById("describe_volumes", "VolumeIds", gone=("InvalidVolume.NotFound",)),
        name="Tags[?Key=='Name'].Value | [0]",
    ),
    ResourceSpec(
        type="aws.ec2.snapshot",
        service="ec2",
        scope="regional",
        operation="describe_snapshots",
        constants={"OwnerIds": ["self"]},
        result="Snapshots",
        id="SnapshotId",
        by_id=ById("describe_snapshots", "SnapshotIds", gone=("InvalidSnapshot.NotFound",)),
        enrich=(
            Enrich(
                "CreateVolumePermissions",
                "describe_snapshot_attribute",
                params={"SnapshotId": "SnapshotId"},
                constants={"Attribute": "createVolumePermission"},
                result="CreateVolumePermissions",
            ),
        ),
    ),
    ResourceSpec(
        type="aws.ec2.image",
        service="ec2",
        scope="regional",
        operation="describe_images",
        constants={"Owners": ["self"]},
        result="Images",
        id="ImageId",
        by_id=ById("describe_images", "ImageIds", gone=("InvalidAMIID.NotFound",)),
        name="Name",
    ),
    ResourceSpec(
        type="aws.ec2.vpc",
        service="ec2",
        scope="regional",
        operation="describe_vpcs",
        result="Vpcs",
        id="VpcId",
        by_id=ById("describe_vpcs", "VpcIds", gone=("InvalidVpcID.NotFound",)),
        name="Tags[?Key=='Name'].Value | [0]",
        enrich=(Enrich("FlowLogs", custom=_vpc_flow_logs, calls=("describe_flow_logs",)),),
    ),
    # ---- S3 (listed once per account, each bucket in its own region) ---------------------------
    ResourceSpec(
        type="aws.s3.bucket",
        service="s3",
        scope="global",
        operation="list_buckets",
        constants={"MaxBuckets": LIST_BUCKETS_PAGE},
        result="Buckets",
        id="Name",
        # HeadBucket: the bucket's region in one call, and a 404 when it is gone.
        by_id=ById(
            "head_bucket",
            "Bucket",
            as_list=False,
            result="[{BucketRegion: BucketRegion}]",
            gone=("404", "NotFound", "NoSuchBucket"),
        ),
        name="Name",
        region_key="Region",
        enrich=(
            Enrich(
                "Region",
                custom=_bucket_region,
                calls=("list_buckets", "get_bucket_location"),
            ),
            Enrich(
                "Encryption",
                "get_bucket_encryption",
                params={"Bucket": "Name"},
                result="ServerSideEncryptionConfiguration",
                missing=("ServerSideEncryptionConfigurationNotFoundError",),
            ),
            Enrich(
                "Versioning",
                "get_bucket_versioning",
                params={"Bucket": "Name"},
                result="{Status: Status, MFADelete: MFADelete}",
            ),
            Enrich(
                "Logging", "get_bucket_logging", params={"Bucket": "Name"}, result="LoggingEnabled"
            ),
            Enrich(
                "PublicAccessBlock",
                "get_public_access_block",
                params={"Bucket": "Name"},
                result="PublicAccessBlockConfiguration",
                missing=("NoSuchPublicAccessBlockConfiguration",),
            ),
            Enrich(
                "Policy",
                "get_bucket_policy",
                params={"Bucket": "Name"},
                result="Policy",
                missing=("NoSuchBucketPolicy",),
                transform=_statement_doc,
            ),
            Enrich("Grants", "get_bucket_acl", params={"Bucket": "Name"}, result="Grants"),
            Enrich(
                "AccountPublicAccessBlock",
                service="s3control",
                custom=_account_public_access_block,
                calls=("get_public_access_block",),
            ),
        ),
    ),
    # ---- RDS -----------------------------------------------------------------------------------
    ResourceSpec(
        type="aws.rds.instance",
        service="rds",
        scope="regional",
        operation="describe_db_instances",
        result="DBInstances",
        id="DBInstanceIdentifier",
        by_id=ById(
            "describe_db_instances",
            "DBInstanceIdentifier",
            as_list=False,
            gone=("DBInstanceNotFound",),
        ),
        name="DBInstanceIdentifier",
    ),
    # Aurora, Neptune, DocumentDB and Multi-AZ DB clusters: encryption, backups, deletion
    # protection and IAM authentication are set here, not on their member instances.
    ResourceSpec(
        type="aws.rds.cluster",
        service="rds",
        scope="regional",
        operation="describe_db_clusters",
        result="DBClusters",
        id="DBClusterIdentifier",
        by_id=ById(
            "describe_db_clusters",
            "DBClusterIdentifier",
            as_list=False,
            gone=("DBClusterNotFoundFault",),
        ),
        name="DBClusterIdentifier",
    ),
    ResourceSpec(
        type="aws.rds.snapshot",
        service="rds",
        scope="regional",
        operation="describe_db_snapshots",
        constants={"SnapshotType": "manual"},
        result="DBSnapshots",
        id="DBSnapshotIdentifier",
        by_id=ById(
            "describe_db_snapshots",
            "DBSnapshotIdentifier",
            as_list=False,
            gone=("DBSnapshotNotFound",),
        ),
        name="DBSnapshotIdentifier",
        enrich=(
            Enrich(
                "Attributes",
                "describe_db_snapshot_attributes",
                params={"DBSnapshotIdentifier": "DBSnapshotIdentifier"},
                result="DBSnapshotAttributesResult.DBSnapshotAttributes",
            ),
        ),
    ),
    # ---- DynamoDB ------------------------------------------------------------------------------
    ResourceSpec(
        type="aws.dynamodb.table",
        service="dynamodb",
        scope="regional",
        operation="list_tables",
        result="TableNames",
        id="TableName",
        by_id=ById(),
        name="TableName",
        item_key="TableName",
        enrich=(
            Enrich(
                "ContinuousBackups",
                "describe_continuous_backups",
                params={"TableName": "TableName"},
                result="ContinuousBackupsDescription",
            ),
            Enrich("Table", "describe_table", params={"TableName": "TableName"}, result="Table"),
        ),
    ),
    # ---- KMS -----------------------------------------------------------------------------------
    ResourceSpec(
        type="aws.kms.key",
        service="kms",
        scope="regional",
        operation="list_keys",
        result="Keys",
        id="KeyId",
        by_id=ById(),
        enrich=(
            Enrich("Metadata", "describe_key", params={"KeyId": "KeyId"}, result="KeyMetadata"),
            Enrich(
                "RotationEnabled",
                "get_key_rotation_status",
                params={"KeyId": "KeyId"},
                result="KeyRotationEnabled",
                needs=("Metadata",),
                when="Metadata.KeyManager == 'CUSTOMER' && "
                "Metadata.KeySpec == 'SYMMETRIC_DEFAULT' && "
                "Metadata.KeyState == 'Enabled'",
            ),
        ),
    ),
    # ---- CloudTrail ----------------------------------------------------------------------------
    ResourceSpec(
        type="aws.cloudtrail.trail",
        service="cloudtrail",
        scope="regional",
        # Shadow trails included: an organization trail is only visible that way in a member
        # account. Each trail is kept once, in its home region (or the first scanned one).
        operation="describe_trails",
        constants={"includeShadowTrails": True},
        result="trailList",
        id="TrailARN",
        name="Name",
        home_key="HomeRegion",
        by_id=ById(
            "describe_trails",
            "trailNameList",
            constants={"includeShadowTrails": True},
            gone=("TrailNotFoundException",),
        ),
        enrich=(
            Enrich(
                "Status",
                "get_trail_status",
                params={"Name": "TrailARN"},
                result="{IsLogging: IsLogging, LatestDeliveryError: LatestDeliveryError}",
            ),
        ),
    ),
    # ---- Load balancers ------------------------------------------------------------------------
    ResourceSpec(
        type="aws.elbv2.load_balancer",
        service="elbv2",
        scope="regional",
        operation="describe_load_balancers",
        result="LoadBalancers",
        id="LoadBalancerArn",
        by_id=ById("describe_load_balancers", "LoadBalancerArns", gone=("LoadBalancerNotFound",)),
        name="LoadBalancerName",
        enrich=(
            Enrich(
                "Listeners",
                "describe_listeners",
                params={"LoadBalancerArn": "LoadBalancerArn"},
                result="Listeners",
            ),
        ),
    ),
)

SPECS_BY_TYPE: dict[str, ResourceSpec] = {spec.type: spec for spec in SPECS}
