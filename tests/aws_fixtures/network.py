"""moto fixtures for the network and EC2 rules: security groups, instances, EBS snapshots,
AMIs, VPCs and load balancers (the EBS volume and SSH exemplars live in ec2.py)."""

from __future__ import annotations

import json
from typing import Any

from tests.aws_fixtures.registry import REGION, Aws, fixture

AMI = "ami-12345678"  # moto launches any image id when default AMIs are not loaded
WORLD_V4 = "0.0.0.0/0"
WORLD_V6 = "::/0"
PRIVATE = "10.0.0.0/8"


# ---- helpers ---------------------------------------------------------------------------------


def _group_with(aws: Aws, name: str, *permissions: dict[str, Any]) -> str:
    """A new security group in the default VPC with the given ingress permissions."""
    ec2 = aws.client("ec2")
    group = str(ec2.create_security_group(GroupName=name, Description=name)["GroupId"])
    if permissions:
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=list(permissions))
    return group


def _tcp(port_from: int, port_to: int, cidr: str) -> dict[str, Any]:
    key, block = ("Ipv6Ranges", "CidrIpv6") if ":" in cidr else ("IpRanges", "CidrIp")
    return {"IpProtocol": "tcp", "FromPort": port_from, "ToPort": port_to, key: [{block: cidr}]}


def _private_subnets(aws: Aws) -> tuple[str, str, str]:
    """A new VPC with two subnets (no public IP auto-assign): (vpc id, subnet a, subnet b)."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{REGION}{zone}"
        )["Subnet"]["SubnetId"]
        for i, zone in ((1, "a"), (2, "b"))
    ]
    return str(vpc), str(subnets[0]), str(subnets[1])


def _launch(aws: Aws, **params: Any) -> str:
    ec2 = aws.client("ec2")
    instance = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, **params)["Instances"][0]
    return str(instance["InstanceId"])


def _snapshot(aws: Aws, *, encrypted: bool = False) -> str:
    ec2 = aws.client("ec2")
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1, Encrypted=encrypted)
    return str(ec2.create_snapshot(VolumeId=volume["VolumeId"])["SnapshotId"])


def _load_balancer(aws: Aws) -> tuple[str, str]:
    """An internet-facing ALB and a target group for it: (load balancer ARN, target group ARN)."""
    vpc, subnet_a, subnet_b = _private_subnets(aws)
    elbv2 = aws.client("elbv2")
    lb = elbv2.create_load_balancer(Name="web", Subnets=[subnet_a, subnet_b], Type="application")[
        "LoadBalancers"
    ][0]["LoadBalancerArn"]
    tg = elbv2.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][
        0
    ]["TargetGroupArn"]
    return str(lb), str(tg)


# ---- security groups -------------------------------------------------------------------------


@fixture("ec2_sg_rdp_open_to_world")
def _rdp(aws: Aws, passing: bool) -> str:
    if passing:
        return _group_with(aws, "rdp", _tcp(3389, 3389, PRIVATE), _tcp(443, 443, WORLD_V4))
    return _group_with(aws, "rdp", _tcp(3389, 3389, WORLD_V6))


@fixture("ec2_sg_database_ports_open_to_world")
def _database(aws: Aws, passing: bool) -> str:
    if passing:
        return _group_with(aws, "db", _tcp(5432, 5432, PRIVATE), _tcp(443, 443, WORLD_V4))
    # A port range that happens to cover PostgreSQL and Redshift.
    return _group_with(aws, "db", _tcp(5000, 6000, WORLD_V4))


@fixture("ec2_sg_all_traffic_open_to_world")
def _all_traffic(aws: Aws, passing: bool) -> str:
    if passing:
        return _group_with(
            aws,
            "all",
            _tcp(443, 443, WORLD_V4),
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": PRIVATE}]},
        )
    return _group_with(aws, "all", {"IpProtocol": "-1", "IpRanges": [{"CidrIp": WORLD_V4}]})


@fixture("ec2_sg_insecure_service_ports_open_to_world")
def _insecure_ports(aws: Aws, passing: bool) -> str:
    if passing:
        return _group_with(aws, "legacy", _tcp(445, 445, PRIVATE), _tcp(443, 443, WORLD_V4))
    return _group_with(aws, "legacy", _tcp(23, 23, WORLD_V4))


@fixture("ec2_sg_default_restricts_all")
def _default_group(aws: Aws, passing: bool) -> str:
    """The default group of a new VPC: moto gives it an allow-all egress rule, as AWS does."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    group = ec2.describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "group-name", "Values": ["default"]},
        ]
    )["SecurityGroups"][0]
    if passing:
        for direction, revoke in (
            ("IpPermissions", ec2.revoke_security_group_ingress),
            ("IpPermissionsEgress", ec2.revoke_security_group_egress),
        ):
            if group[direction]:
                revoke(GroupId=group["GroupId"], IpPermissions=group[direction])
    return str(group["GroupId"])


# ---- instances -------------------------------------------------------------------------------


@fixture("ec2_instance_no_public_ip")
def _public_ip(aws: Aws, passing: bool) -> str:
    if passing:
        _vpc, subnet, _ = _private_subnets(aws)
        return _launch(aws, SubnetId=subnet)
    return _launch(aws)  # the default VPC's subnets auto-assign a public address


@fixture("ec2_instance_imdsv2_required")
def _imdsv2(aws: Aws, passing: bool) -> str:
    if passing:
        return _launch(aws, MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"})
    return _launch(aws)  # moto, like AWS without account defaults, leaves tokens optional


@fixture("ec2_instance_iam_profile_attached")
def _instance_profile(aws: Aws, passing: bool) -> str:
    if not passing:
        return _launch(aws)
    iam = aws.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"Service": "ec2.amazonaws.com"},
            }
        ],
    }
    iam.create_role(RoleName="app", AssumeRolePolicyDocument=json.dumps(trust))
    iam.create_instance_profile(InstanceProfileName="app")
    iam.add_role_to_instance_profile(InstanceProfileName="app", RoleName="app")
    return _launch(aws, IamInstanceProfile={"Name": "app"})


# ---- EBS, snapshots, images ------------------------------------------------------------------


@fixture("ec2_ebs_default_encryption")
def _ebs_default(aws: Aws, passing: bool) -> str:
    ec2 = aws.client("ec2")
    if passing:
        ec2.enable_ebs_encryption_by_default()
    else:
        ec2.disable_ebs_encryption_by_default()
    return REGION


@fixture("ec2_snapshot_public")
def _snapshot_public(aws: Aws, passing: bool) -> str:
    snapshot = _snapshot(aws)
    share: dict[str, Any] = {"UserIds": ["111122223333"]} if passing else {"GroupNames": ["all"]}
    aws.client("ec2").modify_snapshot_attribute(
        SnapshotId=snapshot, Attribute="createVolumePermission", OperationType="add", **share
    )
    return snapshot


@fixture("ec2_snapshot_encrypted")
def _snapshot_encrypted(aws: Aws, passing: bool) -> str:
    return _snapshot(aws, encrypted=passing)


@fixture("ec2_ami_public")
def _ami_public(aws: Aws, passing: bool) -> str:
    ec2 = aws.client("ec2")
    image = str(ec2.create_image(InstanceId=_launch(aws), Name="app-image")["ImageId"])
    permission = {"UserId": "111122223333"} if passing else {"Group": "all"}
    ec2.modify_image_attribute(ImageId=image, LaunchPermission={"Add": [permission]})
    return image


# ---- VPC -------------------------------------------------------------------------------------


@fixture("vpc_flow_logs_enabled")
def _flow_logs(aws: Aws, passing: bool) -> str:
    vpc, _a, _b = _private_subnets(aws)
    if passing:
        aws.client("s3").create_bucket(Bucket="flow-logs")
        aws.client("ec2").create_flow_logs(
            ResourceIds=[vpc],
            ResourceType="VPC",
            TrafficType="ALL",
            LogDestinationType="s3",
            LogDestination="arn:aws:s3:::flow-logs",
        )
    return vpc


# ---- load balancers --------------------------------------------------------------------------


@fixture("elbv2_listener_https_only")
def _https_only(aws: Aws, passing: bool) -> str:
    lb, tg = _load_balancer(aws)
    if passing:
        action = {
            "Type": "redirect",
            "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"},
        }
    else:
        action = {"Type": "forward", "TargetGroupArn": tg}
    aws.client("elbv2").create_listener(
        LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=[action]
    )
    return lb


@fixture("elbv2_tls_policy_current")
def _tls_policy(aws: Aws, passing: bool) -> str:
    lb, tg = _load_balancer(aws)
    cert = aws.client("acm").request_certificate(DomainName="www.example.com")["CertificateArn"]
    policy = "ELBSecurityPolicy-TLS13-1-2-2021-06" if passing else "ELBSecurityPolicy-2016-08"
    aws.client("elbv2").create_listener(
        LoadBalancerArn=lb,
        Protocol="HTTPS",
        Port=443,
        SslPolicy=policy,
        Certificates=[{"CertificateArn": cert}],
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
    )
    return lb
