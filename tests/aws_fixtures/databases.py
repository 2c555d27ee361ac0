"""moto fixtures for the RDS and DynamoDB rules."""

from __future__ import annotations

from typing import Any

from tests.aws_fixtures.registry import Aws, fixture


def _instance(aws: Aws, name: str, **settings: Any) -> str:
    """A standalone PostgreSQL instance with `settings` passed to create_db_instance."""
    aws.client("rds").create_db_instance(
        DBInstanceIdentifier=name,
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="app",
        MasterUserPassword="correct-horse-battery",
        **settings,
    )
    return name


@fixture("rds_instance_storage_encrypted")
def _rds_encrypted(aws: Aws, passing: bool) -> str:
    return _instance(aws, "orders", StorageEncrypted=passing)


@fixture("rds_instance_not_public")
def _rds_public(aws: Aws, passing: bool) -> str:
    return _instance(aws, "orders", PubliclyAccessible=not passing)


@fixture("rds_instance_backup_retention")
def _rds_backups(aws: Aws, passing: bool) -> str:
    return _instance(aws, "orders", BackupRetentionPeriod=7 if passing else 0)


@fixture("rds_instance_multi_az")
def _rds_multi_az(aws: Aws, passing: bool) -> str:
    return _instance(aws, "orders", MultiAZ=passing)


@fixture("rds_instance_deletion_protection")
def _rds_deletion(aws: Aws, passing: bool) -> str:
    return _instance(aws, "orders", DeletionProtection=passing)


@fixture("rds_instance_auto_minor_upgrade")
def _rds_minor(aws: Aws, passing: bool) -> str:
    return _instance(aws, "orders", AutoMinorVersionUpgrade=passing)


@fixture("rds_instance_log_exports")
def _rds_logs(aws: Aws, passing: bool) -> str:
    return _instance(aws, "orders", EnableCloudwatchLogsExports=["postgresql"] if passing else [])


def _snapshot(aws: Aws, *, encrypted: bool) -> str:
    source = _instance(aws, "source", StorageEncrypted=encrypted)
    aws.client("rds").create_db_snapshot(
        DBInstanceIdentifier=source, DBSnapshotIdentifier="nightly"
    )
    return "nightly"


@fixture("rds_snapshot_public")
def _snapshot_public(aws: Aws, passing: bool) -> str:
    snapshot = _snapshot(aws, encrypted=False)
    aws.client("rds").modify_db_snapshot_attribute(
        DBSnapshotIdentifier=snapshot,
        AttributeName="restore",
        ValuesToAdd=["111122223333"] if passing else ["all"],
    )
    return snapshot


@fixture("rds_snapshot_encrypted")
def _snapshot_encrypted(aws: Aws, passing: bool) -> str:
    return _snapshot(aws, encrypted=passing)


def _table(aws: Aws, **settings: Any) -> str:
    """An on-demand DynamoDB table with `settings` passed to create_table."""
    aws.client("dynamodb").create_table(
        TableName="orders",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        **settings,
    )
    return "orders"


@fixture("dynamodb_pitr_enabled")
def _ddb_pitr(aws: Aws, passing: bool) -> str:
    table = _table(aws)
    if passing:
        aws.client("dynamodb").update_continuous_backups(
            TableName=table,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    return table


@fixture("dynamodb_deletion_protection")
def _ddb_deletion(aws: Aws, passing: bool) -> str:
    return _table(aws, DeletionProtectionEnabled=passing)


@fixture("dynamodb_kms_encryption")
def _ddb_kms(aws: Aws, passing: bool) -> str:
    if not passing:
        return _table(aws)
    key = aws.client("kms").create_key(Description="orders table")["KeyMetadata"]["Arn"]
    return _table(aws, SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key})


def _cluster(aws: Aws, name: str, **settings: Any) -> str:
    """An Aurora PostgreSQL cluster with `settings` passed to create_db_cluster."""
    aws.client("rds").create_db_cluster(
        DBClusterIdentifier=name,
        Engine="aurora-postgresql",
        MasterUsername="app",
        MasterUserPassword="correct-horse-battery",
        **settings,
    )
    return name


@fixture("rds_cluster_storage_encrypted")
def _cluster_encrypted(aws: Aws, passing: bool) -> str:
    return _cluster(aws, "prod", StorageEncrypted=passing)


@fixture("rds_cluster_backup_retention")
def _cluster_backups(aws: Aws, passing: bool) -> str:
    return _cluster(aws, "prod", BackupRetentionPeriod=7 if passing else 1)


@fixture("rds_cluster_deletion_protection")
def _cluster_deletion(aws: Aws, passing: bool) -> str:
    return _cluster(aws, "prod", DeletionProtection=passing)


@fixture("rds_cluster_iam_authentication")
def _cluster_iam_auth(aws: Aws, passing: bool) -> str:
    return _cluster(aws, "prod", EnableIAMDatabaseAuthentication=passing)
