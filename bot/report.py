"""The per-framework report: which controls pass, fail (why, since when) or are not covered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from integrations.markup import markdown, one_line
from ledger.queries import posture
from rules.catalog import Catalog


def md(value: str) -> str:
    """A name or title from a framework file, on its one line of the report, as Markdown text."""
    return markdown(one_line(value, 1000), mid_line=True)


def framework_report(*, session: Session, catalog: Catalog, framework: str, now: datetime) -> str:
    """The report of one framework as Markdown; names and titles from files are escaped (`md`)."""
    state = posture(session=session, catalog=catalog, now=now, frameworks=[framework])
    fw = state.frameworks[0]
    meta = catalog.require_framework(framework)
    last = state.last_scan
    lines = [
        f"# {md(fw.name)} compliance report",
        "",
        f"Generated {now:%Y-%m-%d %H:%M} UTC by compliancebot"
        + (
            f"; last scan #{last.id} ({md(last.status)}, {last.finished_at:%Y-%m-%d %H:%M} UTC)."
            if last and last.finished_at
            else "; no scan has run yet."
        ),
        f"Framework version: {md(str(meta.version))}.",
        "",
        f"**{fw.count('failing')} failing, {fw.count('passing')} passing, "
        f"{fw.count('not_covered')} not covered by an automated rule.**",
        "",
        "## Failing controls",
        "",
    ]
    failing = [c for c in fw.controls if c.state == "failing"]
    if not failing:
        lines.append("None.")
    for c in failing:
        since = f"{c.since:%Y-%m-%d}" if c.since else "-"
        lines.append(
            f"- **{md(c.control)}** {md(c.title)}: {c.failing_findings} finding(s) since "
            f"{since}; failing rules: {md(', '.join(c.failing_rules))}"
        )
    lines += ["", "## Passing controls", ""]
    passing = [c for c in fw.controls if c.state == "passing"]
    lines += [
        f"- **{md(c.control)}** {md(c.title)} (rules: {md(', '.join(c.rules))})" for c in passing
    ] or ["None."]
    lines += ["", "## Not covered by automated rules", ""]
    lines += [
        f"- **{md(c.control)}** {md(c.title)}" for c in fw.controls if c.state == "not_covered"
    ] or ["None."]
    return "\n".join(lines) + "\n"
