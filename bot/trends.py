"""`compliancebot trends`: the daily posture snapshots (ledger/snapshots.py) as a table per
framework with sparklines, or as one JSON document. Pure functions over the snapshots read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from bot.output import JSON_SCHEMA_VERSION, styled
from ledger.models import PostureSnapshot
from rules.catalog import Catalog, Severity

BLOCKS = "▁▂▃▄▅▆▇█"
GAP = " "  # a day without a snapshot


def sparkline(values: Sequence[float | None], *, low: float = 0, high: float | None = None) -> str:
    """One block per value, its height scaled from `low` to `high` (default: the largest
    value); a missing value is a blank, and everything is the lowest block when the range is
    empty."""
    present = [v for v in values if v is not None]
    top = high if high is not None else max(present, default=low)
    out = []
    for v in values:
        if v is None:
            out.append(GAP)
            continue
        if top <= low:
            out.append(BLOCKS[0])
            continue
        share = (min(max(v, low), top) - low) / (top - low)
        out.append(BLOCKS[round(share * (len(BLOCKS) - 1))])
    return "".join(out)


def open_findings(row: PostureSnapshot) -> int:
    """A snapshot's open findings, every severity."""
    return sum(int(n) for n in row.open_by_severity.values())


def _series(rows: Sequence[PostureSnapshot], days: Sequence[date]) -> list[PostureSnapshot | None]:
    by_day = {r.day: r for r in rows}
    return [by_day.get(d) for d in days]


def span(*, today: date, days: int) -> list[date]:
    """The `days` days ending with `today`, oldest first."""
    return [today - timedelta(days=days - 1 - i) for i in range(days)]


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:g}%"


def print_trends(
    console: Console,
    *,
    catalog: Catalog,
    snapshots: Mapping[str, Sequence[PostureSnapshot]],
    days: Sequence[date],
) -> None:
    """Per framework: the score and open findings as sparklines, and a row per day."""
    severities = [str(s) for s in Severity]
    for framework, rows in snapshots.items():
        series = _series(rows, days)
        name = catalog.frameworks[framework].name
        console.print(styled((f"{name} ({framework})", "bold")))
        if not rows:
            console.print(f"  no snapshot from {days[0]} to {days[-1]}")
            continue
        scores = [None if r is None else r.score for r in series]
        opens = [None if r is None else float(open_findings(r)) for r in series]
        first, last = rows[0], rows[-1]
        console.print(
            f"  score     {sparkline(scores, high=100)}  "
            f"{_score(first.score)} -> {_score(last.score)}"
        )
        console.print(
            f"  open      {sparkline(opens)}  {open_findings(first)} -> {open_findings(last)}"
        )
        table = Table(show_edge=False, pad_edge=False)
        for column in ("Day", "Score", "Failing controls", *severities, "Accepted"):
            table.add_column(column, justify="left" if column == "Day" else "right")
        for day, row in zip(days, series, strict=True):
            if row is None:
                table.add_row(str(day), "-", "-", *("-" for _ in severities), "-")
                continue
            table.add_row(
                str(day),
                _score(row.score),
                str(row.failing),
                *(str(row.open_by_severity.get(s, 0)) for s in severities),
                str(row.accepted_findings),
            )
        console.print(table)


def trends_document(
    *,
    catalog: Catalog,
    snapshots: Mapping[str, Sequence[PostureSnapshot]],
    days: Sequence[date],
) -> dict[str, Any]:
    """The same as a JSON document: each framework's snapshots, one per day that has one."""
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "from": days[0].isoformat(),
        "to": days[-1].isoformat(),
        "frameworks": [
            {
                "id": framework,
                "name": catalog.frameworks[framework].name,
                "days": [
                    {
                        "day": r.day.isoformat(),
                        "score": r.score,
                        "controls": {
                            "failing": r.failing,
                            "accepted": r.accepted,
                            "passing": r.passing,
                            "not_covered": r.not_covered,
                        },
                        "open_by_severity": dict(r.open_by_severity),
                        "open": open_findings(r),
                        "accepted_findings": r.accepted_findings,
                    }
                    for r in rows
                ],
            }
            for framework, rows in snapshots.items()
        ],
    }


# ---- the chart `/compliance status` posts ------------------------------------------------------

CHART_DAYS = 30
MIN_CHART_DAYS = 2  # one day is a point, not a trend
NO_TREND_YET = f"Trend available after {MIN_CHART_DAYS} daily snapshots"
CHART_SIZE = (8.0, 5.0)  # inches, at CHART_DPI: 800 x 500 pixels
CHART_DPI = 100


def days_with_snapshots(snapshots: Mapping[str, Sequence[PostureSnapshot]]) -> int:
    """How many distinct days have a snapshot of at least one framework."""
    return len({r.day for rows in snapshots.values() for r in rows})


def _plain(text: str) -> str:
    # Matplotlib reads text with an even number of unescaped $ as TeX math (a parse error, or
    # a formula, from a name in a file); with every $ escaped it is plain text, $ shown as $.
    return text.replace("$", r"\$")


def trend_png(
    *,
    catalog: Catalog,
    snapshots: Mapping[str, Sequence[PostureSnapshot]],
    days: Sequence[date],
) -> bytes:
    """The posture score and the open findings of each framework per day, as a PNG drawn
    in-process (matplotlib's Agg canvas, no pyplot state: safe in the listener threads).
    Imported here, when a chart is drawn, so the bot's start-up and memory do not pay for it."""
    import io

    import matplotlib.dates  # registers the date axis converter
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=CHART_SIZE, dpi=CHART_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    score_axes, open_axes = figure.subplots(2, 1, sharex=True)
    for framework, rows in snapshots.items():
        if not rows:
            continue
        series = _series(rows, days)
        label = _plain(catalog.frameworks[framework].name)
        scores = [float("nan") if r is None or r.score is None else r.score for r in series]
        opens = [float("nan") if r is None else float(open_findings(r)) for r in series]
        score_axes.plot(days, scores, marker=".", label=label)
        open_axes.plot(days, opens, marker=".", label=label)
    score_axes.set_ylim(0, 100)
    score_axes.set_ylabel("Posture score (%)")
    score_axes.set_title(_plain(f"Compliance posture, {days[0]} to {days[-1]}"))
    score_axes.legend(loc="lower left", fontsize="small")
    open_axes.set_ylim(bottom=0)
    open_axes.set_ylabel("Open findings")
    days_only = matplotlib.dates.DateFormatter("%m-%d")  # type: ignore[no-untyped-call]  # untyped __init__
    open_axes.xaxis.set_major_formatter(days_only)
    for axes in (score_axes, open_axes):
        axes.grid(visible=True, alpha=0.3)
    out = io.BytesIO()
    figure.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()
