"""moto fixtures for the IAM rules and the account-wide (aws.account) settings.

moto quirks these builders work around or document:
- the credential report has no `<root_account>` row, and GetAccountSummary hard-codes
  AccountMFAEnabled and AccountAccessKeysPresent to 0, so root-user states cannot be built;
- AWS managed policies (AdministratorAccess, ReadOnlyAccess) exist only when the IAM backend
  is created with MOTO_IAM_LOAD_MANAGED_POLICIES=true (see `_with_aws_policies`);
- an access key's last use is recorded when a request is signed with it (see `_use_key`).
"""

from __future__ import annotations

import json
import os
from typing import Any
from unittest import mock

import boto3

from tests.aws_fixtures.registry import ACCOUNT, Aws, fixture

NO_ROOT_ROW = "moto's credential report has no <root_account> row"
ADMIN_ARN = "arn:aws:iam::aws:policy/AdministratorAccess"
READ_ONLY_ARN = "arn:aws:iam::aws:policy/ReadOnlyAccess"

# A password policy meeting every password rule; each fail side weakens one setting.
GOOD_PASSWORD_POLICY: dict[str, Any] = {
    "MinimumPasswordLength": 14,
    "RequireSymbols": True,
    "RequireNumbers": True,
    "RequireUppercaseCharacters": True,
    "RequireLowercaseCharacters": True,
    "AllowUsersToChangePassword": True,
    "MaxPasswordAge": 90,
    "PasswordReusePrevention": 24,
}


def _iam(aws: Aws) -> Any:
    return aws.client("iam")


def _with_aws_policies(aws: Aws) -> Any:
    """The IAM client, with moto's IAM backend created holding the AWS managed policies.

    moto builds the backend on the first IAM call of a fresh world and reads the setting only
    then, so this must be the first IAM call the fixture makes.
    """
    iam = _iam(aws)
    with mock.patch.dict(os.environ, {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}):
        iam.list_policies(Scope="AWS", MaxItems=1)
    return iam


def _user(aws: Aws, name: str, *, password: bool = False, keys: int = 0) -> list[dict[str, str]]:
    """Create user `name`, optionally with a console password and `keys` access keys."""
    iam = _iam(aws)
    iam.create_user(UserName=name)
    if password:
        iam.create_login_profile(UserName=name, Password="Correct-Horse-Battery-9")
    return [iam.create_access_key(UserName=name)["AccessKey"] for _ in range(keys)]


def _use_key(aws: Aws, key: dict[str, str]) -> None:
    """Sign one request with `key`, which moto records as the key's last use."""
    sts = boto3.client(
        "sts",
        region_name=aws.region,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    sts.get_caller_identity()


def _policy_doc(action: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
        }
    )


# ---- root user (aws.account) -----------------------------------------------------------------


@fixture(
    "iam_root_access_keys",
    unsupported={"fail": f"{NO_ROOT_ROW} and moto reports AccountAccessKeysPresent as 0 always"},
)
def _root_keys(aws: Aws, passing: bool) -> str:
    # An IAM user's key must not be mistaken for a root key.
    _user(aws, "deployer", keys=1)
    return ACCOUNT


@fixture(
    "iam_root_mfa",
    unsupported={
        "pass": "moto hard-codes AccountMFAEnabled to 0 (root MFA cannot be enabled by API)"
    },
)
def _root_mfa(aws: Aws, passing: bool) -> str:
    return ACCOUNT


@fixture(
    "iam_root_recently_used",
    unsupported={"fail": f"{NO_ROOT_ROW}, so root password or key use cannot be recorded"},
)
def _root_used(aws: Aws, passing: bool) -> str:
    # Recent activity by an IAM user is not root activity.
    _user(aws, "operator", password=True)
    _use_key(aws, _user(aws, "automation", keys=1)[0])
    return ACCOUNT


# ---- account password policy (aws.account) ---------------------------------------------------


def _password_policy(aws: Aws, passing: bool, **weakened: Any) -> str:
    settings = dict(GOOD_PASSWORD_POLICY)
    if not passing:
        for name, value in weakened.items():
            if value is None:
                settings.pop(name)
            else:
                settings[name] = value
    _iam(aws).update_account_password_policy(**settings)
    return ACCOUNT


@fixture("iam_password_policy_min_length")
def _pw_length(aws: Aws, passing: bool) -> str:
    return _password_policy(aws, passing, MinimumPasswordLength=8)


@fixture("iam_password_policy_reuse")
def _pw_reuse(aws: Aws, passing: bool) -> str:
    return _password_policy(aws, passing, PasswordReusePrevention=None)


@fixture("iam_password_policy_complexity")
def _pw_complexity(aws: Aws, passing: bool) -> str:
    return _password_policy(aws, passing, RequireSymbols=False)


@fixture("iam_password_policy_max_age")
def _pw_max_age(aws: Aws, passing: bool) -> str:
    return _password_policy(aws, passing, MaxPasswordAge=365)


# ---- S3 account settings (aws.account) -------------------------------------------------------


@fixture("s3_account_public_access_block")
def _s3_account_block(aws: Aws, passing: bool) -> str:
    aws.client("s3control").put_public_access_block(
        AccountId=ACCOUNT,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": passing,
        },
    )
    return ACCOUNT


# ---- IAM users ---------------------------------------------------------------------------------


@fixture("iam_user_console_without_mfa")
def _console_mfa(aws: Aws, passing: bool) -> str:
    _user(aws, "alice", password=True)
    if passing:
        iam = _iam(aws)
        serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="alice")["VirtualMFADevice"][
            "SerialNumber"
        ]
        iam.enable_mfa_device(
            UserName="alice",
            SerialNumber=serial,
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )
    return "alice"


@fixture("iam_user_access_key_not_rotated")
def _key_rotation(aws: Aws, passing: bool) -> tuple[str, int]:
    _user(aws, "app", keys=1)
    return "app", 60 if passing else 91


@fixture("iam_user_unused_credentials")
def _unused(aws: Aws, passing: bool) -> tuple[str, int]:
    if passing:
        # Console password set (never used) and a key in use: 30 days on, both still fresh.
        key = _user(aws, "alice", password=True, keys=1)[0]
        _use_key(aws, key)
        return "alice", 30
    # A key used once today and then never again: idle 46 days later.
    _use_key(aws, _user(aws, "old-etl", keys=1)[0])
    return "old-etl", 46


@fixture("iam_user_multiple_active_keys")
def _two_keys(aws: Aws, passing: bool) -> str:
    keys = _user(aws, "app", keys=2)
    if passing:
        # A second key that has been deactivated after a rotation is fine.
        _iam(aws).update_access_key(
            UserName="app", AccessKeyId=keys[1]["AccessKeyId"], Status="Inactive"
        )
    return "app"


@fixture("iam_user_direct_policies")
def _direct(aws: Aws, passing: bool) -> str:
    iam = _iam(aws)
    _user(aws, "alice")
    if passing:
        iam.create_group(GroupName="readers")
        iam.put_group_policy(
            GroupName="readers", PolicyName="s3-read", PolicyDocument=_policy_doc("s3:GetObject")
        )
        iam.add_user_to_group(GroupName="readers", UserName="alice")
    else:
        iam.put_user_policy(
            UserName="alice", PolicyName="s3-read", PolicyDocument=_policy_doc("s3:GetObject")
        )
    return "alice"


@fixture("iam_user_admin_policy_attached")
def _admin_user(aws: Aws, passing: bool) -> str:
    iam = _with_aws_policies(aws)
    _user(aws, "ops")
    iam.attach_user_policy(UserName="ops", PolicyArn=READ_ONLY_ARN if passing else ADMIN_ARN)
    return "ops"


@fixture("iam_user_console_user_unused_access_key")
def _setup_key(aws: Aws, passing: bool) -> str:
    key = _user(aws, "bob", password=True, keys=1)[0]
    if passing:
        _use_key(aws, key)
    return "bob"


# ---- customer managed policies -----------------------------------------------------------------


@fixture("iam_policy_full_admin_attached")
def _full_admin(aws: Aws, passing: bool) -> str:
    iam = _iam(aws)
    arn = iam.create_policy(
        PolicyName="ops", PolicyDocument=_policy_doc("ec2:*" if passing else "*")
    )["Policy"]["Arn"]
    _user(aws, "ops")
    iam.attach_user_policy(UserName="ops", PolicyArn=arn)
    return str(arn)
