"""moto fixtures for the detection rules: GuardDuty and AWS Config, judged per region."""

from __future__ import annotations

from tests.aws_fixtures.registry import ACCOUNT, REGION, Aws, fixture


@fixture("guardduty_enabled")
def _guardduty(aws: Aws, passing: bool) -> str:
    # The failing side is a suspended detector: present, but not watching anything.
    aws.client("guardduty").create_detector(Enable=passing)
    return REGION


@fixture("config_recorder_enabled")
def _config_recorder(aws: Aws, passing: bool) -> str:
    config = aws.client("config")
    config.put_configuration_recorder(
        ConfigurationRecorder={
            "name": "default",
            "roleARN": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/config.amazonaws.com/"
            "AWSServiceRoleForConfig",
            "recordingGroup": {"allSupported": True, "includeGlobalResourceTypes": True},
        }
    )
    aws.client("s3").create_bucket(Bucket="config-history")
    config.put_delivery_channel(
        DeliveryChannel={"name": "default", "s3BucketName": "config-history"}
    )
    # The failing side is the common half-done set-up: recorder defined but never started.
    if passing:
        config.start_configuration_recorder(ConfigurationRecorderName="default")
    return REGION
