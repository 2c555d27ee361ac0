"""Evaluate rules over collected resources: pass, fail, unknown or not applicable."""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from rules.catalog import Rule
from rules.conditions import EvalContext
from rules.detail import Detail, explain
from scanners.model import Resource


class Verdict(enum.StrEnum):
    """What one rule says about one resource."""

    passed = "pass"
    failed = "fail"
    # The data the rule reads could not be collected: neither pass nor fail.
    unknown = "unknown"
    not_applicable = "not_applicable"


def evaluate(rule: Rule, resource: Resource, ctx: EvalContext) -> Verdict:
    """The verdict of `rule` on `resource`."""
    if resource.unknown and rule.keys() & resource.unknown:
        return Verdict.unknown
    if rule.applies_to is not None and not rule.applies_to.evaluate(resource.data, ctx):
        return Verdict.not_applicable
    return Verdict.failed if rule.condition.evaluate(resource.data, ctx) else Verdict.passed


def detail(rule: Rule, resource: Resource, ctx: EvalContext) -> Detail:
    """What exactly is wrong with `resource` under `rule` (call for a failed verdict)."""
    return explain(rule.condition, rule.detail, resource.data, ctx)


@dataclass(frozen=True)
class Result:
    rule: Rule
    resource: Resource
    verdict: Verdict
    detail: Detail | None = None  # for a failed verdict


def evaluate_all(
    rules: Iterable[Rule], resources: Iterable[Resource], ctx: EvalContext
) -> list[Result]:
    """Every applicable (rule, resource) verdict; rules see only their resource type."""
    by_type: dict[str, list[Resource]] = defaultdict(list)
    for res in resources:
        by_type[res.type].append(res)
    out = []
    for rule in rules:
        for res in by_type.get(rule.resource_type, ()):
            verdict = evaluate(rule, res, ctx)
            if verdict is Verdict.failed:
                out.append(Result(rule, res, verdict, detail(rule, res, ctx)))
            elif verdict is not Verdict.not_applicable:
                out.append(Result(rule, res, verdict))
    return out
