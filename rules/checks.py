"""Named checks for what the condition language cannot say; rules cite them by name.

Every check lives here: `rules.catalog` imports this module before it parses a rule, so a
rule citing `{check: <name>, args: {...}}` finds it registered. How to add one, with an example:
docs/writing-rules.md, "Checks in Python". A rule that the condition language can say stays
data (its YAML file and its test fixture, nothing else).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from rules.conditions import EvalContext, register_check

# Condition keys whose fixed value limits who can use a statement, after AWS's "The meaning of
# public" (S3 Block Public Access) plus the two organization/account keys Access Analyzer also
# treats as limiting. Lower-cased: IAM condition keys are case-insensitive.
_RESTRICTING_KEYS = frozenset(
    {
        "aws:sourcearn",
        "aws:sourcevpc",
        "aws:sourcevpce",
        "aws:sourceowner",
        "aws:sourceaccount",
        "aws:principalorgid",
        "aws:principalaccount",
        "aws:principalarn",
        "aws:userid",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
        "s3:dataaccesspointarn",
        "s3:dataaccesspointaccount",
    }
)
# Operators that only match the listed values. Negated ones (StringNotEquals, NotIpAddress),
# `...IfExists` (true when the key is absent) and `ForAllValues:` (true for an empty key) match
# requests from anyone, so they never restrict.
_MATCHING_OPERATORS = frozenset(
    {
        "stringequals",
        "stringequalsignorecase",
        "stringlike",
        "arnequals",
        "arnlike",
    }
)
_IP_OPERATORS = frozenset({"ipaddress"})
# aws:SourceIp restricts unless a range is this wide or wider: 0.0.0.0/0 and ::/0 are the
# internet, and a /0-/7 IPv4 (/0-/31 IPv6) range still admits a large share of it. AWS's own
# rule is "a set of CIDRs"; being stricter here only reports a bucket AWS may call non-public.
_WIDEST_IPV4_PREFIX = 8
_WIDEST_IPV6_PREFIX = 32


def _values(raw: Any) -> list[Any]:
    return raw if isinstance(raw, list) else [raw]


def _fixed(value: Any) -> bool:
    """A literal with no wildcard and no policy variable: it names one thing."""
    return isinstance(value, str) and bool(value) and not any(c in value for c in "*?$")


def _narrow_cidr(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return False
    widest = _WIDEST_IPV4_PREFIX if network.version == 4 else _WIDEST_IPV6_PREFIX
    return network.prefixlen >= widest


def _restricting(condition: Any) -> bool:
    """Some condition in the block limits the statement to known callers or networks."""
    if not isinstance(condition, Mapping):
        return False
    for operator, clauses in condition.items():
        if not isinstance(operator, str) or not isinstance(clauses, Mapping):
            continue
        op = operator.lower()
        if op.startswith("foranyvalue:"):
            op = op.removeprefix("foranyvalue:")
        for key, raw in clauses.items():
            if not isinstance(key, str):
                continue
            values = _values(raw)
            if not values:
                continue
            name = key.lower()
            if name == "aws:sourceip" and op in _IP_OPERATORS:
                if all(_narrow_cidr(v) for v in values):
                    return True
            elif (
                name in _RESTRICTING_KEYS
                and op in _MATCHING_OPERATORS
                and all(_fixed(v) for v in values)
            ):
                return True
    return False


def _everyone(statement: Mapping[str, Any]) -> bool:
    if "NotPrincipal" in statement:
        return True  # Allow with NotPrincipal: everyone but the named ones
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        return any("*" in _values(v) for k, v in principal.items() if k in ("AWS", "CanonicalUser"))
    return False


def statement_is_public(statement: Any) -> bool:
    """An Allow to everyone that no condition narrows to known callers or networks."""
    if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
        return False
    return _everyone(statement) and not _restricting(statement.get("Condition"))


def _public_statements(data: Any, args: Mapping[str, Any], ctx: EvalContext) -> list[Any]:
    policy = data.get("Policy") if isinstance(data, Mapping) else None
    statements = policy.get("Statement") if isinstance(policy, Mapping) else None
    return [s for s in _values(statements or []) if statement_is_public(s)]


@register_check(
    "bucket_policy_public",
    keys={"Policy"},
    doc="the bucket policy allows everyone, with no condition AWS counts as restricting",
    witness=_public_statements,
)
def bucket_policy_public(data: Any, args: Mapping[str, Any], ctx: EvalContext) -> bool:
    """AWS's policy-is-public semantics over `Policy.Statement` (see docs/writing-rules.md)."""
    return bool(_public_statements(data, args, ctx))
