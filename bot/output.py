"""How findings leave the program: the stable JSON schema, OCSF events, terminal tables."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ledger.models import Finding

# The OCSF mapping lives in ledger/ (the event stream builds it inside the change's
# transaction); re-exported here, where `findings --format ocsf` has always found it.
# The `x as x` form is the explicit re-export mypy strict asks for (no implicit re-exports).
from ledger.ocsf import OCSF_VERSION as OCSF_VERSION  # noqa: PLC0414
from ledger.ocsf import ocsf_event as ocsf_event  # noqa: PLC0414
from ledger.queries import Posture
from rules.catalog import Catalog, Rule

JSON_SCHEMA_VERSION = "1"
_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


# ---- the terminal ------------------------------------------------------------------------------

# C0 and C1 controls but newline (an ESC sequence in an AWS tag can clear the screen, set the
# window title or forge lines; a tab breaks a table row), and the bidirectional overrides that
# reorder what is shown.
_TERMINAL_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """Text for a terminal: control characters shown as escapes (`\\x1b`), never acted on."""
    return _TERMINAL_UNSAFE.sub(lambda m: repr(m.group())[1:-1], text)


class PlainConsole(Console):
    """A rich console that prints every string as it is: the terminal's escaping, in one place.

    Strings hold data from AWS, Slack, trackers and files, so none is read as rich markup (`[/]`
    in a tag crashes the print, `[link=…]` restyles it) or `:emoji:` codes, whatever a caller
    passes, and control characters are shown, not sent. Style is given explicitly: `style=`, a
    `Text`, or `styled()`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, emoji=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        """Every str printed, in a table cell or a title, is rendered here: as plain text."""
        kwargs.update(markup=False, emoji=False)
        return super().render_str(terminal_safe(text), **kwargs)


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line from plain parts and (text, style) parts; every part is printed as it is."""
    line = Text()
    for part in parts:
        text, style = (part, "") if isinstance(part, str) else part
        line.append(terminal_safe(text), style=style)
    return line


# ---- documents ---------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _ms(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value else None


def finding_json(finding: Finding, rule: Rule | None) -> dict[str, Any]:
    """One finding in the documented JSON schema (docs/json-schema.md, version 1)."""
    return {
        "id": finding.id,
        "fingerprint": finding.fingerprint,
        "rule_id": finding.rule_id,
        "title": finding.title,
        "severity": finding.severity,
        "status": finding.status,
        "resource_type": finding.resource_type,
        "resource_id": finding.resource_id,
        "resource_name": finding.resource_name,
        "account": finding.account,
        "region": finding.region,
        "detail": finding.detail,
        "evidence": finding.evidence,
        "first_seen": _iso(finding.first_seen),
        "last_seen": _iso(finding.last_seen),
        "assignee": finding.assignee,
        "accepted_until": _iso(finding.accepted_until),
        "controls": {fw: list(ids) for fw, ids in rule.frameworks.items()} if rule else {},
        "remediation": rule.remediation.text if rule else None,
    }


def findings_document(
    findings: list[Finding], catalog: Catalog, scan: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The top-level JSON document: schema version, optional scan summary, findings."""
    rules = {**catalog.disabled, **catalog.rules}
    doc: dict[str, Any] = {"schema_version": JSON_SCHEMA_VERSION}
    if scan is not None:
        doc["scan"] = scan
    doc["findings"] = [finding_json(f, rules.get(f.rule_id)) for f in findings]
    return doc


def findings_table(console: Console, findings: list[Finding], *, title: str) -> None:
    """A terminal table of findings."""
    table = Table(title=title, show_lines=False, expand=False)
    for name in ("ID", "Severity", "Status", "Rule", "Resource", "Account / Region", "Last seen"):
        table.add_column(name, overflow="fold")
    for f in findings:
        table.add_row(
            str(f.id),
            styled((f.severity, _STYLE.get(f.severity, ""))),
            f.status,
            f.rule_id,
            f.resource_name or f.resource_id,
            f"{f.account} / {f.region}",
            f"{f.last_seen:%Y-%m-%d %H:%M}",
        )
    console.print(table)


def posture_table(console: Console, state: Posture) -> None:
    """Per-framework posture and open findings by severity."""
    table = Table(title="Compliance posture")
    for name in ("Framework", "Controls failing", "passing", "not covered", "Failing controls"):
        table.add_column(name, overflow="fold")
    for fw in state.frameworks:
        failing = [c.control for c in fw.controls if c.state == "failing"]
        shown = ", ".join(failing[:8]) + (f" (+{len(failing) - 8})" if len(failing) > 8 else "")
        table.add_row(
            fw.name,
            styled((str(fw.count("failing")), "red")),
            styled((str(fw.count("passing")), "green")),
            str(fw.count("not_covered")),
            shown,
        )
    console.print(table)
    line = styled("Open findings by severity: ")
    for s, n in state.open_by_severity.items():
        line.append_text(styled((f"{s}: {n}", _STYLE.get(s, "")), "  "))
    line.append_text(styled(f" accepted risks: {state.accepted}"))
    console.print(line)
    if state.last_scan is not None:
        scan = state.last_scan
        console.print(
            f"Last scan: #{scan.id} {scan.status} at "
            f"{scan.finished_at:%Y-%m-%d %H:%M} UTC, {scan.resources} resources, "
            f"{scan.api_calls} API calls, {scan.error_count} errors"
        )
    else:
        console.print("No scan yet: run `compliancebot scan`.")


def remediation_command(command: str, finding: Finding) -> str:
    """A rule's remediation CLI with the finding's resource, region and account filled in.

    Plain replacement, not str.format: a JSON body in a command may hold other braces.
    """
    for name, value in (
        ("resource_id", finding.resource_id),
        ("region", finding.region),
        ("account", finding.account),
    ):
        command = command.replace("{" + name + "}", value)
    return command
