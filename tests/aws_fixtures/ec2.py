"""moto fixtures for the EC2 rules."""

from __future__ import annotations

from tests.aws_fixtures.registry import Aws, fixture


@fixture("ec2_volume_encrypted")
def _volume(aws: Aws, passing: bool) -> str:
    ec2 = aws.client("ec2")
    return str(
        ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, Encrypted=passing)["VolumeId"]
    )


@fixture("ec2_sg_ssh_open_to_world")
def _ssh(aws: Aws, passing: bool) -> str:
    ec2 = aws.client("ec2")
    group = ec2.create_security_group(GroupName="ssh", Description="ssh")["GroupId"]
    cidr = "10.0.0.0/8" if passing else "0.0.0.0/0"
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": cidr}]}
        ],
    )
    return str(group)
