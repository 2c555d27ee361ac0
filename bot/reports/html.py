"""A framework report as one self-contained HTML file: inline CSS, charts as inline SVG, no
script and no external URL, printable. Every value from data goes through `html.escape`.
The same page, with print CSS a PDF renderer understands, is what `bot/reports/pdf.py` lays out."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from html import escape

from bot.reports.model import STATUSES, ControlReport, FrameworkReport, TrendPoint
from bot.reports.render import LISTED, day, days, minute
from rules.catalog import Severity

COLOURS = {
    "critical": "#8b0000",
    "high": "#d9480f",
    "medium": "#e8a400",
    "low": "#2b8a3e",
    "info": "#6c757d",
    "failing": "#c92a2a",
    "accepted": "#e8a400",
    "passing": "#2b8a3e",
    "task": "#1971c2",
    "not_covered": "#868e96",
}
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:72rem;color:#212529;line-height:1.4;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #dee2e6;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
th,td{border:1px solid #dee2e6;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f3f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
.tiles{display:flex;flex-wrap:wrap;gap:.75rem;margin:1rem 0}
.tile{border:1px solid #dee2e6;border-radius:.4rem;padding:.5rem .9rem;min-width:8rem}
.tile b{display:block;font-size:1.6rem}
.status{font-weight:600;white-space:nowrap}
.failing{color:#c92a2a}.accepted{color:#b35c00}.passing{color:#2b8a3e}.task{color:#1971c2}
.not_covered{color:#868e96}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}.charts figure{margin:0}
figcaption{font-size:.9rem;color:#495057}
.muted{color:#6c757d;font-size:.9rem}
details>summary{cursor:pointer}
@media print{body{margin:0;max-width:none;font-size:10pt}details{display:block}
details>summary{list-style:none}h2{break-after:avoid}tr,figure,.tile{break-inside:avoid}
a{color:inherit;text-decoration:none}}
"""
# For the PDF (xhtml2pdf): it has no flex layout (it fails on it) and no system-ui font, and
# gives every table column the same width unless told.
PDF_CSS = """
@page{size:a4 portrait;margin:1.5cm}
body{font-family:Helvetica,sans-serif;font-size:9pt;margin:0;max-width:none;padding:0}
h1{font-size:16pt}h2{font-size:12pt}
.tiles,.charts{display:block}.tile{display:block;border:none;padding:0;margin:0}
.tile b{display:inline;font-size:10pt}
figure{display:block;margin:0 0 .5rem}figcaption{display:block}
th.w-detail{width:34%}th.w-title{width:22%}th.w-rules{width:16%}
code{font-family:Courier,monospace}
"""
_SVG = re.compile(r"<svg .*?</svg>", re.DOTALL)


def e(value: object) -> str:
    """Any value as HTML text (quotes too: values also go into attributes)."""
    return escape("" if value is None else str(value), quote=True)


def to_html(report: FrameworkReport, *, for_pdf: bool = False) -> str:
    """The whole report as one HTML document; `for_pdf`: with PDF_CSS, and each chart's SVG as
    a data: image (xhtml2pdf draws SVG images, as vectors, but not inline SVG)."""
    title = f"{report.name} compliance report"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing is fetched when the file is opened: no script, no URL, inline styles only.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{CSS}{PDF_CSS if for_pdf else ''}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        _header(report),
        _summary(report),
        _svg_images(_charts(report)) if for_pdf else _charts(report),
        _severities(report),
        _controls(report),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _header(report: FrameworkReport) -> str:
    last = report.last_scan
    scan = (
        f"last scan #{e(last.id)} ({e(last.status)}, {e(minute(last.finished_at))})"
        if last
        else "no scan has run yet"
    )
    lines = [f"Generated {e(minute(report.generated_at))} by compliancebot; {scan}."]
    if report.at != report.generated_at:
        lines.append(
            f'As of <time data-metric="at">{e(minute(report.at))}</time>: rebuilt from the '
            "finding history and the task record."
        )
    if report.account is not None:
        lines.append(f"Findings of AWS account {e(report.account)} only.")
    lines.append(f"Framework version: {e(report.version)}.")
    return "".join(f'<p class="muted">{line}</p>' for line in lines)


def _tile(label: str, value: object, metric: str) -> str:
    # The space: text extracted from the PDF reads "50% posture score", not "50%posture".
    return f'<div class="tile"><b data-metric="{e(metric)}">{e(value)}</b> {e(label)}</div>'


def _summary(report: FrameworkReport) -> str:
    score = "-" if report.score is None else f"{report.score:g}%"
    tiles = [
        _tile("posture score", score, "score"),
        _tile("open findings", report.open_findings, "open_findings"),
    ]
    tiles += [_tile(STATUSES[s], report.count(s), f"controls.{s}") for s in STATUSES]
    return "<h2>Summary</h2>" + f'<div class="tiles">{"".join(tiles)}</div>'


def _severities(report: FrameworkReport) -> str:
    head = (
        "<tr><th>Severity</th><th>Open</th><th>Remediated</th><th>Mean days to remediate</th>"
        "<th>SLA (days)</th><th>Open past SLA</th><th>Resolved late</th></tr>"
    )
    rows = []
    for s in report.severities:
        cells = [
            (s.open, "open"),
            (s.remediated, "remediated"),
            (days(s.mean_days_to_remediate), "mttr"),
            ("-" if s.sla_days is None else s.sla_days, "sla_days"),
            (s.breaches_open, "breaches_open"),
            (s.breaches_resolved, "breaches_resolved"),
        ]
        tds = "".join(
            f'<td class="n" data-metric="{e(f"{s.severity}.{name}")}">{e(v)}</td>'
            for v, name in cells
        )
        rows.append(f"<tr><th>{e(s.severity)}</th>{tds}</tr>")
    return f'<h2>Findings by severity</h2><table id="severities">{head}{"".join(rows)}</table>'


def _controls(report: FrameworkReport) -> str:
    rows = []
    for c in report.controls:
        detail = _control_detail(c)
        rows.append(
            f'<tr data-control="{e(c.control)}" data-status="{e(c.status)}">'
            f"<td>{e(c.control)}</td><td>{e(c.title)}</td>"
            f'<td class="status {e(c.status)}">{e(STATUSES[c.status])}</td>'
            f"<td>{e(', '.join(c.rules)) or '-'}</td>"
            f'<td class="n" data-metric="failing">{len(c.failing)}</td>'
            f"<td>{detail}</td></tr>"
        )
    head = (
        '<tr><th>Control</th><th class="w-title">Title</th><th>Status</th>'
        '<th class="w-rules">Rules</th><th>Failing</th><th class="w-detail">Detail</th></tr>'
    )
    return f'<h2>Controls</h2><table id="controls">{head}{"".join(rows)}</table>'


def _control_detail(c: ControlReport) -> str:
    out = []
    if c.failing:
        items = "".join(
            f"<li>{e(x.severity)} <code>{e(x.resource_id)}</code>"
            + (f" ({e(x.resource_name)})" if x.resource_name else "")
            + f" in {e(x.account)}/{e(x.region)}, rule {e(x.rule_id)}, {e(x.status)}, "
            f"first seen {e(day(x.first_seen))}"
            + ("; <strong>past its SLA</strong>" if x.sla_breached else "")
            + "</li>"
            for x in c.failing[:LISTED]
        )
        more = (
            f"<li>and {len(c.failing) - LISTED} more (the CSV lists them all)</li>"
            if len(c.failing) > LISTED
            else ""
        )
        out.append(
            f"<details open><summary>Failing since {e(day(c.failing_since))}: "
            f"{e(', '.join(c.failing_rules))}</summary><ul>{items}{more}</ul></details>"
        )
    if c.accepted:
        items = "".join(
            f"<li><code>{e(a.resource_id)}</code> ({e(a.rule_id)}): accepted by "
            f"{e(a.accepted_by or '-')} until {e(day(a.until))}: {e(a.reason or '-')}</li>"
            for a in c.accepted[:LISTED]
        )
        out.append(f"<details open><summary>Accepted risk</summary><ul>{items}</ul></details>")
    if c.tasks:
        items = "".join(
            f'<li data-task="{e(t.task_id)}">{e(t.title)}: '
            + (
                "never completed"
                if t.completed_at is None
                else f"last completed {e(day(t.completed_at))} by {e(t.completed_by or '-')} "
                f"(due {e(day(t.due_on))}, {'on time' if t.on_time else 'late'})"
            )
            + (f"; {t.overdue} overdue" if t.overdue else "")
            + "</li>"
            for t in c.tasks
        )
        out.append(f"<ul>{items}</ul>")
    return "".join(out) or "-"


def _svg_images(charts: str) -> str:
    """Each inline <svg> as an <img> of the same SVG (a data: URI, which the page's CSP allows)."""

    def image(match: re.Match[str]) -> str:
        svg = match.group(0).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
        data = base64.b64encode(svg.encode()).decode("ascii")
        return f'<img src="data:image/svg+xml;base64,{data}" alt="">'

    return _SVG.sub(image, charts)


# ---- charts: inline SVG, drawn here ------------------------------------------------------------

W, H, PAD = 420, 180, 30


def _polyline(values: Sequence[float | None], top: float, colour: str) -> str:
    n = len(values)
    points = []
    for i, v in enumerate(values):
        if v is None:
            continue
        x = PAD + (W - 2 * PAD) * (i / (n - 1) if n > 1 else 0.5)
        y = H - PAD - (H - 2 * PAD) * (v / top if top else 0)
        points.append(f"{x:.1f},{y:.1f}")
    if not points:
        return ""
    dots = "".join(
        f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" fill="{colour}"/>'
        for p in points
    )
    line = f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(points)}"/>'
    return line + dots


def _frame(title: str, top: float, body: str, trend: Sequence[TrendPoint], legend: str) -> str:
    first, last = (trend[0].at, trend[-1].at) if trend else (None, None)
    axis = (
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#adb5bd"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#adb5bd"/>'
        f'<text x="2" y="{PAD + 4}" font-size="10">{e(f"{top:g}")}</text>'
        f'<text x="2" y="{H - PAD}" font-size="10">0</text>'
    )
    if first and last:
        axis += (
            f'<text x="{PAD}" y="{H - 10}" font-size="10">{e(day(first))}</text>'
            f'<text x="{W - PAD}" y="{H - 10}" font-size="10" text-anchor="end">'
            f"{e(day(last))}</text>"
        )
    return (
        f'<figure><svg width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" role="img" aria-label="{e(title)}">{axis}{body}</svg>'
        f"<figcaption>{e(title)}{legend}</figcaption></figure>"
    )


def _charts(report: FrameworkReport) -> str:
    trend = report.trend
    figures = []
    if len(trend) > 1:
        figures.append(
            _frame(
                "Posture score over time (%)",
                100,
                _polyline([p.score for p in trend], 100, COLOURS["passing"]),
                trend,
                "",
            )
        )
        severities = [str(s) for s in Severity]
        top = max((max(p.open_by_severity.values(), default=0) for p in trend), default=0) or 1
        lines = "".join(
            _polyline([p.open_by_severity.get(s, 0) for p in trend], top, COLOURS[s])
            for s in severities
        )
        legend = ": " + ", ".join(
            f'<span style="color:{COLOURS[s]}">{e(s)}</span>' for s in severities
        )
        figures.append(_frame("Open findings by severity over time", top, lines, trend, legend))
    figures.append(_mttr(report))
    return "<h2>Trends</h2>" + f'<div class="charts">{"".join(figures)}</div>'


def _mttr(report: FrameworkReport) -> str:
    stats = report.severities
    top = max((s.mean_days_to_remediate or 0 for s in stats), default=0) or 1
    width = (W - 2 * PAD) / max(len(stats), 1)
    bars = []
    for i, s in enumerate(stats):
        value = s.mean_days_to_remediate or 0
        height = (H - 2 * PAD) * value / top
        x = PAD + i * width + 4
        bars.append(
            f'<rect x="{x:.1f}" y="{H - PAD - height:.1f}" width="{width - 8:.1f}" '
            f'height="{height:.1f}" fill="{COLOURS.get(s.severity, "#495057")}"/>'
            f'<text x="{x + (width - 8) / 2:.1f}" y="{H - PAD + 12}" font-size="10" '
            f'text-anchor="middle">{e(s.severity)}</text>'
            f'<text x="{x + (width - 8) / 2:.1f}" y="{H - PAD - height - 3:.1f}" font-size="10" '
            f'text-anchor="middle">{e(days(s.mean_days_to_remediate))}</text>'
        )
    return (
        f'<figure><svg width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" role="img" aria-label="Mean days to remediate">'
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#adb5bd"/>'
        f"{''.join(bars)}</svg><figcaption>Mean days to remediate, by severity</figcaption>"
        "</figure>"
    )
