"""The condition language: operators, combinators, and the errors rule authors see."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.conditions import OPERATORS, EvalContext, parse_condition
from rules.errors import ConditionError

NOW = EvalContext(now=datetime(2026, 11, 1, tzinfo=UTC))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


def holds(raw: dict[str, Any], data: Any) -> bool:
    return parse_condition(raw).evaluate(data, NOW)


@given(
    data=st.dictionaries(st.sampled_from(["A", "B", "Tags"]), json_values, max_size=3),
    op=st.sampled_from(sorted(OPERATORS)),
    value=json_values,
)
def test_no_resource_shape_crashes_a_rule(data: dict[str, Any], op: str, value: Any) -> None:
    """Whatever AWS returns, evaluating a valid rule gives true or false, never a crash."""
    spec = OPERATORS[op]
    raw: dict[str, Any] = {"key": "A", "op": op}
    if spec.value == "number":
        value = 5
    elif spec.value == "list":
        value = [value]
    elif spec.value == "regex":
        value = "^a"
    if spec.value is not None:
        raw["value"] = value
    assert holds(raw, data) in (True, False)
    assert holds({"key": "Tags", "any_item": raw}, data) in (True, False)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=4))
def test_malformed_conditions_fail_with_a_path(raw: dict[str, Any]) -> None:
    """Any malformed condition is rejected with a ConditionError naming where, not a crash."""
    try:
        parse_condition(raw)
    except ConditionError as exc:
        assert str(exc).startswith("condition")  # noqa: PT017 - valid or this error, both fine


@given(x=st.booleans(), y=st.booleans())
def test_combinators_follow_boolean_logic(x: bool, y: bool) -> None:
    """all / any / not compose as a reader of the YAML would expect."""
    a, b = {"key": "x", "op": "true"}, {"key": "y", "op": "true"}
    data = {"x": x, "y": y}
    assert holds({"all": [a, b]}, data) is (x and y)
    assert holds({"any": [a, b]}, data) is (x or y)
    assert holds({"not": a}, data) is (not x)


def test_quantifiers_over_lists() -> None:
    """any_item / every_item / no_item judge each element; a missing list has no elements."""
    item = {"key": "Port", "op": "eq", "value": 22}
    data = {"Rules": [{"Port": 22}, {"Port": 443}]}
    assert holds({"key": "Rules", "any_item": item}, data)
    assert not holds({"key": "Rules", "every_item": item}, data)
    assert not holds({"key": "Rules", "no_item": item}, data)
    assert not holds({"key": "Missing", "any_item": item}, data)
    assert holds({"key": "Missing", "every_item": item}, data)


def test_age_operators_use_the_injected_clock() -> None:
    """Key age is measured from the scan's clock, so tests and replays are deterministic."""
    data = {"Rotated": "2026-07-01T00:00:00+00:00"}
    assert holds({"key": "Rotated", "op": "older_than_days", "value": 90}, data)
    assert not holds({"key": "Rotated", "op": "older_than_days", "value": 200}, data)
    assert holds({"key": "Rotated", "op": "newer_than_days", "value": 200}, data)
    assert not holds({"key": "Missing", "op": "older_than_days", "value": 1}, data)


def test_root_keys_are_what_the_scanner_must_fetch() -> None:
    """Only top-level keys read from the resource root count, not keys inside list items."""
    cond = parse_condition(
        {
            "all": [
                {"key": "Policy.Statement[?Effect=='Deny']", "op": "empty"},
                {"key": "IpPermissions", "any_item": {"key": "FromPort", "op": "eq", "value": 22}},
                {"key": "length(Grants) > `0`", "op": "true"},
            ]
        }
    )
    assert cond.root_keys() == {"Policy", "IpPermissions", "Grants"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"key": "A", "op": "eqq", "value": 1}, "condition.op: unknown operator 'eqq'; valid: eq,"),
        ({"key": "A", "op": "gt", "value": "x"}, "condition.value: operator 'gt' needs a number"),
        ({"key": "A", "op": "present", "value": 1}, "condition.value: operator 'present' takes no"),
        ({"key": "A", "op": "eq"}, "condition: operator 'eq' needs a 'value'"),
        ({"key": "A[", "op": "present"}, "condition.key: invalid JMESPath expression"),
        ({"all": []}, "condition.all: must be a non-empty list"),
        (
            {"all": [{"key": "A", "op": "present"}, {"nott": {}}]},
            "condition.all[1]: unknown condition",
        ),
        ({"key": "A", "op": "regex", "value": "("}, "condition.value: invalid regular expression"),
        ({"check": "nope"}, "condition.check: unknown check 'nope'"),
        ({"any": [{"key": "A", "op": "present"}], "all": []}, "condition: 'all' stands alone"),
    ],
)
def test_condition_errors_name_the_place(raw: dict[str, Any], message: str) -> None:
    """A rule author sees exactly which part of the condition is wrong and what is valid."""
    with pytest.raises(ConditionError) as info:
        parse_condition(raw)
    assert str(info.value).startswith(message)
