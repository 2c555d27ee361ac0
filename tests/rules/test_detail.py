"""A finding's detail: the sentence and evidence a rule's data renders over what matched."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.catalog import load_catalog, load_rule
from rules.conditions import EvalContext
from rules.detail import MAX_EVIDENCE, MAX_TEXT, parse_detail
from rules.engine import Verdict, detail, evaluate
from rules.errors import CatalogError, ConditionError
from scanners.model import Resource

CATALOG = load_catalog()
CTX = EvalContext(now=datetime(2026, 12, 3, tzinfo=UTC))


def resource(rule_type: str, data: dict[str, Any]) -> Resource:
    return Resource(type=rule_type, id="r-1", account="111122223333", region="us-east-1", data=data)


def detail_of(rule_id: str, data: dict[str, Any]) -> tuple[str | None, Any]:
    rule = CATALOG.rules[rule_id]
    res = resource(rule.resource_type, data)
    assert evaluate(rule, res, CTX) is Verdict.failed
    found = detail(rule, res, CTX)
    return found.text, found.evidence


def group(*permissions: dict[str, Any]) -> dict[str, Any]:
    return {"GroupId": "sg-1", "GroupName": "web", "IpPermissions": list(permissions)}


# ---- every built-in rule says what is wrong ----------------------------------------------------


@pytest.mark.parametrize("rule_id", sorted(CATALOG.rules))
def test_every_failing_example_has_a_sentence(rule_id: str) -> None:
    """A user reading any finding sees what is wrong, with no template left unrendered."""
    rule = CATALOG.rules[rule_id]
    now = EvalContext(now=datetime(2026, 11, 1, tzinfo=UTC))  # the fixtures' own date
    for example in rule.examples.fail:
        res = resource(rule.resource_type, example)
        if evaluate(rule, res, now) is not Verdict.failed:
            continue  # judged at another date by its fixture test
        found = detail(rule, res, now)
        assert found.text, f"{rule_id}: no detail for {example}"
        assert not re.search(r"\{[a-z_]+\}", found.text), found.text
        assert "None" not in found.text, found.text
        json.dumps(found.evidence)  # JSON as stored


# ---- security groups: the port and the CIDR at fault -------------------------------------------


def test_ssh_detail_names_port_and_only_the_world_cidr() -> None:
    """A second, private CIDR in the same permission is not blamed."""
    text, evidence = detail_of(
        "ec2_sg_ssh_open_to_world",
        group(
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}, {"CidrIp": "0.0.0.0/0"}],
            },
            {
                "IpProtocol": "tcp",
                "FromPort": 443,
                "ToPort": 443,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
        ),
    )
    assert text == "tcp port 22 open to 0.0.0.0/0"
    assert evidence == {
        "count": 1,
        "items": [
            {
                "what": "tcp port 22",
                "protocol": "tcp",
                "from_port": 22,
                "to_port": 22,
                "sources": ["0.0.0.0/0"],
            }
        ],
    }


def test_all_traffic_on_ipv6_only_and_a_range() -> None:
    text, evidence = detail_of(
        "ec2_sg_database_ports_open_to_world",
        group(
            {"IpProtocol": "-1", "IpRanges": [], "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
            {
                "IpProtocol": "6",
                "FromPort": 0,
                "ToPort": 65535,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
            },
        ),
    )
    assert text == "all traffic open to ::/0; tcp ports 0-65535 open to 0.0.0.0/0, ::/0"
    assert [(i["from_port"], i["to_port"]) for i in evidence["items"]] == [(None, None), (0, 65535)]


def test_two_groups_with_different_ports_have_different_details() -> None:
    """What the issue observed: a 5432-only and a 3306-only group are now told apart."""
    rule = "ec2_sg_database_ports_open_to_world"

    def one(port: int) -> str | None:
        perm = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
        return detail_of(rule, group({**perm, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}))[0]

    assert one(5432) == "tcp port 5432 open to 0.0.0.0/0"
    assert one(3306) == "tcp port 3306 open to 0.0.0.0/0"


def test_public_policy_detail_names_the_statement() -> None:
    policy = {
        "Statement": [
            {
                "Sid": "Private",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::1:root"},
                "Action": "s3:*",
                "Resource": "arn:aws:s3:::b/*",
            },
            {
                "Sid": "Site",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::b/*",
                "Condition": {"StringLike": {"aws:Referer": "x"}},
            },
        ]
    }
    text, evidence = detail_of("s3_bucket_public_policy", {"Name": "b", "Policy": policy})
    assert text == (
        "statement Site allows s3:GetObject on arn:aws:s3:::b/* to everyone "
        '(condition: {"StringLike":{"aws:Referer":"x"}})'
    )
    assert [i["sid"] for i in evidence["items"]] == ["Site"]


def test_a_setting_rule_without_template_names_the_setting_and_value() -> None:
    text, evidence = detail_of("rds_instance_backup_retention", {"BackupRetentionPeriod": 1})
    assert text == "BackupRetentionPeriod: 1"
    assert evidence == {"BackupRetentionPeriod": 1}


# ---- hostile: huge and strange data ------------------------------------------------------------


def test_ten_thousand_open_permissions_are_capped() -> None:
    perms = [
        {
            "IpProtocol": "tcp",
            "FromPort": 22,
            "ToPort": 22 + i,
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
        }
        for i in range(10_000)
    ]
    text, evidence = detail_of("ec2_sg_ssh_open_to_world", group(*perms))
    assert text is not None
    assert len(text) <= MAX_TEXT
    assert text.endswith("; and 9990 more")
    assert len(json.dumps(evidence)) <= MAX_EVIDENCE
    assert evidence["count"] == 10_000
    assert evidence["truncated"] == 10_000 - len(evidence["items"])


def test_timestamps_and_odd_values_are_stored_as_json() -> None:
    key = {"active": True, "last_rotated": datetime(2025, 1, 1, tzinfo=UTC), "last_used_date": None}
    text, evidence = detail_of(
        "iam_user_access_key_not_rotated", {"Credentials": {"access_keys": [key]}}
    )
    assert text == "access key last rotated 2025-01-01T00:00:00+00:00 (active: true)"
    assert json.loads(json.dumps(evidence))["items"][0]["rotated"] == "2025-01-01T00:00:00+00:00"


PORT = st.one_of(st.none(), st.integers(-1, 70_000), st.text(max_size=5))
PERMISSION = st.fixed_dictionaries(
    {
        "IpProtocol": st.sampled_from(["tcp", "udp", "-1", "6", "icmp", ""]),
        "FromPort": PORT,
        "ToPort": PORT,
        "IpRanges": st.lists(
            st.fixed_dictionaries({"CidrIp": st.sampled_from(["0.0.0.0/0", "10.0.0.0/8", ""])}),
            max_size=3,
        ),
        "Ipv6Ranges": st.lists(
            st.fixed_dictionaries({"CidrIpv6": st.sampled_from(["::/0", "fd00::/8"])}), max_size=2
        ),
    }
)


@settings(max_examples=200, deadline=None)
@given(st.lists(PERMISSION, max_size=8))
def test_security_group_detail_never_breaks(perms: list[dict[str, Any]]) -> None:
    """Any shape AWS (or a broken proxy) returns: a failing verdict always has a bounded detail."""
    for rule_id in ("ec2_sg_ssh_open_to_world", "ec2_sg_all_traffic_open_to_world"):
        rule = CATALOG.rules[rule_id]
        res = resource(rule.resource_type, group(*perms))
        if evaluate(rule, res, CTX) is Verdict.failed:
            found = detail(rule, res, CTX)
            assert found.text
            assert len(found.text) <= MAX_TEXT
            assert "0.0.0.0/0" in found.text or "::/0" in found.text


# ---- a bad `detail` in a rule file is named ----------------------------------------------------


RULE = """\
id: {id}
title: Volumes are encrypted at rest
severity: high
resource_type: aws.ec2.volume
rationale: r
remediation: {{text: t}}
frameworks: {{soc2: [CC6.1]}}
condition: {{key: Encrypted, op: "false"}}
{detail}
examples:
  pass: [{{Encrypted: true}}]
  fail: [{{Encrypted: false}}]
"""


@pytest.mark.parametrize(
    ("detail_yaml", "message"),
    [
        ('detail: {text: "size {size}", fields: {bytes: Size}}', "{size} is not a field"),
        ('detail: {text: "size {size:>4}", fields: {size: Size}}', "without a format"),
        ('detail: {text: "size {size}", fields: {size: "Size[?"}}', "invalid JMESPath"),
        ('detail: {text: "open {", fields: {}}', "literal brace"),
        ('detail: {text: "", fields: {}}', "non-empty string"),
        ('detail: {text: "x", field: {}}', "unknown keys"),
        ('detail: {text: "x", fields: {"bad name": Size}}', "letters, digits"),
    ],
)
def test_bad_detail_is_named_with_file_and_place(
    tmp_path: Path, detail_yaml: str, message: str
) -> None:
    path = tmp_path / "my_rule.yaml"
    path.write_text(RULE.format(id="my_rule", detail=detail_yaml))
    with pytest.raises(CatalogError) as err:
        load_rule(path, frameworks=CATALOG.frameworks, resource_types={"aws.ec2.volume"})
    assert str(path) in str(err.value)
    assert "detail" in str(err.value)
    assert message in str(err.value)


def test_detail_fields_over_the_resource_are_collected(tmp_path: Path) -> None:
    """A field read from the resource itself is a key the scanner must collect."""
    path = tmp_path / "my_rule.yaml"
    path.write_text(
        RULE.format(id="my_rule", detail='detail: {text: "{size} GiB", fields: {size: Size}}')
    )
    rule = load_rule(path, frameworks=CATALOG.frameworks, resource_types={"aws.ec2.volume"})
    assert rule.keys() == {"Encrypted", "Size"}
    found = detail(rule, resource("aws.ec2.volume", {"Encrypted": False, "Size": 8}), CTX)
    assert (found.text, found.evidence) == ("8 GiB", {"size": 8})


def test_parse_detail_rejects_a_non_mapping() -> None:
    with pytest.raises(ConditionError, match="must be a mapping"):
        parse_detail("text", CATALOG.rules["ec2_volume_encrypted"].condition)
