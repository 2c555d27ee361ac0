"""Every rule judged against real (moto) AWS resources: one that passes, one that fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rules.catalog import Rule, load_catalog
from rules.conditions import EvalContext
from rules.engine import Verdict, evaluate_all
from scanners.aws.collector import AwsCollector, AwsTarget
from tests.aws_fixtures import FIXTURES, Aws

CATALOG = load_catalog()
CASES = [
    pytest.param(rule_id, side, id=f"{rule_id}-{side}")
    for rule_id in sorted(CATALOG.rules)
    for side in ("pass", "fail")
    if rule_id in FIXTURES and side not in FIXTURES[rule_id].unsupported
]


def _verdicts(rule: Rule, resource_id: str, days: int) -> list[Verdict]:
    collector = AwsCollector(
        targets=[AwsTarget(name="test", regions=("us-east-1",))], sleep=lambda _s: None
    )
    collection = collector.collect(needs=CATALOG.needs([rule]))
    assert not collection.errors, collection.errors
    results = evaluate_all(
        [rule], collection.resources, EvalContext(now=datetime.now(UTC) + timedelta(days=days))
    )
    return [r.verdict for r in results if r.resource.id == resource_id]


@pytest.mark.parametrize(("rule_id", "side"), CASES)
@pytest.mark.usefixtures("moto_world")
def test_rule_judges_moto_resource(rule_id: str, side: str) -> None:
    """A user's compliant resource passes the rule and a non-compliant one fails it."""
    rule = CATALOG.rules[rule_id]
    built = FIXTURES[rule_id].build(Aws(), side == "pass")
    resource_id, days = built if isinstance(built, tuple) else (built, 0)
    expected = Verdict.passed if side == "pass" else Verdict.failed
    assert _verdicts(rule, resource_id, days) == [expected]
