"""Rule-file mistakes: every one is reported with file, line and field, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.catalog import Severity, load_catalog, validate_paths
from rules.errors import CatalogError

GOOD = """\
id: {id}
title: Example volumes are encrypted
severity: high
resource_type: aws.ec2.volume
rationale: Because.
remediation:
  text: Encrypt it.
frameworks:
  soc2: [CC6.1]
condition:
  key: Encrypted
  op: "false"
examples:
  pass: [{{Encrypted: true}}]
  fail: [{{Encrypted: false}}]
"""


def write(tmp_path: Path, text: str, name: str = "my_rule") -> Path:
    folder = tmp_path / "custom"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def error_for(path: Path) -> str:
    with pytest.raises(CatalogError) as info:
        validate_paths([path])
    return str(info.value)


def test_valid_user_rule_loads(tmp_path: Path) -> None:
    """A well-formed custom rule validates and joins the catalog from rules.paths."""
    path = write(tmp_path, GOOD.format(id="my_rule"))
    assert [r.id for r in validate_paths([path])] == ["my_rule"]
    catalog = load_catalog(extra_paths=[path.parent])
    assert "my_rule" in catalog.rules


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("severity: high", "severity: urgent"), ":3: severity: Input should be"),
        (("title: Example", "titel: Example"), ":2: titel: unknown field"),
        (
            ("  soc2: [CC6.1]", "  soc2: [CC99.9]"),
            ":9: frameworks.soc2[0]: unknown soc2 control 'CC99.9'",
        ),
        (("  soc2: [CC6.1]", "  iso: [A.1]"), ":9: frameworks.iso: unknown framework 'iso'"),
        (("aws.ec2.volume", "aws.ec2.volum"), ":4: resource_type: unknown resource type"),
        (('  op: "false"', "  op: falsy"), ":12: condition.op: unknown operator 'falsy'"),
        (("id: my_rule", "id: other_rule"), ":1: id: id 'other_rule' must match the file name"),
        (("rationale: Because.\n", ""), "rationale: required field is missing"),
        (("  key: Encrypted", "  key: Encrypted\n  key: Again"), ":12: key 'key' appears twice"),
        (("title: Example", "title: [unclosed"), "not valid YAML"),
    ],
)
def test_rule_errors_name_file_line_and_field(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    """Each typo is pinned to its line so the author fixes it in one go."""
    text = GOOD.format(id="my_rule").replace(*edit)
    path = write(tmp_path, text)
    message = error_for(path)
    assert message.startswith(str(path))
    assert expected in message


def test_example_that_contradicts_its_label_is_caught() -> None:
    """Built-in rules document their own pass/fail examples (checked by the meta-tests)."""
    catalog = load_catalog()
    rule = catalog.rules["ec2_volume_encrypted"]
    assert rule.examples.fail
    assert rule.examples.pass_


def test_overrides_disable_and_reseverity_without_forking() -> None:
    """Users switch off a built-in rule or change its severity from config."""
    catalog = load_catalog(
        disabled=["ec2_volume_encrypted"],
        severity_overrides={"ec2_sg_ssh_open_to_world": Severity.critical},
    )
    assert "ec2_volume_encrypted" not in catalog.rules
    assert catalog.rules["ec2_sg_ssh_open_to_world"].severity is Severity.critical


def test_override_of_unknown_rule_is_an_error() -> None:
    """A misspelt rule id in rules.disabled is reported, not silently ignored."""
    with pytest.raises(
        CatalogError, match=r"rules.disabled: unknown rule id 'ec2_volume_encryptd'"
    ):
        load_catalog(disabled=["ec2_volume_encryptd"])


def test_missing_rule_directory_is_an_error(tmp_path: Path) -> None:
    """A rules.paths entry that does not exist is named in the error."""
    with pytest.raises(CatalogError, match="rule directory does not exist"):
        load_catalog(extra_paths=[tmp_path / "nope"])
