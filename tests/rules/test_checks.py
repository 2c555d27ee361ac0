"""Python checks: written as docs/writing-rules.md says, cited by a YAML rule, errors named."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rules.catalog import Rule, load_catalog, validate_paths
from rules.conditions import CHECKS, Check, EvalContext, register_check
from rules.engine import Verdict, evaluate
from rules.errors import CatalogError
from scanners.model import Resource

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "writing-rules.md"
NOW = EvalContext(now=datetime(2026, 12, 1, tzinfo=UTC))
# The checks rules/checks.py registers: the built-in rules cite them, so a test that loads the
# catalog with the guide's example check needs them too.
BUILT_IN_CHECKS = dict(CHECKS)

RULE = """\
id: {id}
title: Security groups admit only narrow ranges
severity: high
resource_type: aws.ec2.security_group
rationale: Because.
remediation:
  text: Narrow it.
frameworks:
  soc2: [CC6.1]
{condition}
examples:
  pass: [{{IpPermissions: [{{IpRanges: [{{CidrIp: 10.0.0.0/24}}]}}]}}]
  fail: [{{IpPermissions: [{{IpRanges: [{{CidrIp: 0.0.0.0/0}}]}}]}}]
"""


def _guide_blocks(language: str) -> list[str]:
    section = GUIDE.read_text(encoding="utf-8").split("## Checks in Python", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def checks() -> Iterator[dict[str, Check]]:
    """The check registry, empty for the test and restored afterwards."""
    saved = dict(CHECKS)
    CHECKS.clear()
    try:
        yield CHECKS
    finally:
        CHECKS.clear()
        CHECKS.update(saved)


@pytest.fixture
def documented_check(checks: dict[str, Check]) -> dict[str, Check]:
    """The guide's example check, registered exactly as the guide writes it."""
    checks.update(BUILT_IN_CHECKS)
    (code,) = _guide_blocks("python")
    # The guide's own code is run as written, so the example cannot drift from the API.
    exec(compile(code, str(GUIDE), "exec"), {})  # noqa: S102 - our own documentation
    return checks


def write_rule(tmp_path: Path, condition: str, rule_id: str = "sg_narrow_ingress") -> Path:
    folder = tmp_path / "custom"
    folder.mkdir(exist_ok=True)
    path = folder / f"{rule_id}.yaml"
    path.write_text(RULE.format(id=rule_id, condition=condition.rstrip("\n")), encoding="utf-8")
    return path


def documented_condition() -> str:
    (condition,) = (b for b in _guide_blocks("yaml") if "check:" in b)
    return condition


def sg(cidr: str, *, unknown: frozenset[str] = frozenset()) -> Resource:
    data = {"GroupId": "sg-1", "IpPermissions": [{"IpRanges": [{"CidrIp": cidr}]}]}
    return Resource(
        type="aws.ec2.security_group",
        id="sg-1",
        account="111122223333",
        region="us-east-1",
        data=data,
        unknown=unknown,
    )


@pytest.mark.usefixtures("documented_check")
def test_documented_check_judges_resources_for_a_yaml_rule(tmp_path: Path) -> None:
    """A check added as the guide shows is cited by a rule in rules.paths and decides verdicts."""
    path = write_rule(tmp_path, documented_condition())
    catalog = load_catalog(extra_paths=[path.parent])
    rule: Rule = catalog.rules["sg_narrow_ingress"]
    assert evaluate(rule, sg("0.0.0.0/0"), NOW) is Verdict.failed
    assert evaluate(rule, sg("10.0.0.0/24"), NOW) is Verdict.passed
    assert evaluate(rule, sg("not-a-cidr"), NOW) is Verdict.passed
    assert [rule.condition.evaluate(e, NOW) for e in rule.examples.pass_] == [False]
    assert [rule.condition.evaluate(e, NOW) for e in rule.examples.fail] == [True]


@pytest.mark.usefixtures("documented_check")
def test_keys_a_check_declares_are_collected_and_can_be_unknown(tmp_path: Path) -> None:
    """The scanner fetches what a check reads, and a failed fetch makes the verdict unknown."""
    path = write_rule(tmp_path, documented_condition())
    catalog = load_catalog(extra_paths=[path.parent])
    rule = catalog.rules["sg_narrow_ingress"]
    assert catalog.needs([rule]) == {"aws.ec2.security_group": {"IpPermissions"}}
    unknown = frozenset({"IpPermissions"})
    assert evaluate(rule, sg("0.0.0.0/0", unknown=unknown), NOW) is Verdict.unknown


@pytest.mark.usefixtures("documented_check")
def test_unknown_check_name_names_file_line_name_and_known_checks(tmp_path: Path) -> None:
    """A misspelt check is refused where it is written, with the checks that do exist."""
    path = write_rule(tmp_path, "condition:\n  check: ingress_wider_thn\n")
    with pytest.raises(CatalogError) as info:
        validate_paths([path])
    assert str(info.value) == (
        f"{path}:11: condition.check: unknown check 'ingress_wider_thn'; "
        "known checks: bucket_policy_public, ingress_wider_than"
    )


@pytest.mark.usefixtures("checks")
def test_unknown_check_with_none_registered_says_where_checks_live(tmp_path: Path) -> None:
    """With no checks at all, the error points the author at rules/checks.py."""
    path = write_rule(tmp_path, "condition:\n  any: [{check: cidr_wide}]\n")
    # Without the built-in rules (they cite the built-in checks this test removes), so the
    # built-in frameworks are copied next to the rule.
    builtin = GUIDE.parents[1] / "rules" / "frameworks"
    (path.parent / "frameworks").mkdir()
    for framework in builtin.glob("*.yaml"):
        (path.parent / "frameworks" / framework.name).write_bytes(framework.read_bytes())
    with pytest.raises(CatalogError) as info:
        load_catalog(extra_paths=[path.parent], include_builtin=False)
    assert str(info.value) == (
        f"{path}:11: condition.any[0].check: unknown check 'cidr_wide'; "
        "no checks are registered (they live in rules/checks.py)"
    )


@pytest.mark.usefixtures("documented_check")
def test_a_check_name_that_is_not_a_string_is_a_clear_error(tmp_path: Path) -> None:
    """A list where a check name belongs is reported like a misspelling, not a crash."""
    path = write_rule(tmp_path, "condition:\n  check: [ingress_wider_than]\n")
    with pytest.raises(CatalogError, match=r":11: condition.check: unknown check \['ingress"):
        validate_paths([path])


@pytest.mark.usefixtures("documented_check")
def test_an_argument_the_check_does_not_take_is_an_error(tmp_path: Path) -> None:
    """A misspelt argument is refused instead of silently falling back to the default."""
    path = write_rule(tmp_path, "condition:\n  check: ingress_wider_than\n  args: {prefx: 8}\n")
    with pytest.raises(CatalogError) as info:
        validate_paths([path])
    assert str(info.value) == (
        f"{path}:12: condition.args.prefx: check 'ingress_wider_than' takes no argument "
        "'prefx'; it takes: prefix"
    )


def test_registering_two_checks_under_one_name_is_refused(checks: dict[str, Check]) -> None:
    """A second check with a taken name fails at import time instead of replacing the first."""

    @register_check("tagged", keys={"Tags"}, doc="has tags")
    def first(data: Any, args: Mapping[str, Any], ctx: EvalContext) -> bool:
        return bool(data.get("Tags"))

    with pytest.raises(ValueError, match="check 'tagged' is already registered"):

        @register_check("tagged", keys={"Tags"}, doc="has tags too")
        def second(data: Any, args: Mapping[str, Any], ctx: EvalContext) -> bool:
            return False

    assert checks["tagged"].fn is first


@pytest.mark.usefixtures("checks")
def test_a_check_must_declare_the_keys_it_reads() -> None:
    """A check without keys would never get its enriched data fetched: refused up front."""
    with pytest.raises(ValueError, match="declare the resource keys it reads"):
        register_check("blind", keys=set(), doc="reads nothing")


def test_loading_the_catalog_registers_rules_checks_first() -> None:
    """Whatever is registered in rules/checks.py is there before the first rule is parsed."""
    probe = textwrap.dedent(
        """
        import sys
        import rules.catalog
        print("rules.checks" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "True"
