"""The per-framework report: which controls pass, fail (why, since when) or are not covered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from ledger.queries import posture
from rules.catalog import Catalog


def framework_report(*, session: Session, catalog: Catalog, framework: str, now: datetime) -> str:
    """The report of one framework as Markdown."""
    state = posture(session=session, catalog=catalog, now=now, frameworks=[framework])
    fw = state.frameworks[0]
    meta = catalog.require_framework(framework)
    last = state.last_scan
    lines = [
        f"# {fw.name} compliance report",
        "",
        f"Generated {now:%Y-%m-%d %H:%M} UTC by compliancebot"
        + (
            f"; last scan #{last.id} ({last.status}, {last.finished_at:%Y-%m-%d %H:%M} UTC)."
            if last and last.finished_at
            else "; no scan has run yet."
        ),
        f"Framework version: {meta.version}.",
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
            f"- **{c.control}** {c.title}: {c.failing_findings} finding(s) since {since}; "
            f"failing rules: {', '.join(c.failing_rules)}"
        )
    lines += ["", "## Passing controls", ""]
    passing = [c for c in fw.controls if c.state == "passing"]
    lines += [f"- **{c.control}** {c.title} (rules: {', '.join(c.rules)})" for c in passing] or [
        "None."
    ]
    lines += ["", "## Not covered by automated rules", ""]
    lines += [f"- **{c.control}** {c.title}" for c in fw.controls if c.state == "not_covered"] or [
        "None."
    ]
    return "\n".join(lines) + "\n"
