"""docs/resources.md rendered from the specs, so the page cannot drift from what is collected.

Regenerate with `make docs` (or `python -m scanners.aws.docs`); `--check` only compares.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from scanners.aws.spec import Derive, Enrich, ResourceSpec
from scanners.aws.specs import SPECS

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "resources.md"
REGENERATE = "make docs  (or: python -m scanners.aws.docs)"

_HEADER = """\
# Collected AWS resource types

Generated from `scanners/aws/specs.py`. A resource's `data` is the listing item as boto3 returns
it (see the AWS API reference for the operation; reshaped to the per-resource shape where one
account-wide listing replaces per-resource calls, as for IAM users and policies) plus the
enriched keys below; a scan keeps only the keys its rules read. Rules read these with JMESPath;
see [writing-rules.md](writing-rules.md).
"""

_FOOTER = """\
Enriched keys are fetched only when an enabled rule reads them (`--rule` scans fetch only
what that rule needs). A call that fails marks its key *unknown* on that resource: rules
reading it neither raise nor resolve findings there, and the failure is a scan error.
"""

_COLUMNS = ("type", "scope", "listed by", "id", "enriched keys (call)")

# Synthetic scopes have no listing call: one resource per account / region, whose id is the
# account id / region name (see the collector).
_SYNTHETIC = {
    "account": ("(one per account)", "account id"),
    "region": ("(one per region)", "region"),
}


def _cell(text: str) -> str:
    # A pipe would end the table cell, even inside backticks.
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`"


def _source(spec: ResourceSpec, item: Enrich | Derive) -> str:
    if isinstance(item, Derive):
        return f"derived from {item.source_type}"
    if item.custom is not None:
        return "composite"
    return f"{item.service or spec.service}.{item.operation}"


def _row(spec: ResourceSpec) -> list[str]:
    if spec.scope in _SYNTHETIC:
        listed_by, id_ = _SYNTHETIC[spec.scope]
    else:
        listed_by, id_ = _code(f"{spec.service}.{spec.operation}"), spec.id
    keys: list[Enrich | Derive] = [*spec.enrich, *spec.derive]
    enriched = "<br>".join(f"{_code(k.key)} ({_source(spec, k)})" for k in keys)
    return [_code(spec.type), spec.scope, listed_by, _code(id_), enriched]


def render(specs: Iterable[ResourceSpec] = SPECS) -> str:
    """The Markdown of docs/resources.md for `specs`, in their declared order."""
    lines = [
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
        *("| " + " | ".join(_cell(c) for c in _row(spec)) + " |" for spec in specs),
    ]
    return f"{_HEADER}\n" + "\n".join(lines) + f"\n\n{_FOOTER}"


def main(argv: Sequence[str] | None = None) -> int:
    """Write docs/resources.md (or with --check, exit 1 when it is out of date)."""
    parser = argparse.ArgumentParser(prog="python -m scanners.aws.docs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    parser.add_argument("--path", type=Path, default=DOC_PATH, help="the file to write")
    args = parser.parse_args(argv)
    path: Path = args.path
    text = render()
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            stale = f"{path} is out of date with scanners/aws/specs.py; run {REGENERATE}\n"
            sys.stderr.write(stale)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
