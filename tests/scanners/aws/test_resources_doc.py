"""docs/resources.md is what scanners/aws/docs.py renders from the specs, never hand-edited."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scanners.aws.docs import DOC_PATH, REGENERATE, main, render
from scanners.aws.spec import Derive, Enrich, ResourceSpec
from scanners.aws.specs import SPECS


def test_resources_doc_is_what_the_specs_generate() -> None:
    """A reader of docs/resources.md sees exactly the types and keys the scanner collects."""
    assert DOC_PATH.read_text(encoding="utf-8") == render(), (
        f"{DOC_PATH} is out of date with scanners/aws/specs.py; regenerate it with {REGENERATE}"
    )


def test_every_collected_type_and_key_is_listed() -> None:
    """Each resource type and each enriched or derived key has its line in the page."""
    text = render()
    for spec in SPECS:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{spec.type}` |"))
        for key in sorted(spec.enrich_keys()):
            assert f"`{key}` (" in row, (spec.type, key)


def test_a_new_spec_appears_with_its_calls_without_touching_the_generator() -> None:
    """Adding a resource type to the specs is enough for the page to describe it."""
    spec = ResourceSpec(
        type="aws.example.widget",
        service="example",
        scope="regional",
        operation="list_widgets",
        result="Widgets",
        id="WidgetId",
        enrich=(
            Enrich("Detail", "describe_widget", params={"Id": "WidgetId"}),
            Enrich("Peers", service="other", custom=lambda _ctx, _res: []),
            Enrich("Audit", "get_audit", service="audit"),
        ),
        derive=(Derive("Parents", "aws.example.parent", (), fn=lambda _r: []),),
    )
    (row,) = [line for line in render([spec]).splitlines() if line.startswith("| `aws.")]
    assert row == (
        "| `aws.example.widget` | regional | `example.list_widgets` | `WidgetId` | "
        "`Detail` (example.describe_widget)<br>`Peers` (composite)<br>"
        "`Audit` (audit.get_audit)<br>`Parents` (derived from aws.example.parent) |"
    )


def test_a_pipe_in_a_spec_does_not_break_the_table() -> None:
    """A JMESPath pipe in an id keeps the row's five columns."""
    spec = ResourceSpec(
        type="aws.example.pipe", service="ex", scope="global", operation="ls", id="Items | [0]"
    )
    (row,) = [line for line in render([spec]).splitlines() if line.startswith("| `aws.")]
    assert "`Items \\| [0]`" in row
    assert row.replace("\\|", "").count("|") == 6


def test_check_mode_fails_on_a_stale_page_and_names_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--check` exits 1 on a stale page and says how to regenerate; a plain run fixes it."""
    page = tmp_path / "resources.md"
    page.write_text("# hand-edited\n", encoding="utf-8")
    assert main(["--check", "--path", str(page)]) == 1
    assert "make docs" in capsys.readouterr().err
    assert main(["--path", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == render()
    assert main(["--check", "--path", str(page)]) == 0


def test_generator_imports_nothing_from_the_layers_above() -> None:
    """The scanner package stays usable on its own: the generator loads no rules/bot code."""
    probe = (
        "import sys, scanners.aws.docs; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'rules', 'ledger', 'integrations', 'bot'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
