"""Hostile rule and task files: refused with one `file:line: what` error, in bounded memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.catalog import load_catalog, validate_paths
from rules.errors import CatalogError
from rules.tasks import load_tasks
from rules.yamlfile import parse_yaml
from tests.fakes.hostile_files import HOSTILE, Hostile, hostile_cases

FRAMEWORKS = load_catalog().frameworks


def assert_located(message: str, path: Path, case: Hostile) -> None:
    """One line, starting with the file (and line), saying what is wrong."""
    where = f"{path}:{case.line}: " if case.line else f"{path}: "
    assert message.startswith(where), message
    assert case.says in message
    assert "\n" not in message


@hostile_cases
def test_a_hostile_rule_file_in_rules_paths_is_one_located_error(tmp_path: Path, case: str) -> None:
    """A rule directory holding a bomb, a device or garbage fails with file:line, not a crash."""
    folder = tmp_path / "custom"
    folder.mkdir()
    path = folder / "evil_rule.yaml"
    HOSTILE[case].make(path)

    with pytest.raises(CatalogError) as caught:
        load_catalog(extra_paths=[folder])

    assert_located(str(caught.value), path, HOSTILE[case])


# A directory given to `rules validate` is a folder of rules, which is fine.
@pytest.mark.parametrize("case", [c for c in HOSTILE if c != "a directory"])
def test_rules_validate_refuses_a_hostile_file_named_directly(tmp_path: Path, case: str) -> None:
    """`rules validate FILE` on a hostile file names it and what is wrong with it."""
    path = tmp_path / "evil_rule.yaml"
    HOSTILE[case].make(path)

    with pytest.raises(CatalogError) as caught:
        validate_paths([path])

    assert_located(str(caught.value), path, HOSTILE[case])


@hostile_cases
def test_a_hostile_task_file_is_one_located_error(tmp_path: Path, case: str) -> None:
    """A task directory holding a bomb, a device or garbage fails with file:line, not a crash."""
    (tmp_path / "tasks").mkdir()
    path = tmp_path / "tasks" / "evil_task.yaml"
    HOSTILE[case].make(path)

    with pytest.raises(CatalogError) as caught:
        load_tasks(frameworks=FRAMEWORKS, extra_paths=[tmp_path], include_builtin=False)

    assert_located(str(caught.value), path, HOSTILE[case])


def test_aliases_and_merge_keys_within_the_limits_still_work() -> None:
    """Anchors, aliases and `<<:` merges, as people share settings, load as before."""
    doc = parse_yaml(
        "base: &base {regions: [us-east-1], profile: audit}\n"
        "targets:\n"
        "  - {<<: *base, name: prod}\n"
        "  - {<<: *base, name: staging, regions: [eu-west-1]}\n",
        "c.yaml",
    )

    assert doc.data["targets"] == [
        {"regions": ["us-east-1"], "profile": "audit", "name": "prod"},
        {"regions": ["eu-west-1"], "profile": "audit", "name": "staging"},
    ]
    assert doc.line_of(("targets", 1, "name")) == 4


def test_an_alias_that_pushes_nesting_past_the_limit_is_refused_where_it_is() -> None:
    """Depth counts through aliases: a shallow alias to a deep value is refused at the alias."""
    deep = "[" * 40 + "]" * 40
    with pytest.raises(CatalogError) as caught:
        parse_yaml(f"a: &a {deep}\nb: {'[' * 20}*a{']' * 20}\n", "c.yaml")

    assert str(caught.value).startswith("c.yaml:2: nested more than 50 levels deep")


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("a: 1\n---\nb: 2\n", 2, "expected a single document"),
        ("a: 2024-13-45\n", 1, "'2024-13-45' cannot be read: month must be in 1..12"),
        ("on: true\n", 1, "key on is read as true/false, not a name: quote it ('on')"),
        ("~: 1\n", 1, "key ~ is read as null"),
        ("a: [" + "1," * 20_001 + "1]\n", 1, "more than 20000 values"),
    ],
)
def test_malformed_yaml_is_a_located_error_never_a_traceback(
    text: str, line: int, says: str
) -> None:
    """Two documents, dates that do not exist, YAML 1.1 booleans as keys: each a file:line error."""
    with pytest.raises(CatalogError) as caught:
        parse_yaml(text, "f.yaml")

    assert str(caught.value).startswith(f"f.yaml:{line}: "), str(caught.value)
    assert says in str(caught.value)
