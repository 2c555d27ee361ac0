"""moto fixtures for the S3 bucket, CloudTrail and KMS rules."""

from __future__ import annotations

import json
from typing import Any

from tests.aws_fixtures.registry import ACCOUNT, Aws, fixture

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
BLOCK_ALL = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def _bucket(aws: Aws, name: str) -> str:
    aws.client("s3").create_bucket(Bucket=name)
    return name


def _policy(aws: Aws, bucket: str, *statements: dict[str, Any]) -> None:
    document = {"Version": "2012-10-17", "Statement": list(statements)}
    aws.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(document))


def _objects(bucket: str) -> list[str]:
    return [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]


# ---- S3 buckets ---------------------------------------------------------------------------------


@fixture("s3_bucket_default_encryption")
def _default_encryption(aws: Aws, passing: bool) -> str:
    # moto leaves a new bucket without any default encryption (real AWS applies SSE-S3).
    bucket = _bucket(aws, "encrypted" if passing else "legacy-unencrypted")
    if passing:
        aws.client("s3").put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
                        "BucketKeyEnabled": True,
                    }
                ]
            },
        )
    return bucket


@fixture("s3_bucket_ssl_only")
def _ssl_only(aws: Aws, passing: bool) -> str:
    bucket = _bucket(aws, "tls-only" if passing else "http-allowed")
    if passing:
        _policy(
            aws,
            bucket,
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": _objects(bucket),
                "Condition": {"Bool": {"aws:SecureTransport": ["false"]}},
            },
        )
    else:
        # A Deny that looks related but only covers uploads.
        _policy(
            aws,
            bucket,
            {
                "Sid": "DenyInsecureUploads",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        )
    return bucket


@fixture("s3_bucket_versioning_enabled")
def _versioning(aws: Aws, passing: bool) -> str:
    bucket = _bucket(aws, "versioned" if passing else "versioning-suspended")
    s3 = aws.client("s3")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if not passing:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    return bucket


@fixture(
    "s3_bucket_mfa_delete",
    unsupported={"pass": "moto ignores MFADelete in put_bucket_versioning and never returns it"},
)
def _mfa_delete(aws: Aws, passing: bool) -> str:
    bucket = _bucket(aws, "no-mfa-delete")
    aws.client("s3").put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    return bucket


@fixture("s3_bucket_access_logging")
def _access_logging(aws: Aws, passing: bool) -> str:
    bucket = _bucket(aws, "logged" if passing else "not-logged")
    if passing:
        s3 = aws.client("s3")
        target = _bucket(aws, "central-access-logs")
        s3.put_bucket_acl(
            Bucket=target, GrantWrite=f"uri={LOG_DELIVERY}", GrantReadACP=f"uri={LOG_DELIVERY}"
        )
        s3.put_bucket_logging(
            Bucket=bucket,
            BucketLoggingStatus={
                "LoggingEnabled": {"TargetBucket": target, "TargetPrefix": f"{bucket}/"}
            },
        )
    return bucket


@fixture("s3_bucket_public_access_block")
def _public_access_block(aws: Aws, passing: bool) -> str:
    bucket = _bucket(aws, "blocked" if passing else "partly-blocked")
    config = dict(BLOCK_ALL) if passing else {**BLOCK_ALL, "RestrictPublicBuckets": False}
    aws.client("s3").put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=config)
    return bucket


@fixture("s3_bucket_public_acl")
def _public_acl(aws: Aws, passing: bool) -> str:
    s3 = aws.client("s3")
    if passing:
        # A group grant that is not public: the S3 log delivery group.
        bucket = _bucket(aws, "log-target")
        s3.put_bucket_acl(
            Bucket=bucket, GrantWrite=f"uri={LOG_DELIVERY}", GrantReadACP=f"uri={LOG_DELIVERY}"
        )
    else:
        bucket = _bucket(aws, "public-read")
        s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    return bucket


@fixture("s3_bucket_public_policy")
def _public_policy(aws: Aws, passing: bool) -> str:
    bucket = _bucket(aws, "org-shared" if passing else "world-readable")
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    if passing:
        statement["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": "o-abc123def4"}}
    _policy(aws, bucket, statement)
    return bucket


# ---- CloudTrail ---------------------------------------------------------------------------------


def _trail(aws: Aws, name: str, *, logging: bool = True, **options: Any) -> str:
    if "trail-logs" not in {b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]}:
        _bucket(aws, "trail-logs")
    cloudtrail = aws.client("cloudtrail")
    arn = str(cloudtrail.create_trail(Name=name, S3BucketName="trail-logs", **options)["TrailARN"])
    if logging:
        cloudtrail.start_logging(Name=name)
    return arn


@fixture("cloudtrail_multi_region_enabled")
def _multi_region(aws: Aws, passing: bool) -> str:
    # Failing: a logging single-region trail, and a multi-region one that was never started.
    _trail(aws, "regional-app")
    _trail(aws, "account-trail", IsMultiRegionTrail=True, logging=passing)
    return ACCOUNT


@fixture("cloudtrail_log_file_validation")
def _log_validation(aws: Aws, passing: bool) -> str:
    return _trail(aws, "validated" if passing else "unvalidated", EnableLogFileValidation=passing)


@fixture("cloudtrail_kms_encryption")
def _trail_kms(aws: Aws, passing: bool) -> str:
    if not passing:
        return _trail(aws, "sse-s3-only")
    key = aws.client("kms").create_key(Description="cloudtrail")["KeyMetadata"]["Arn"]
    return _trail(aws, "kms-encrypted", KmsKeyId=key)


@fixture("cloudtrail_logging_enabled")
def _trail_logging(aws: Aws, passing: bool) -> str:
    return _trail(aws, "running" if passing else "stopped", logging=passing)


@fixture("cloudtrail_cloudwatch_integration")
def _trail_cloudwatch(aws: Aws, passing: bool) -> str:
    if not passing:
        return _trail(aws, "s3-only")
    logs = aws.client("logs")
    logs.create_log_group(logGroupName="cloudtrail")
    group = logs.describe_log_groups(logGroupNamePrefix="cloudtrail")["logGroups"][0]["arn"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = aws.client("iam").create_role(
        RoleName="CloudTrailToCloudWatchLogs", AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]["Arn"]
    return _trail(aws, "streamed", CloudWatchLogsLogGroupArn=group, CloudWatchLogsRoleArn=role)


# ---- KMS ----------------------------------------------------------------------------------------


@fixture("kms_key_rotation_enabled")
def _key_rotation(aws: Aws, passing: bool) -> str:
    kms = aws.client("kms")
    key = str(kms.create_key(Description="data key")["KeyMetadata"]["KeyId"])
    if passing:
        kms.enable_key_rotation(KeyId=key)
    return key


@fixture("kms_key_pending_deletion")
def _key_deletion(aws: Aws, passing: bool) -> str:
    kms = aws.client("kms")
    key = str(kms.create_key(Description="data key")["KeyMetadata"]["KeyId"])
    if not passing:
        kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    return key


@fixture("cloudtrail_trail_multi_region")
def _trail_multi_region(aws: Aws, passing: bool) -> str:
    return _trail(aws, "everywhere" if passing else "home-only", IsMultiRegionTrail=passing)
