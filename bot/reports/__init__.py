"""Framework reports: the report as data (`model`), drawn as Markdown, JSON, CSV or HTML, and
as PDF from the HTML (`pdf`, an optional extra)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.reports.html import to_html
from bot.reports.model import TREND_POINTS, FrameworkReport, build_report
from bot.reports.render import to_csv, to_json, to_markdown
from bot.settings import Settings
from ledger.history import first_scan_at
from rules.catalog import Catalog
from rules.tasks import Task

RENDERERS: dict[str, Callable[[FrameworkReport], str]] = {
    "md": to_markdown,
    "json": to_json,
    "csv": to_csv,
    "html": to_html,
}
# Formats that draw the posture over time (the others show the instant alone).
WITH_TREND = ("html", "json", "pdf")
TREND_DAYS = 365  # the trend goes back to the first scan, at most this far


def _build(
    *,
    session: Session,
    settings: Settings,
    catalog: Catalog,
    tasks: Sequence[Task],
    framework: str,
    fmt: str,
    at: datetime,
    now: datetime,
    account: str | None,
) -> FrameworkReport:
    first = first_scan_at(session=session)
    return build_report(
        session=session,
        catalog=catalog,
        framework=framework,
        at=at,
        now=now,
        account=account,
        tasks=tasks if settings.calendar.enabled else (),
        sla_days={str(k): v for k, v in settings.calendar.sla_days.items()},
        trend_points=TREND_POINTS if fmt in WITH_TREND else 0,
        trend_from=None if first is None else max(first, at - timedelta(days=TREND_DAYS)),
    )


def make_report(
    *,
    session: Session,
    settings: Settings,
    catalog: Catalog,
    tasks: Sequence[Task],
    framework: str,
    fmt: str,
    at: datetime,
    now: datetime,
    account: str | None = None,
) -> str:
    """The report of `framework` at `at` in text format `fmt` (a RENDERERS key), as the CLI and
    Slack make it: the calendar's SLA days, the trend (html, json) from the first scan or a year
    back."""
    report = _build(
        session=session,
        settings=settings,
        catalog=catalog,
        tasks=tasks,
        framework=framework,
        fmt=fmt,
        at=at,
        now=now,
        account=account,
    )
    return RENDERERS[fmt](report)


def make_document(
    *,
    session: Session,
    settings: Settings,
    catalog: Catalog,
    tasks: Sequence[Task],
    framework: str,
    fmt: str,
    at: datetime,
    now: datetime,
    account: str | None = None,
) -> str | bytes:
    """make_report, or for `fmt` "pdf" the PDF's bytes (PdfUnavailableError without the extra)."""
    report = _build(
        session=session,
        settings=settings,
        catalog=catalog,
        tasks=tasks,
        framework=framework,
        fmt=fmt,
        at=at,
        now=now,
        account=account,
    )
    if fmt != "pdf":
        return RENDERERS[fmt](report)
    from bot.reports.pdf import to_pdf

    return to_pdf(report)


__all__ = ["RENDERERS", "FrameworkReport", "build_report", "make_document", "make_report"]
