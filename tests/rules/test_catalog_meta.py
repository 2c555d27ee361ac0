"""Meta-tests over the whole catalog: what a rule author can get wrong, caught before users."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rules.catalog import load_catalog
from rules.conditions import EvalContext
from rules.engine import Verdict, evaluate
from scanners.aws.specs import SPECS, SPECS_BY_TYPE
from scanners.host.types import HOST_TYPES
from scanners.model import Resource
from tests.aws_fixtures import FIXTURES

CATALOG = load_catalog()
AWS_RULES = sorted(r.id for r in CATALOG.rules.values() if r.resource_type in SPECS_BY_TYPE)
HOST_RULES = sorted(r.id for r in CATALOG.rules.values() if r.resource_type in HOST_TYPES)
NOW = EvalContext(now=datetime(2026, 11, 1, tzinfo=UTC))


def _resource(rule_type: str, data: dict[str, object]) -> Resource:
    return Resource(
        type=rule_type, id="example", account="123456789012", region="us-east-1", data=data
    )


def test_catalog_has_at_least_45_aws_rules() -> None:
    """The built-in catalog ships the breadth the README promises."""
    assert len(CATALOG.rules) >= 45


@pytest.mark.parametrize("rule_id", sorted(CATALOG.rules))
def test_rule_examples_judge_as_labelled(rule_id: str) -> None:
    """Each rule's documented pass and fail examples get the verdict they claim."""
    rule = CATALOG.rules[rule_id]
    for data in rule.examples.pass_:
        assert evaluate(rule, _resource(rule.resource_type, data), NOW) in (
            Verdict.passed,
            Verdict.not_applicable,
        ), data
    for data in rule.examples.fail:
        assert evaluate(rule, _resource(rule.resource_type, data), NOW) is Verdict.failed, data


def test_every_rule_judges_a_known_type() -> None:
    """Every rule is an AWS rule or a host rule: the checks below cover them all."""
    assert sorted(AWS_RULES + HOST_RULES) == sorted(CATALOG.rules)


@pytest.mark.parametrize("rule_id", AWS_RULES)
def test_rule_reads_only_collected_keys(rule_id: str) -> None:
    """A rule never reads a key its scanner does not fill, so it cannot silently pass."""
    rule = CATALOG.rules[rule_id]
    spec = SPECS_BY_TYPE[rule.resource_type]
    enriched = spec.enrich_keys()
    listed_keys = {k for ex in rule.examples.fail + rule.examples.pass_ for k in ex}
    assert rule.keys() <= enriched | listed_keys, rule.keys() - enriched - listed_keys


@pytest.mark.parametrize("rule_id", HOST_RULES)
def test_host_rule_reads_only_keys_the_host_scanner_fills(rule_id: str) -> None:
    """A host rule reads only keys its host scanner documents (and fills), never a typo that
    would leave it silently passing."""
    rule = CATALOG.rules[rule_id]
    documented = set(HOST_TYPES[rule.resource_type])
    assert rule.keys() <= documented, rule.keys() - documented


def test_every_aws_rule_has_a_moto_fixture() -> None:
    """Every AWS rule is exercised against moto, or says which side moto cannot build."""
    missing = sorted(set(AWS_RULES) - set(FIXTURES))
    assert not missing
    stale = sorted(set(FIXTURES) - set(AWS_RULES))
    assert not stale


def test_every_collected_type_is_used_by_a_rule() -> None:
    """No resource type is collected (and paid for in API calls) without a rule reading it."""
    used = {r.resource_type for r in CATALOG.rules.values()}
    assert {s.type for s in SPECS} <= used


def test_every_rule_cites_each_framework_it_maps() -> None:
    """A rule's crosswalk names only controls that exist in the framework files."""
    for rule in CATALOG.rules.values():
        for fw, control in rule.controls():
            assert control in CATALOG.frameworks[fw].controls, (rule.id, fw, control)
