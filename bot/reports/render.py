"""A framework report as Markdown, JSON (docs/report-schema.md) or CSV; every value from the
ledger or a catalog file escaped for the medium it goes to."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from typing import Any

from bot.reports.model import STATUSES, ControlReport, FrameworkReport
from integrations.markup import markdown, one_line

SCHEMA_VERSION = "1"
# The most failing resources or acceptances a Markdown or HTML report lists under one control;
# the CSV and the JSON list them all.
LISTED = 50


def md(value: str) -> str:
    """A name or value on its one line of the report, as Markdown text."""
    return markdown(one_line(value, 1000), mid_line=True)


def md_start(value: str) -> str:
    """A value that begins a list item's text, where "1." or "-" would open a nested list."""
    return markdown(one_line(value, 1000))


def day(at: datetime | date | None) -> str:
    """A date as the reports show it; "-" for none."""
    if at is None:
        return "-"
    if isinstance(at, datetime):
        at = at.astimezone(UTC)
    return f"{at:%Y-%m-%d}"


def minute(at: datetime) -> str:
    """An instant to the minute, UTC."""
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def iso(at: datetime | None) -> str | None:
    """An instant as ISO 8601 UTC with a Z, as every JSON document of ours writes it."""
    return None if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def days(value: float | None) -> str:
    """A mean number of days, or "-" when nothing was remediated."""
    return "-" if value is None else f"{value:g}"


def header_lines(report: FrameworkReport) -> list[str]:
    """What the report is about, as sentences (Markdown-escaped)."""
    last = report.last_scan
    lines = [
        f"Generated {minute(report.generated_at)} by compliancebot"
        + (
            f"; last scan #{last.id} ({md(last.status)}, {minute(last.finished_at)})."
            if last
            else "; no scan has run yet."
        )
    ]
    if report.at != report.generated_at:
        lines.append(
            f"As of {minute(report.at)}: rebuilt from the finding history and the task record."
        )
    if report.account is not None:
        lines.append(f"Findings of AWS account {md(report.account)} only.")
    lines.append(f"Framework version: {md(report.version)}.")
    return lines


def _resource(x: Any) -> str:
    """A resource's id (and name), first on its list item."""
    name = f" ({md(x.resource_name)})" if x.resource_name else ""
    return f"{md_start(x.resource_id)}{name}"


def to_markdown(report: FrameworkReport) -> str:
    """The report as Markdown: names, titles and values escaped (`md`), so a hostile name in a
    catalog file or an AWS tag shows as its characters."""
    lines = [f"# {md(report.name)} compliance report", "", *header_lines(report), ""]
    lines += [
        f"**{report.count('failing')} failing, {report.count('passing')} passing, "
        f"{report.count('not_covered')} not covered by an automated rule.**",
        "",
        "## Summary",
        "",
        f"- Posture score: {'-' if report.score is None else f'{report.score:g}%'} of the "
        f"controls with automated rules are not failing ({report.count('accepted')} of them "
        f"by an accepted risk); {report.count('task')} covered by administrative tasks.",
        f"- Open findings: {report.open_findings}",
    ]
    for s in report.severities:
        sla = f"SLA {s.sla_days} days" if s.sla_days is not None else "no SLA"
        lines.append(
            f"  - {s.severity}: {s.open} open, {s.remediated} remediated in "
            f"{days(s.mean_days_to_remediate)} days on average; {sla}: {s.breaches_open} open "
            f"past it, {s.breaches_resolved} resolved late"
        )
    lines += ["", "## Failing controls", ""]
    failing = [c for c in report.controls if c.status == "failing"]
    if not failing:
        lines.append("None.")
    for c in failing:
        lines.append(
            f"- **{md(c.control)}** {md(c.title)}: {len(c.failing)} finding(s) since "
            f"{day(c.failing_since)}; failing rules: {md(', '.join(c.failing_rules))}"
        )
        for x in c.failing[:LISTED]:
            late = "; past its SLA" if x.sla_breached else ""
            lines.append(
                f"  - {md_start(x.severity)} {md(x.resource_id)}"
                + (f" ({md(x.resource_name)})" if x.resource_name else "")
                + f" in {md(x.account)}/{md(x.region)} "
                f"({md(x.rule_id)}, {md(x.status)}), first seen {day(x.first_seen)}{late}"
            )
        lines += _more(c.failing)
    lines += ["", "## Accepted risk", ""]
    accepted = [c for c in report.controls if c.accepted]
    if not accepted:
        lines.append("None.")
    for c in accepted:
        lines.append(f"- **{md(c.control)}** {md(c.title)}: {len(c.accepted)} accepted")
        for a in c.accepted[:LISTED]:
            lines.append(
                f"  - {_resource(a)} ({md(a.rule_id)}): accepted by {md(a.accepted_by or '-')} "
                f"until {day(a.until)}: {md(a.reason or '-')}"
            )
        lines += _more(c.accepted)
    lines += ["", "## Passing controls", ""]
    lines += [
        f"- **{md(c.control)}** {md(c.title)} (rules: {md(', '.join(c.rules))})"
        for c in report.controls
        if c.status == "passing"
    ] or ["None."]
    lines += ["", "## Covered by administrative tasks", ""]
    tasked = [c for c in report.controls if c.tasks]
    if not tasked:
        lines.append("None.")
    for c in tasked:
        lines.append(f"- **{md(c.control)}** {md(c.title)} ({STATUSES[c.status]})")
        lines += [f"  - {task_line(t)}" for t in c.tasks]
    lines += ["", "## Not covered by automated rules", ""]
    lines += [f"- **{md(c.control)}** {md(c.title)}" for c in report.controls if not c.rules] or [
        "None."
    ]
    return "\n".join(lines) + "\n"


def task_line(t: Any) -> str:
    """One task under a control, Markdown-escaped."""
    if t.completed_at is None:
        done = "never completed"
    else:
        timing = "on time" if t.on_time else "late"
        done = (
            f"last completed {day(t.completed_at)} by {md(t.completed_by or '-')} "
            f"(due {day(t.due_on)}, {timing})"
        )
    overdue = f"; {t.overdue} overdue" if t.overdue else ""
    return f"{md_start(t.title)} ({md(t.task_id)}): {done}{overdue}"


def _more(items: tuple[Any, ...]) -> list[str]:
    if len(items) <= LISTED:
        return []
    return [f"  - and {len(items) - LISTED} more (the CSV and JSON formats list them all)"]


# ---- JSON ------------------------------------------------------------------------------------


def to_document(report: FrameworkReport) -> dict[str, Any]:
    """The report as the JSON document described in docs/report-schema.md."""
    last = report.last_scan
    return {
        "schema_version": SCHEMA_VERSION,
        "framework": {"id": report.framework, "name": report.name, "version": report.version},
        "at": iso(report.at),
        "generated_at": iso(report.generated_at),
        "account": report.account,
        "last_scan": None
        if last is None
        else {"id": last.id, "status": last.status, "finished_at": iso(last.finished_at)},
        "summary": {
            "score": report.score,
            "controls": {status: report.count(status) for status in STATUSES},
            "open_findings": report.open_findings,
            "severities": [
                {
                    "severity": s.severity,
                    "open": s.open,
                    "remediated": s.remediated,
                    "mean_days_to_remediate": s.mean_days_to_remediate,
                    "sla_days": s.sla_days,
                    "breaches_open": s.breaches_open,
                    "breaches_resolved": s.breaches_resolved,
                }
                for s in report.severities
            ],
        },
        "trend": [
            {
                "at": iso(p.at),
                "score": p.score,
                "failing_controls": p.failing_controls,
                "open_by_severity": dict(p.open_by_severity),
            }
            for p in report.trend
        ],
        "controls": [_control_json(c) for c in report.controls],
    }


def _control_json(c: ControlReport) -> dict[str, Any]:
    return {
        "control": c.control,
        "title": c.title,
        "section": c.section,
        "status": c.status,
        "rules": list(c.rules),
        "failing_rules": list(c.failing_rules),
        "failing_since": iso(c.failing_since),
        "failing": [
            {
                "finding_id": x.finding_id,
                "rule_id": x.rule_id,
                "severity": x.severity,
                "account": x.account,
                "region": x.region,
                "resource_type": x.resource_type,
                "resource_id": x.resource_id,
                "resource_name": x.resource_name,
                "status": x.status,
                "first_seen": iso(x.first_seen),
                "open_since": iso(x.open_since),
                "sla_breached": x.sla_breached,
            }
            for x in c.failing
        ],
        "accepted": [
            {
                "finding_id": a.finding_id,
                "rule_id": a.rule_id,
                "severity": a.severity,
                "account": a.account,
                "region": a.region,
                "resource_id": a.resource_id,
                "resource_name": a.resource_name,
                "accepted_by": a.accepted_by,
                "reason": a.reason,
                "until": iso(a.until),
            }
            for a in c.accepted
        ],
        "tasks": [
            {
                "task_id": t.task_id,
                "title": t.title,
                "last_completed_at": iso(t.completed_at),
                "completed_by": t.completed_by,
                "due_on": None if t.due_on is None else t.due_on.isoformat(),
                "on_time": t.on_time,
                "overdue": t.overdue,
            }
            for t in c.tasks
        ],
    }


def to_json(report: FrameworkReport) -> str:
    """The JSON document, indented, with a final newline."""
    return json.dumps(to_document(report), indent=2, ensure_ascii=False) + "\n"


# ---- CSV -------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "framework",
    "at",
    "control",
    "title",
    "section",
    "status",
    "rules",
    "row",  # failing, accepted, or empty: the control alone
    "finding_id",
    "rule_id",
    "severity",
    "account",
    "region",
    "resource_type",
    "resource_id",
    "resource_name",
    "finding_status",
    "first_seen",
    "open_since",
    "sla_breached",
    "accepted_by",
    "accepted_until",
    "accepted_reason",
)
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> str:
    """A value as a CSV cell a spreadsheet shows as text: a formula start gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def to_csv(report: FrameworkReport) -> str:
    """One row per control and failing (or risk-accepted) resource; a control with neither has
    one row of its own."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    at = iso(report.at)
    for c in report.controls:
        head = [report.framework, at, c.control, c.title, c.section, c.status, " ".join(c.rules)]
        rows: list[list[object]] = []
        for x in c.failing:
            rows.append(
                [
                    "failing",
                    x.finding_id,
                    x.rule_id,
                    x.severity,
                    x.account,
                    x.region,
                    x.resource_type,
                    x.resource_id,
                    x.resource_name,
                    x.status,
                    iso(x.first_seen),
                    iso(x.open_since),
                    "yes" if x.sla_breached else "no",
                    None,
                    None,
                    None,
                ]
            )
        for a in c.accepted:
            rows.append(
                [
                    "accepted",
                    a.finding_id,
                    a.rule_id,
                    a.severity,
                    a.account,
                    a.region,
                    None,
                    a.resource_id,
                    a.resource_name,
                    "accepted",
                    None,
                    None,
                    None,
                    a.accepted_by,
                    iso(a.until),
                    a.reason,
                ]
            )
        for row in rows or [[None] * (len(CSV_COLUMNS) - len(head))]:
            writer.writerow([cell(v) for v in (*head, *row)])
    return buffer.getvalue()
