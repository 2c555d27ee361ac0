"""The per-framework report as Markdown (what `/compliance report` uploads): which controls
pass, fail (why, since when), are risk-accepted, or are not covered. See bot/reports/."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from bot.reports.model import build_report
from bot.reports.render import md, to_markdown
from rules.catalog import Catalog
from rules.tasks import Task

__all__ = ["framework_report", "md"]


def framework_report(
    *,
    session: Session,
    catalog: Catalog,
    framework: str,
    now: datetime,
    tasks: Sequence[Task] = (),
    sla_days: Mapping[str, int] | None = None,
) -> str:
    """The report of one framework now, as Markdown; names and titles from files are escaped."""
    report = build_report(
        session=session,
        catalog=catalog,
        framework=framework,
        at=now,
        now=now,
        tasks=tasks,
        sla_days=sla_days,
        trend_points=0,
    )
    return to_markdown(report)
