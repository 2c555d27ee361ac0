"""The `compliancebot` command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot import agent as agent_cli
from bot import archive as archive_cli
from bot import output
from bot.fim_cli import fim_app
from bot.logging import configure as configure_logging
from bot.scanning import ScanOutcome, collector_for, run_scan, utcnow
from bot.settings import (
    ConfigError,
    Settings,
    load_settings,
    masked,
    missing_secrets,
    require_secrets,
)
from bot.vulns_cli import vulns_app
from integrations.tickets import TicketError, TicketSink
from integrations.trackers import TRACKERS
from ledger import db, services
from ledger.models import MAX_ID, FindingStatus, row_id
from ledger.queries import list_findings, posture
from rules.catalog import Catalog, Severity, load_catalog, validate_paths
from rules.errors import CompliancebotError

if TYPE_CHECKING:
    from bot.reminders import TaskBook
    from ledger.models import Finding
    from ledger.tasks import Completion

app = typer.Typer(
    help="Continuous compliance for AWS: scan, map to controls, track findings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
findings_app = typer.Typer(help="List, inspect and act on findings.", no_args_is_help=True)
rules_app = typer.Typer(help="The rule catalog.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
db_app = typer.Typer(help="The findings database.", no_args_is_help=True)
tickets_app = typer.Typer(
    help="Ticket sync: deliver pending tickets, show failures, retry.", no_args_is_help=True
)
slack_app = typer.Typer(
    help="Slack delivery: what is pending, failed, or to retry.", no_args_is_help=True
)
app.add_typer(findings_app, name="findings")
app.add_typer(rules_app, name="rules")
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(slack_app, name="slack")
app.add_typer(tickets_app, name="tickets")
outbox_app = typer.Typer(
    help="Everything waiting to go out (Slack, trackers): status and retry.", no_args_is_help=True
)
app.add_typer(outbox_app, name="outbox")
schedule_app = typer.Typer(
    help="The scheduler of `serve`: its jobs and leader.", no_args_is_help=True
)
app.add_typer(schedule_app, name="schedule")
tasks_app = typer.Typer(
    help="The compliance calendar: administrative tasks, evidence, the ICS feed.",
    no_args_is_help=True,
)
app.add_typer(tasks_app, name="tasks")
audit_app = typer.Typer(
    help="The tamper-evident audit trail: verify its hash chain, export it.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")
app.add_typer(fim_app, name="fim")
app.add_typer(vulns_app, name="vulns")

# Plain consoles: what they print is data, never markup (see output.PlainConsole).
out = output.PlainConsole()
err = output.PlainConsole(stderr=True)


def _row_id(value: str) -> int:
    """An id argument, bounded like every id from outside (ledger.models.row_id): 1..MAX_ID.

    A plain int would pass 10**30 on to the query, which fails there with a traceback.
    """
    parsed = row_id(value)
    if parsed is None:
        shown = repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
        raise typer.BadParameter(f"{shown} is not an id: a whole number from 1 to {MAX_ID}")
    return parsed


FindingId = Annotated[int, typer.Argument(parser=_row_id, metavar="FINDING_ID")]
FORMATS = ("table", "json", "ocsf")


@dataclass
class Context:
    """Built once per command from --config; heavy pieces are created on first use."""

    config: Path | None
    _settings: Settings | None = None
    _catalog: Catalog | None = None
    _engine: Engine | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
            configure_logging(self._settings.logging.level, self._settings.logging.format)
        return self._settings

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            rules = self.settings.rules
            self._catalog = load_catalog(
                extra_paths=rules.paths, disabled=rules.disabled, severity_overrides=rules.severity
            )
        return self._catalog

    def engine(self, *, check_schema: bool = True) -> Engine:
        if self._engine is None:
            self._engine = db.make_engine(self.settings.database.url)
        if check_schema:
            db.require_current_schema(self._engine)
        return self._engine

    def sessions(self) -> sessionmaker[Session]:
        from bot.server import event_stream
        from ledger import events
        from ledger.audit import use_key

        sessions = db.session_factory(self.engine())
        use_key(sessions, self.settings.audit.key())  # audit entries are chained with it
        # Changes made here reach the event sinks too (ledger/events.py), as under `serve`.
        events.use_stream(sessions, event_stream(settings=self.settings, catalog=self.catalog))
        return sessions

    @property
    def book(self) -> TaskBook:
        """The task catalog with the calendar settings."""
        if "book" not in self.extra:
            from bot.server import task_book

            self.extra["book"] = task_book(self.settings, self.catalog)
        book: TaskBook = self.extra["book"]
        return book


def _ctx(ctx: typer.Context) -> Context:
    obj = ctx.find_root().obj
    assert isinstance(obj, Context)
    return obj


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (default: $COMPLIANCEBOT_CONFIG, then "
            "./compliancebot.yaml; none means embedded defaults).",
        ),
    ] = None,
) -> None:
    ctx.obj = Context(config=config)


def _version() -> str:
    try:
        return dist_version("compliancebot")
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        return "0+unknown"


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise typer.BadParameter(
            f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="--output"
        )
    return fmt


def _emit(
    fmt: str,
    findings: list[Any],
    catalog: Catalog,
    *,
    title: str,
    scan: dict[str, Any] | None = None,
) -> None:
    if fmt == "json":
        sys.stdout.write(
            json.dumps(output.findings_document(findings, catalog, scan), indent=2) + "\n"
        )
    elif fmt == "ocsf":
        now = utcnow()
        events = [
            output.ocsf_event(f, catalog.rule(f.rule_id), product_version=_version(), now=now)
            for f in findings
        ]
        sys.stdout.write(json.dumps(events, indent=2) + "\n")
    else:
        output.findings_table(out, findings, title=title)


# ---- scan ------------------------------------------------------------------------------------


@app.command()
def scan(
    ctx: typer.Context,
    account: Annotated[
        list[str] | None, typer.Option(help="Only this account id or target name (repeatable).")
    ] = None,
    region: Annotated[
        list[str] | None,
        typer.Option(help="Only this region (repeatable); global services are always scanned."),
    ] = None,
    rule: Annotated[
        list[str] | None,
        typer.Option(help="Only this rule id (repeatable); only the data it reads is fetched."),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--output", "-o", help="table, json or ocsf.")
    ] = "table",
) -> None:
    """Scan the configured AWS accounts now and store the findings."""
    _check_format(output_format)
    app_ctx = _ctx(ctx)
    result = _scan(
        app_ctx, account=account, region=region, rule=rule, quiet=output_format != "table"
    )
    with app_ctx.sessions()() as session:
        found = list_findings(
            session=session, catalog=app_ctx.catalog, rule_ids=rule or (), account=None
        )
        summary = {
            "id": result.scan.id,
            "status": result.scan.status,
            "api_calls": result.scan.api_calls,
            "resources": result.scan.resources,
            "errors": result.scan.error_count,
            **result.counts.as_dict(),
        }
        _emit(output_format, found, app_ctx.catalog, title="Open findings", scan=summary)
        if output_format == "table":
            _scan_summary(result)


def _scan(
    app_ctx: Context,
    *,
    account: list[str] | None,
    region: list[str] | None,
    rule: list[str] | None,
    quiet: bool,
    trigger: str = "cli",
) -> ScanOutcome:
    from bot.server import scan_listeners

    settings, catalog = app_ctx.settings, app_ctx.catalog
    sessions = app_ctx.sessions()
    listeners = scan_listeners(settings=settings, clock=utcnow)
    if not quiet and err.is_terminal:
        with Progress(
            TextColumn("Scanning"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("scan", total=None)
            collector = collector_for(
                settings, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
            return run_scan(
                catalog=catalog,
                collector=collector,
                sessions=sessions,
                rule_ids=rule,
                accounts=set(account or []) or None,
                regions=set(region or []) or None,
                trigger=trigger,
                listeners=listeners,
            )
    return run_scan(
        catalog=catalog,
        collector=collector_for(settings),
        sessions=sessions,
        rule_ids=rule,
        accounts=set(account or []) or None,
        regions=set(region or []) or None,
        trigger=trigger,
        listeners=listeners,
    )


def _scan_summary(result: ScanOutcome) -> None:
    s, c = result.scan, result.counts
    out.print(
        f"Scan #{s.id} {s.status}: {s.resources} resources, {s.api_calls} AWS API calls, "
        f"{c.new} new, {c.reopened} reopened, {c.resolved} resolved, "
        f"{c.still_failing} still failing."
    )
    for e in result.collection.errors[:20]:
        err.print(
            output.styled(
                ("not checked:", "yellow"),
                f" {e.account} {e.region} {e.service}.{e.operation}: {e.code}: {e.message}",
            )
        )
    if len(result.collection.errors) > 20:
        err.print(
            f"... and {len(result.collection.errors) - 20} more errors "
            f"(`compliancebot findings` is unaffected; see the scan record)."
        )


# ---- findings --------------------------------------------------------------------------------


def _severities(values: list[str] | None) -> list[str]:
    valid = [str(s) for s in Severity]
    for v in values or []:
        if v not in valid:
            raise typer.BadParameter(
                f"{v!r} is not one of {', '.join(valid)}", param_hint="--severity"
            )
    return values or []


@findings_app.command("list")
def findings_list(
    ctx: typer.Context,
    severity: Annotated[
        list[str] | None, typer.Option(help="critical, high, medium, low, info (repeatable).")
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            help="open, claimed, reopened, resolved, accepted (repeatable; default: "
            "open, claimed, reopened)."
        ),
    ] = None,
    framework: Annotated[
        str | None, typer.Option(help="Only findings of rules citing this framework.")
    ] = None,
    rule: Annotated[list[str] | None, typer.Option(help="Rule id.")] = None,
    account: Annotated[str | None, typer.Option(help="Account id.")] = None,
    limit: Annotated[int | None, typer.Option(min=1)] = None,
    output_format: Annotated[str, typer.Option("--output", "-o")] = "table",
) -> None:
    """List findings (by default those counting against the posture)."""
    _check_format(output_format)
    valid_status = [str(s) for s in FindingStatus]
    for s in status or []:
        if s not in valid_status:
            raise typer.BadParameter(
                f"{s!r} is not one of {', '.join(valid_status)}", param_hint="--status"
            )
    app_ctx = _ctx(ctx)
    with app_ctx.sessions()() as session:
        found = list_findings(
            session=session,
            catalog=app_ctx.catalog,
            severity=_severities(severity),
            status=status or (),
            framework=framework,
            rule_ids=rule or (),
            account=account,
            limit=limit,
        )
        _emit(output_format, found, app_ctx.catalog, title=f"Findings ({len(found)})")


@findings_app.command("show")
def findings_show(
    ctx: typer.Context,
    finding_id: FindingId,
    output_format: Annotated[str, typer.Option("--output", "-o")] = "table",
) -> None:
    """One finding with its remediation, controls and history."""
    _check_format(output_format)
    app_ctx = _ctx(ctx)
    with app_ctx.sessions()() as session:
        finding = services.get_finding(session=session, finding_id=finding_id)
        rules = {**app_ctx.catalog.disabled, **app_ctx.catalog.rules}
        rule = rules.get(finding.rule_id)
        if output_format != "table":
            _emit(output_format, [finding], app_ctx.catalog, title="")
            return
        out.print(f"#{finding.id} {finding.title}", style="bold")
        out.print(
            f"severity {finding.severity} | status {finding.status}"
            + (f" | assignee {finding.assignee}" if finding.assignee else "")
        )
        out.print(
            f"resource {finding.resource_type} {finding.resource_id}"
            f" ({finding.resource_name or '-'}) in {finding.account} / {finding.region}"
        )
        out.print(
            f"first seen {finding.first_seen:%Y-%m-%d %H:%M} UTC, last seen "
            f"{finding.last_seen:%Y-%m-%d %H:%M} UTC"
        )
        if finding.detail:
            out.print(output.styled(("\nWhat is wrong", "bold"), f"\n  {finding.detail}"))
            if finding.evidence:
                evidence = json.dumps(finding.evidence, indent=2, sort_keys=True)
                out.print("  " + evidence.replace("\n", "\n  "), markup=False)
        if finding.accepted_until:
            out.print(
                f"risk accepted by {finding.accepted_by} until "
                f"{finding.accepted_until:%Y-%m-%d}: {finding.accepted_reason}"
            )
        if rule is not None:
            out.print("\nControls", style="bold")
            for fw, ids in rule.frameworks.items():
                name = app_ctx.catalog.frameworks[fw].name
                out.print(f"  {name}: {', '.join(ids)}")
            out.print(output.styled(("\nWhy", "bold"), f"\n  {rule.rationale}"))
            out.print(
                output.styled(("\nRemediation", "bold"), f"\n  {rule.remediation.text.strip()}")
            )
            if rule.remediation.cli:
                command = output.remediation_command(rule.remediation.cli.strip(), finding)
                out.print("  " + command, markup=False)
        out.print("\nHistory", style="bold")
        for ev in finding.events:
            out.print(
                f"  {ev.at:%Y-%m-%d %H:%M} {ev.kind} {ev.from_status or '-'} -> "
                f"{ev.to_status} by {ev.actor}" + (f": {ev.note}" if ev.note else "")
            )


def _act(ctx: typer.Context, fn: Callable[..., Finding], **kwargs: Any) -> None:
    app_ctx = _ctx(ctx)
    with db.transaction(app_ctx.sessions()) as session:
        finding = fn(session=session, now=utcnow(), **kwargs)
        out.print(f"Finding #{finding.id} is now {finding.status}.")


@findings_app.command("claim")
def findings_claim(
    ctx: typer.Context,
    finding_id: FindingId,
    user: Annotated[str, typer.Option(help="Who takes it.")],
) -> None:
    """Assign a finding to someone."""
    _act(ctx, services.claim, finding_id=finding_id, user=user)


@findings_app.command("resolve")
def findings_resolve(
    ctx: typer.Context,
    finding_id: FindingId,
    user: Annotated[str, typer.Option()],
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Mark a finding fixed (the next scan reopens it if it still fails)."""
    _act(ctx, services.resolve, finding_id=finding_id, user=user, note=note)


@findings_app.command("accept")
def findings_accept(
    ctx: typer.Context,
    finding_id: FindingId,
    user: Annotated[str, typer.Option()],
    reason: Annotated[str, typer.Option()],
    until: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="Expiry date, YYYY-MM-DD.")],
) -> None:
    """Accept a finding's risk until a date, with a reason."""
    expiry = datetime.combine(until.date(), time.max, tzinfo=UTC)
    _act(
        ctx,
        services.accept_risk,
        finding_id=finding_id,
        user=user,
        reason=reason,
        until=expiry,
        max_days=_ctx(ctx).settings.slack.max_acceptance_days,
    )


@findings_app.command("reopen")
def findings_reopen(
    ctx: typer.Context,
    finding_id: FindingId,
    user: Annotated[str, typer.Option()],
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Reopen a resolved or accepted finding."""
    _act(ctx, services.reopen, finding_id=finding_id, user=user, note=note)


# ---- status ----------------------------------------------------------------------------------


@app.command()
def status(
    ctx: typer.Context,
    framework: Annotated[list[str] | None, typer.Option(help="Only this framework.")] = None,
    output_format: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
) -> None:
    """Posture per framework (controls passing / failing / not covered) and open findings."""
    app_ctx = _ctx(ctx)
    with app_ctx.sessions()() as session:
        state = posture(
            session=session, catalog=app_ctx.catalog, now=utcnow(), frameworks=framework
        )
        if output_format == "json":
            doc = {
                "schema_version": output.JSON_SCHEMA_VERSION,
                "open_by_severity": state.open_by_severity,
                "accepted": state.accepted,
                "frameworks": [
                    {
                        "id": fw.framework,
                        "name": fw.name,
                        "failing": fw.count("failing"),
                        "passing": fw.count("passing"),
                        "not_covered": fw.count("not_covered"),
                        "failing_controls": [
                            {
                                "control": c.control,
                                "title": c.title,
                                "rules": c.failing_rules,
                                "since": c.since.isoformat() if c.since else None,
                            }
                            for c in fw.controls
                            if c.state == "failing"
                        ],
                    }
                    for fw in state.frameworks
                ],
            }
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        else:
            output.posture_table(out, state)


# ---- report ----------------------------------------------------------------------------------


class ReportFormat(StrEnum):
    """What `report` writes."""

    md = "md"
    json = "json"
    csv = "csv"
    html = "html"
    pdf = "pdf"


def _report_at(value: str) -> datetime:
    """--at: a day (the report is as of its end, UTC) or an ISO instant (UTC unless it says)."""
    try:
        if len(value) > 40:
            raise ValueError
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time.max, tzinfo=UTC)
        at = datetime.fromisoformat(value)
    except ValueError:
        shown = repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
        raise typer.BadParameter(
            f"{shown} is not a date: write YYYY-MM-DD (as of the end of that day, UTC) or "
            "an instant such as 2026-06-30T17:00Z"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@app.command()
def report(
    ctx: typer.Context,
    framework: Annotated[
        str, typer.Option(help="The framework (`compliancebot status` lists them).")
    ],
    report_format: Annotated[
        ReportFormat,
        typer.Option("--format", "-f", help="md, json, csv, html or pdf (html, pdf need -o)."),
    ] = ReportFormat.md,
    at: Annotated[
        datetime | None,
        typer.Option(
            parser=_report_at,
            metavar="DATE",
            help="Report the state as it was then: YYYY-MM-DD (the end of that day, UTC) or "
            "an ISO instant. Default: now.",
        ),
    ] = None,
    account: Annotated[str | None, typer.Option(help="Only this AWS account's findings.")] = None,
    output_file: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report here (html needs it)."),
    ] = None,
) -> None:
    """One framework's report: each control's status, failing resources, accepted risks and
    task evidence; the posture score, open findings, time to remediate and SLA breaches."""
    from bot.reports import make_document
    from ledger.history import first_scan_at

    app_ctx = _ctx(ctx)
    catalog = app_ctx.catalog
    if framework not in catalog.frameworks:
        raise typer.BadParameter(
            f"unknown framework {framework!r}; known: {', '.join(sorted(catalog.frameworks))}",
            param_hint="--framework",
        )
    if report_format in (ReportFormat.html, ReportFormat.pdf) and output_file is None:
        raise typer.BadParameter(
            f"an {report_format.value.upper()} report is a file: name it with -o FILE",
            param_hint="--format",
        )
    if report_format == ReportFormat.pdf:
        from bot.reports.pdf import PdfUnavailableError, require

        try:
            require()
        except PdfUnavailableError as exc:
            raise _fail(str(exc)) from None
    now = utcnow()
    settings = app_ctx.settings
    with app_ctx.sessions()() as session:
        first = first_scan_at(session=session)
        if at is not None:
            # A day (the end of it, from _report_at) is in the future from tomorrow on.
            whole_day = at.astimezone(UTC).time() == time.max
            if at.astimezone(UTC).date() > now.astimezone(UTC).date() if whole_day else at > now:
                raise typer.BadParameter(
                    f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC is in the future", param_hint="--at"
                )
            at = min(at, now)  # today: as of now
            if first is None:
                raise typer.BadParameter(
                    "no scan has run yet: there is no state to report", param_hint="--at"
                )
            if at < first:
                raise typer.BadParameter(
                    f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC is before the first scan "
                    f"({first:%Y-%m-%d %H:%M} UTC)",
                    param_hint="--at",
                )
        text = make_document(
            session=session,
            settings=settings,
            catalog=catalog,
            tasks=list(app_ctx.book.tasks.tasks.values()) if settings.calendar.enabled else [],
            framework=framework,
            fmt=report_format.value,
            at=now if at is None else at,
            now=now,
            account=account,
        )
    if output_file is None:
        assert isinstance(text, str)  # html and pdf were refused without -o above
        sys.stdout.write(text)
        return
    from bot.files import WriteError, replacing

    try:
        if isinstance(text, bytes):
            with replacing(output_file, "wb") as binary:
                binary.write(text)
        else:
            with replacing(output_file, "w", newline="") as stream:
                stream.write(text)
    except WriteError as exc:
        raise typer.BadParameter(str(exc), param_hint="-o") from None
    name = catalog.frameworks[framework].name
    err.print(f"Wrote the {name} report ({report_format.value}) to {output_file}.")


# ---- trends ----------------------------------------------------------------------------------


@app.command()
def trends(
    ctx: typer.Context,
    framework: Annotated[
        list[str] | None,
        typer.Option(help="Only this framework (repeatable; `compliancebot status` lists them)."),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=3660, help="How many days, ending today.")] = 30,
    output_format: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
) -> None:
    """The posture score and open findings by severity per day, from the daily snapshots."""
    from bot.trends import print_trends, span, trends_document
    from ledger import snapshots

    app_ctx = _ctx(ctx)
    catalog = app_ctx.catalog
    for fw in framework or ():
        if fw not in catalog.frameworks:
            known = ", ".join(sorted(catalog.frameworks))
            err.print(
                output.styled(("error:", "red"), f" --framework: unknown framework {fw!r}; "),
                f"known: {known}",
                sep="",
                soft_wrap=True,
            )
            raise typer.Exit(2)
    if output_format not in ("table", "json"):
        raise typer.BadParameter(f"{output_format!r} is not one of table, json", param_hint="-o")
    now = utcnow()
    timezone = app_ctx.settings.schedule.timezone
    sessions = app_ctx.sessions()
    with sessions() as session:
        empty = not snapshots.has_snapshots(session=session)
    if empty:
        err.print(
            f"No snapshots yet: back-filling the last {days} days from the finding history "
            "(the scheduler's snapshot job keeps them from now on).",
            soft_wrap=True,
        )
        snapshots.catch_up(
            sessions=sessions, catalog=catalog, now=now, timezone=timezone, days=days
        )
    shown = span(today=snapshots.local_day(now, timezone), days=days)
    with sessions() as session:
        found = snapshots.trends(
            session=session, frameworks=framework or sorted(catalog.frameworks), since=shown[0]
        )
    if output_format == "json":
        doc = trends_document(catalog=catalog, snapshots=found, days=shown)
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        print_trends(out, catalog=catalog, snapshots=found, days=shown)


# ---- rules -----------------------------------------------------------------------------------


@rules_app.command("list")
def rules_list(
    ctx: typer.Context,
    framework: Annotated[
        str | None,
        typer.Option(
            help="Only rules citing this framework (hipaa, soc2, hitrust, pci_dss, cis_aws)."
        ),
    ] = None,
) -> None:
    """The enabled rules, with severity and the controls they serve."""
    catalog = _ctx(ctx).catalog
    chosen = catalog.select(framework=framework)
    from rich.table import Table

    table = Table(title=f"{len(chosen)} rules")
    for name in ("Rule", "Severity", "Resource", "Controls"):
        table.add_column(name, overflow="fold")
    for r in chosen:
        shown = {framework: r.frameworks[framework]} if framework else r.frameworks
        controls = "; ".join(f"{fw}: {', '.join(ids)}" for fw, ids in shown.items())
        table.add_row(r.id, str(r.severity), r.resource_type, controls)
    out.print(table)


@rules_app.command("validate")
def rules_validate(
    paths: Annotated[list[Path], typer.Argument(help="Rule files or folders.")],
) -> None:
    """Check rule files; errors name file, line and field."""
    checked = validate_paths(paths)
    out.print(f"{len(checked)} rule(s) valid.", style="green")


# ---- config and db ---------------------------------------------------------------------------


@config_app.command("check")
def config_check(ctx: typer.Context) -> None:
    """Validate the configuration and print the effective values, secrets masked.

    Then ask each enabled tracker whether every name the mapping gives exists there, and
    report every problem found (missing secrets too) at once.
    """
    app_ctx = _ctx(ctx)
    settings = app_ctx.settings
    catalog = app_ctx.catalog
    sys.stdout.write(yaml.safe_dump(masked(settings), sort_keys=False))
    from bot.server import integration_problems, problems_error
    from bot.tickets import tracker_sink
    from integrations.ticket_sync import Route

    problems = missing_secrets(settings)
    sinks = []
    for name, section in settings.tickets.sections().items():
        if not section.enabled:
            continue
        try:
            Route.of(section, catalog, name)  # an unknown framework names the known ones
        except CompliancebotError as exc:
            problems.append(str(exc))
        # Without its secrets it cannot be asked (they are named above).
        if not TRACKERS.get(name).missing_secrets(section):
            sinks.append(tracker_sink(settings, name))
    problems += integration_problems(
        settings=settings,
        sinks=sinks,
        book=app_ctx.book if settings.calendar.enabled else None,
        unreachable=_cannot_check,
    )
    if problems:
        raise problems_error(problems)
    out.print(
        output.styled(
            ("Configuration valid", "green"),
            f": {len(catalog.rules)} rules enabled, {len(catalog.disabled)} disabled, "
            f"{len(settings.aws.targets)} AWS target(s).",
        )
    )


def _cannot_check(sink: TicketSink, exc: TicketError) -> str:
    return f"tickets.{sink.name}: cannot check the mapping: {exc}"


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or migrate the database schema to this version's."""
    engine = _ctx(ctx).engine(check_schema=False)
    before, after = db.upgrade(engine)
    where = db.shown_url(engine)
    # A URL is printed whole (never wrapped) and literally ("[::1]" is not markup).
    if before == after:
        out.print(f"{where} is already at schema revision {after}.", markup=False, soft_wrap=True)
    else:
        out.print(
            f"{where} upgraded from {before or 'empty'} to schema revision {after}.",
            markup=False,
            soft_wrap=True,
        )


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the database's schema revision and the one this version needs."""
    engine = _ctx(ctx).engine(check_schema=False)
    out.print(
        f"database {db.shown_url(engine)}: {db.current_revision(engine) or 'empty'}; "
        f"this version needs: {db.head_revision()}",
        markup=False,
        soft_wrap=True,
    )


@app.command()
def health(ctx: typer.Context) -> None:
    """Exit 0 when healthy: the schema is current and, while `serve` listens, /readyz says ready.

    The image's HEALTHCHECK: a container whose database is behind this version fails it, and
    so does a `serve` that cannot reach its database.
    """
    import socket

    import httpx

    app_ctx = _ctx(ctx)
    app_ctx.engine()  # an outdated or missing schema is an error here (exit 2)
    server = app_ctx.settings.server
    host = "127.0.0.1" if server.host in {"0.0.0.0", "::", ""} else server.host  # noqa: S104
    try:
        socket.create_connection((host, server.port), timeout=2).close()
    except OSError:
        out.print("healthy: the schema is current (serve is not listening here).")
        return
    try:
        answer = httpx.get(f"http://{host}:{server.port}/readyz", timeout=5)
    except httpx.HTTPError as exc:
        raise ConfigError(f"serve on {host}:{server.port} did not answer /readyz: {exc}") from exc
    if answer.status_code != 200:
        raise ConfigError(
            f"serve on {host}:{server.port} is not ready (/readyz {answer.status_code})"
        )
    out.print(f"healthy: the schema is current and serve on {host}:{server.port} is ready.")


@app.command()
def serve(ctx: typer.Context) -> None:
    """Run the Slack bot, ticket sync and tracker webhooks, /healthz, /readyz, /metrics."""
    from bot.server import serve as run_server

    app_ctx = _ctx(ctx)
    settings = app_ctx.settings
    if not (settings.slack.enabled or settings.tickets.enabled() or settings.calendar.enabled):
        sections = " / ".join(f"tickets.{name}" for name in TRACKERS.names())
        raise ConfigError(
            "nothing to serve: set slack.enabled (and the Slack secrets) to run the bot, or "
            f"enable a tracker ({sections}) or the calendar; see the README"
        )
    require_secrets(missing_secrets(settings))  # serve uses them all: name every one missing
    engine = app_ctx.engine()
    if engine.dialect.name == "sqlite":
        import structlog

        # A log line, not console text: with logging.format json, every line of serve is JSON.
        structlog.get_logger("bot.server").warning(
            "serve.sqlite_single_process",
            note="SQLite database: run a single `serve` process (use PostgreSQL for more than one)",
        )
    run_server(settings=settings, catalog=app_ctx.catalog, engine=engine)


def _outbox_status(ctx: typer.Context, sink: str, what: str) -> None:
    """Counts per state and the items that are stuck, with the far side's last error."""
    from ledger import outbox
    from ledger.models import OutboxStatus

    with _ctx(ctx).sessions()() as session:
        counts = outbox.counts(session=session, sink=sink)
        out.print(f"{what}: " + ", ".join(f"{counts.get(str(s), 0)} {s}" for s in OutboxStatus))
        for item in outbox.stuck(session=session, sink=sink):
            out.print(
                f"  {item.key} ({item.status}, {item.attempts} attempt(s)): {item.last_error}",
                markup=False,
            )


def _outbox_retry(ctx: typer.Context, sink: str, what: str) -> None:
    """Queue a sink's failed items again."""
    from ledger import outbox

    with db.transaction(_ctx(ctx).sessions()) as session:
        n = outbox.retry_failed(session=session, sink=sink, now=utcnow())
    out.print(f"{n} failed {what} item(s) queued again.")


def _outbox_sinks(ctx: typer.Context, sink: str | None) -> list[str]:
    """The sinks to show: `--sink`, else every configured one and every one with items."""
    from ledger import outbox

    settings = _ctx(ctx).settings
    configured = {"slack"} if settings.slack.enabled else set()
    configured |= {n for n, s in settings.tickets.sections().items() if s.enabled}
    configured |= set(settings.events.enabled())
    with _ctx(ctx).sessions()() as session:
        recorded = set(outbox.sinks(session=session))
    if sink is not None:
        known_names = {"slack", *settings.tickets.sections(), *settings.events.sections()}
        if sink not in configured | recorded | known_names:
            known = ", ".join(sorted(configured | recorded)) or "none yet"
            raise ConfigError(f"--sink: unknown sink {sink!r}; known: {known}")
        return [sink]
    return sorted(configured | recorded)


Sink = Annotated[str | None, typer.Option("--sink", help="Only this sink (slack, jira, ...).")]


@outbox_app.command("status")
def outbox_status(ctx: typer.Context, sink: Sink = None) -> None:
    """Pending, delivered and failed work per sink, with the far side's last error."""
    names = _outbox_sinks(ctx, sink)
    if not names:
        out.print("Nothing has been recorded for delivery, and no sink is enabled.")
    for name in names:
        _outbox_status(ctx, name, name)


@outbox_app.command("retry")
def outbox_retry(ctx: typer.Context, sink: Sink = None) -> None:
    """Queue failed work again (after fixing what the far side refused)."""
    for name in _outbox_sinks(ctx, sink):
        _outbox_retry(ctx, name, name)


@slack_app.command("status")
def slack_status(ctx: typer.Context) -> None:
    """Slack messages waiting, delivered and failed (with Slack's error)."""
    _outbox_status(ctx, "slack", "Slack messages")


@slack_app.command("retry")
def slack_retry(ctx: typer.Context) -> None:
    """Queue failed Slack messages again (after fixing the channel, scopes or token)."""
    _outbox_retry(ctx, "slack", "Slack message")


@slack_app.command("flush")
def slack_flush(ctx: typer.Context) -> None:
    """Deliver pending Slack messages now, from this process (no `serve` needed)."""
    from bot.server import build_services

    app_ctx = _ctx(ctx)
    if not app_ctx.settings.slack.enabled:
        raise ConfigError("slack.enabled is false: nothing to deliver")
    services = build_services(
        settings=app_ctx.settings, catalog=app_ctx.catalog, engine=app_ctx.engine()
    )
    done = services.delivery.run_once()
    out.print(f"{done['delivered']} delivered, {done['refreshed']} message(s) re-rendered.")


def _trackers(app_ctx: Context, tracker: str | None) -> list[str]:
    """The enabled trackers (`--tracker`: that one), or an error saying how to enable one."""
    known = TRACKERS.names()
    if tracker is not None and tracker not in known:
        raise ConfigError(f"--tracker: unknown tracker {tracker!r}; known: {', '.join(known)}")
    chosen = [name for name in app_ctx.settings.tickets.enabled() if tracker in (None, name)]
    if not chosen:
        wanted = f"tickets.{tracker}.enabled is false" if tracker else "no tracker is enabled"
        switches = " or ".join(f"tickets.{name}.enabled" for name in known)
        raise ConfigError(f"{wanted}: set {switches}")
    return chosen


def _syncs(app_ctx: Context, tracker: str | None) -> list[Any]:
    """The chosen trackers' syncs: these need the trackers' credentials, no other."""
    from bot.scanning import rechecker
    from bot.tickets import ticket_syncs

    chosen = _trackers(app_ctx, tracker)

    # A ticket a person closed: re-check the resource now, as `serve` does.
    check = rechecker(
        catalog=app_ctx.catalog, settings=app_ctx.settings, sessions=app_ctx.sessions()
    )

    return ticket_syncs(
        settings=app_ctx.settings,
        catalog=app_ctx.catalog,
        sessions=app_ctx.sessions(),
        clock=utcnow,
        check=check,
        only=chosen,
    )


Tracker = Annotated[
    str | None,
    typer.Option("--tracker", help=f"Only this tracker ({', '.join(TRACKERS.names())})."),
]


@tickets_app.command("sync")
def tickets_sync(
    ctx: typer.Context,
    tracker: Tracker = None,
    poll: Annotated[
        bool, typer.Option(help="Also ask the tracker now what people changed there.")
    ] = False,
) -> None:
    """Create and update tickets now (what `serve` does every tickets.<tracker>.interval)."""
    for sync in _syncs(_ctx(ctx), tracker):
        polled = sync.poll(force=True) if poll else None
        done = sync.run_once()
        line = (
            f"{sync.tracker}: {done['planned']} new item(s) queued; {done['delivered']} "
            f"delivered, {done['retrying']} to retry later, {done['failed']} refused."
        )
        if polled is not None:
            line += " From the tracker: " + ", ".join(f"{v} {k}" for k, v in polled.items()) + "."
        out.print(line)


@tickets_app.command("status")
def tickets_status(ctx: typer.Context, tracker: Tracker = None) -> None:
    """Pending, delivered and failed ticket work per tracker, with the tracker's last error."""
    for name in _trackers(_ctx(ctx), tracker):  # from the database: no tracker credentials
        _outbox_status(ctx, name, TRACKERS.get(name).title)


@tickets_app.command("retry")
def tickets_retry(ctx: typer.Context, tracker: Tracker = None) -> None:
    """Queue refused ticket work again (after fixing the mapping in the config)."""
    for name in _trackers(_ctx(ctx), tracker):  # the next sync delivers it, with credentials
        _outbox_retry(ctx, name, f"{TRACKERS.get(name).title} ticket")


def _sweep(
    app_ctx: Context,
    *,
    sessions: sessionmaker[Session] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> dict[str, int]:
    from bot.reminders import ReminderSweep

    book = app_ctx.book
    sweep = ReminderSweep(
        tasks=book.tasks,
        calendar=book.calendar,
        sessions=sessions or app_ctx.sessions(),
        clock=clock or utcnow,
    )
    return sweep.run_once()


def _not_made(app_ctx: Context, session: Session, now: datetime, until: datetime) -> list[str]:
    """Why a read of the calendar may miss occurrences: `tasks list` and `export-ics` only read
    (a read that swept would send reminders as a side effect), so they say what is not made."""
    from ledger.tasks import unmade
    from rules.tasks import all_leads

    book = app_ctx.book
    tasks = list(book.tasks.tasks.values())
    clock = book.calendar_clock
    # How far the sweep makes occurrences (bot.reminders.ReminderSweep.run_once).
    made_until = now + max(timedelta(days=book.calendar.horizon_days), all_leads(tasks))
    notes = []
    missing = unmade(
        session=session, tasks=tasks, clock=clock, now=now, until=min(until, made_until)
    )
    if missing:
        first = min(missing.values())
        ids = ", ".join(sorted(missing)[:5]) + (", …" if len(missing) > 5 else "")
        notes.append(
            f"Not shown: {len(missing)} task(s) have occurrences due from {first} that are not "
            f"made yet ({ids}). The reminder sweep makes them: `compliancebot serve` runs it "
            f"every calendar.sweep_interval, `compliancebot tasks sweep` once."
        )
    edge = clock.today(made_until)  # the last day a sweep now makes
    beyond = (
        d for t in tasks for d in t.due_dates(edge, clock.today(until)) if clock.due_at(d) <= until
    )
    if next(beyond, None) is not None:
        notes.append(
            f"Not shown: occurrences after {edge}: they are made "
            f"calendar.horizon_days ({book.calendar.horizon_days}) days ahead."
        )
    return notes


@tasks_app.command("list")
def tasks_list(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, max=730, help="How far ahead.")] = 30,
) -> None:
    """Open occurrences: overdue first, then what falls due in the next DAYS days."""
    from rich.table import Table

    from bot.slack.task_blocks import when
    from ledger.tasks import upcoming

    app_ctx = _ctx(ctx)
    book = app_ctx.book
    now = utcnow()
    with app_ctx.sessions()() as session:
        rows = upcoming(session=session, now=now, until=now + timedelta(days=days))
        notes = _not_made(app_ctx, session, now, now + timedelta(days=days))
        table = Table(title=f"Compliance tasks (next {days} days)")
        for name in ("ID", "Due", "When", "Task", "Policy", "Owner", "Evidence"):
            table.add_column(name, overflow="fold")
        shown = 0
        for occurrence in rows:
            view = book.view(occurrence, now)
            if view is None:
                continue
            shown += 1
            style = "red" if view.overdue else ""
            table.add_row(
                str(view.occurrence_id),
                f"{view.due_on:%Y-%m-%d}",
                output.styled((when(view), style)),
                view.title,
                view.policy,
                view.owner,
                view.evidence,
            )
    if shown:
        out.print(table)
    else:
        out.print(f"No compliance tasks are due in the next {days} days.")
    for note in notes:
        out.print(note, style="yellow")


@tasks_app.command("done")
def tasks_done(
    ctx: typer.Context,
    occurrence_id: Annotated[
        int,
        typer.Argument(
            parser=_row_id,
            metavar="OCCURRENCE_ID",
            help="The occurrence (tasks list shows it).",
        ),
    ],
    by: Annotated[str, typer.Option("--by", help="Who did it.")],
    note: Annotated[str | None, typer.Option(help="What was done.")] = None,
    link: Annotated[str | None, typer.Option(help="A link to the evidence.")] = None,
    file: Annotated[
        Path | None, typer.Option(help="A file kept as evidence (with its SHA-256).")
    ] = None,
) -> None:
    """Complete an occurrence, with the evidence its task asks for."""
    from bot.reminders import evidence_store
    from ledger import tasks as occurrences

    app_ctx = _ctx(ctx)
    book = app_ctx.book
    kept = None
    with db.transaction(app_ctx.sessions()) as session:
        occurrence = occurrences.get_occurrence(session=session, occurrence_id=occurrence_id)
        task = book.tasks.tasks.get(occurrence.task_id)
        if task is None:
            raise ConfigError(f"task {occurrence.task_id!r} is no longer in the catalog")
        # The ledger's evidence rules, asked before a file is kept: a refused completion
        # leaves no file behind.
        problems = occurrences.evidence_problems(
            task.evidence, note=note, link=link, has_file=file is not None
        )
        if problems:
            raise ConfigError("; ".join(f"--{field}: {why}" for field, why in problems.items()))
        if file is not None:
            if not file.is_file():
                raise ConfigError(f"--file: {file} is not a readable file")
            try:
                stream = file.open("rb")
            except OSError as exc:
                raise ConfigError(f"--file: {file} cannot be read: {exc.strerror}") from exc
            # Kept before the completion is recorded: a done occurrence always has its file.
            with stream:
                kept = evidence_store(app_ctx.settings)(file.name, occurrences.read_chunks(stream))
        done = occurrences.complete(
            session=session,
            occurrence_id=occurrence_id,
            task=task,
            user=by,
            now=utcnow(),
            note=note,
            link=link,
            file=kept,
        )
        timing = "on time" if done.on_time else "late"
        out.print(f"{task.title} due {done.due_on}: done by {by}, {timing}.")
    if kept is not None:
        out.print(f"Evidence kept at {kept.location} (sha256 {kept.sha256}).")


@tasks_app.command("export-ics")
def tasks_export_ics(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Where to write the .ics file ('-': stdout).")],
    days: Annotated[int, typer.Option(min=1, max=730, help="How far ahead.")] = 90,
) -> None:
    """Write the calendar feed (open occurrences, remediation due dates) as an .ics file."""
    from bot.ics import feed

    app_ctx = _ctx(ctx)
    book = app_ctx.book
    now = utcnow()
    with app_ctx.sessions()() as session:
        data = feed(
            session=session,
            book=book,
            sla_days={str(k): v for k, v in book.calendar.sla_days.items()},
            now=now,
            horizon_days=days,
        )
        notes = _not_made(app_ctx, session, now, now + timedelta(days=days))
    for note in notes:  # on stderr: stdout may be the feed itself
        err.print(note, style="yellow")
    if str(path) == "-":
        sys.stdout.buffer.write(data)
    else:
        path.write_bytes(data)
        out.print(f"Wrote {path} ({data.count(b'BEGIN:VEVENT')} events).")


@schedule_app.command("status")
def schedule_status(ctx: typer.Context) -> None:
    """The stored jobs with their next run, and which process leads (without starting one)."""
    from bot.scheduler import schedule_state

    state = schedule_state(_ctx(ctx).engine())
    out.print(f"Leader: {state.leader}")
    if not state.jobs:
        out.print("No jobs stored yet: `compliancebot serve` stores them when it first leads.")
    for job_id, at in state.jobs:
        out.print(f"  {job_id:<24} {f'{at:%Y-%m-%d %H:%M:%S} UTC' if at else 'paused'}")


@tasks_app.command("feed-url")
def tasks_feed_url(
    ctx: typer.Context,
    base: Annotated[str, typer.Option(help="Where `serve` is reached, e.g. https://bot.acme.com")],
    user: Annotated[
        str | None, typer.Option(help="A Slack user ID: a feed of only their tasks and claims.")
    ] = None,
) -> None:
    """The URL to subscribe to in Google Calendar or Outlook (everyone's, or one user's)."""
    from bot.ics import feed_url

    secret = _ctx(ctx).settings.calendar.feed_token
    if secret is None:
        raise ConfigError(
            "calendar.feed_token is not set: set COMPLIANCEBOT_CALENDAR__FEED_TOKEN (or put it "
            "in the secrets file) to turn the feed on"
        )
    sys.stdout.write(feed_url(base, secret.get_secret_value(), user) + "\n")  # never wrapped


class HistoryFormat(StrEnum):
    """What `tasks history` prints."""

    table = "table"
    json = "json"


def _task_id(value: str) -> str:
    """--task: written like a task id (rules.tasks.TASK_ID_PATTERN), else a message saying so."""
    from rules.tasks import is_task_id

    if not is_task_id(value):
        shown = repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
        raise typer.BadParameter(
            f"{shown} is not a task id: lower case letters, digits and _, 3 to 80 characters "
            "(`compliancebot tasks list` shows them)"
        )
    return value


def _day(value: str) -> date:
    """--since: an ISO date."""
    try:
        if len(value) > 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        shown = repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
        raise typer.BadParameter(f"{shown} is not a date: write YYYY-MM-DD") from None


@tasks_app.command("history")
def tasks_history(
    ctx: typer.Context,
    task: Annotated[
        str | None, typer.Option("--task", parser=_task_id, help="Only this task (its id).")
    ] = None,
    since: Annotated[
        date | None,
        typer.Option(
            parser=_day,
            metavar="YYYY-MM-DD",
            help="Only what was completed on or after this day (in calendar.timezone).",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    output_format: Annotated[
        HistoryFormat, typer.Option("--output", "-o", help="table or json.")
    ] = HistoryFormat.table,
) -> None:
    """Completed occurrences, the latest first: who, when, on time or late, and the evidence."""
    from ledger.tasks import completions, count_completions

    app_ctx = _ctx(ctx)
    book = app_ctx.book
    zone = book.calendar_clock.zone
    after = None if since is None else datetime.combine(since, time(), zone).astimezone(UTC)
    with app_ctx.sessions()() as session:
        rows = completions(session=session, task_id=task, since=after, limit=limit)
        total = count_completions(session=session, task_id=task, since=after)
    titles = {t.id: t.title for t in book.tasks.tasks.values()}
    if task is not None and task not in titles and not total:
        raise typer.BadParameter(
            f"no task has the id {task!r} and nothing was completed under it "
            "(`compliancebot tasks list` shows the tasks)",
            param_hint="--task",
        )
    if output_format == HistoryFormat.json:
        document = {
            "schema_version": output.JSON_SCHEMA_VERSION,
            "total": total,
            "completions": [_completion_json(c, titles.get(c.task_id)) for c in rows],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    _history_table(rows, titles, total=total, zone=zone)


def _utc_iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _completion_json(c: Completion, title: str | None) -> dict[str, Any]:
    """One completion in `tasks history --output json`."""
    late = c.late_by
    return {
        "occurrence_id": c.occurrence_id,
        "task_id": c.task_id,
        "title": title,  # null: the task is no longer in the catalog
        "due_on": c.due_on.isoformat(),
        "due_at": _utc_iso(c.due_at),
        "completed_at": _utc_iso(c.completed_at),
        "completed_by": c.completed_by,
        "on_time": c.on_time,
        "late_seconds": None if late is None else int(late.total_seconds()),
        "note": c.note,
        "link": c.link,
        "evidence_file": None
        if c.file is None
        else {"name": c.file_name, "sha256": c.sha256, "location": c.file},
    }


def _history_table(
    rows: list[Completion], titles: dict[str, str], *, total: int, zone: ZoneInfo
) -> None:
    from rich.table import Table

    from bot.slack.task_blocks import local_time, timeliness

    if not rows:
        out.print("No completed compliance tasks match.")
        return
    table = Table(title=f"Completed compliance tasks ({len(rows)} of {total}, latest first)")
    for name in ("ID", "Task", "Due", "Completed", "By", "Timing", "Note", "Link", "Evidence"):
        table.add_column(name, overflow="fold")
    for c in rows:
        title = titles.get(c.task_id)
        evidence = ""
        if c.file is not None:
            evidence = f"{c.file_name}\nsha256 {c.sha256}\nkept at {c.file}"
        table.add_row(
            str(c.occurrence_id),
            f"{title}\n({c.task_id})" if title else f"{c.task_id} (no longer in the catalog)",
            f"{c.due_on:%Y-%m-%d}",
            local_time(c.completed_at, zone),
            c.completed_by,
            output.styled((timeliness(c), "green" if c.on_time else "red")),
            c.note or "",
            c.link or "",
            evidence,
        )
    out.print(table)
    if total > len(rows):
        out.print(f"{total - len(rows)} more: raise --limit or narrow with --since/--task.")


MAX_DRY_RUN_SHIFT = timedelta(days=366)


def _instant(value: str) -> datetime:
    """--now: an ISO date or date and time (local to calendar.timezone unless it has an offset)."""
    try:
        if len(value) > 40:
            raise ValueError
        return datetime.fromisoformat(value)
    except ValueError:
        shown = repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
        raise typer.BadParameter(
            f"{shown} is not a date and time: write e.g. 2027-01-20T09:30 (in calendar.timezone) "
            "or 2027-01-20T08:30Z"
        ) from None


@tasks_app.command("sweep")
def tasks_sweep(
    ctx: typer.Context,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Show the reminders and escalations a sweep would send, and record nothing.",
        ),
    ] = False,
    now: Annotated[
        datetime | None,
        typer.Option(
            "--now",
            parser=_instant,
            metavar="ISO-DATETIME",
            help="With --dry-run: sweep as if it were this moment (within a year of now), "
            "e.g. 2027-01-20T09:30 (calendar.timezone) or 2027-01-20T08:30Z.",
        ),
    ] = None,
) -> None:
    """Make upcoming occurrences and record due reminders (what `serve` does on a schedule)."""
    app_ctx = _ctx(ctx)
    if not dry_run:
        if now is not None:
            raise typer.BadParameter(
                "only with --dry-run: a sweep that records reminders runs at the real time "
                "(recorded for another moment, they would be posted now and the real ones "
                "held back)",
                param_hint="--now",
            )
        done = _sweep(app_ctx)
        out.print(
            f"{done['occurrences']} new occurrence(s); {done['reminders']} reminder(s) and "
            f"{done['escalations']} escalation(s) recorded for Slack."
        )
        return
    real = utcnow()
    at = real
    if now is not None:
        at = now if now.tzinfo else now.replace(tzinfo=app_ctx.book.calendar_clock.zone)
        at = at.astimezone(UTC)
        if abs(at - real) > MAX_DRY_RUN_SHIFT:
            raise typer.BadParameter(
                f"{now.isoformat()} is more than a year from now ({real:%Y-%m-%d}): a dry run "
                "looks at most a year ahead or back",
                param_hint="--now",
            )
    _dry_run(app_ctx, at)


@contextmanager
def _rolled_back(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions on one connection whose commits never reach the database: a dry run runs the
    real sweep (so it shows what a sweep decides, not a copy of its rules), reads what it
    wrote, and everything is rolled back at the end."""
    with engine.connect() as connection:
        outer = connection.begin()
        try:
            yield sessionmaker(
                bind=connection, join_transaction_mode="rollback_only", expire_on_commit=False
            )
        finally:
            outer.rollback()


def _dry_run(app_ctx: Context, at: datetime) -> None:
    from rich.table import Table
    from structlog.contextvars import bound_contextvars

    from bot.reminders import SINK
    from bot.slack.task_blocks import duration, local_time
    from ledger.tasks import ESCALATE, REMIND, last_outbox_id, notices_recorded

    book = app_ctx.book
    zone = book.calendar_clock.zone
    # The sweep logs what it recorded: each of its lines says it was rolled back.
    with _rolled_back(app_ctx.engine()) as sandbox, bound_contextvars(dry_run=True):
        with sandbox() as session:
            before = last_outbox_id(session=session)
        done = _sweep(app_ctx, sessions=sandbox, clock=lambda: at)
        with sandbox() as session:
            notices = notices_recorded(
                session=session,
                after_id=before,
                at=at,
                kinds=(REMIND, ESCALATE),
            )
            table = Table(title=f"What a sweep at {local_time(at, zone)} would send ({SINK})")
            for name in ("Kind", "To", "Task", "Due", "ID", "Why"):
                table.add_column(name, overflow="fold")
            for notice in notices:
                occurrence = notice.occurrence
                task = book.tasks.tasks.get(occurrence.task_id)
                if notice.kind == ESCALATE:
                    kind, style = "escalation", "red"
                    why = f"round {notice.detail}: overdue by {duration(at - occurrence.due_at)}"
                else:
                    kind, style = "reminder", ""
                    why = _reminder_why(str(notice.detail), zone)
                table.add_row(
                    output.styled((kind, style)),
                    notice.to,
                    task.title if task else occurrence.task_id,
                    f"{occurrence.due_on:%Y-%m-%d}",
                    # Made by this dry run: its id is rolled back with it.
                    "(not made yet)" if occurrence.created_at == at else str(occurrence.id),
                    why,
                )
    out.print(
        f"Dry run at {local_time(at, zone)}: nothing was recorded and nothing is sent.",
        style="bold",
    )
    out.print(
        f"A sweep then would make {done['occurrences']} occurrence(s) and record "
        f"{done['reminders']} reminder(s) and {done['escalations']} escalation(s), as if no "
        "sweep ran before it (after downtime only the latest reminder of each occurrence goes "
        "out)."
    )
    if notices:
        out.print(table)


def _reminder_why(tag: str, zone: ZoneInfo) -> str:
    """A reminder's tag (bot.reminders.ReminderSweep._tag) as people say it."""
    from bot.slack.task_blocks import duration, local_time

    if tag.startswith("snooze") and tag[6:].isdigit():
        until = datetime.fromtimestamp(int(tag[6:]), UTC)
        return f"the snooze until {local_time(until, zone)} ended"
    if tag.startswith("lead") and tag[4:].isdigit():
        lead = timedelta(seconds=int(tag[4:]))
        return f"{duration(lead)} before the due time" if lead else "at the due time"
    return tag


# ---- audit -------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    every: Annotated[
        bool, typer.Option("--all", help="List every break, not only the first.")
    ] = False,
) -> None:
    """Walk the audit trail's hash chain: exit 0 when intact, 1 naming the first entry changed,
    removed or inserted (with audit.hmac_key, from COMPLIANCEBOT_AUDIT__HMAC_KEY, when set)."""
    from ledger import audit

    app_ctx = _ctx(ctx)
    with app_ctx.sessions()() as session:
        report = audit.verify(session=session, key=app_ctx.settings.audit.key())
    if report.intact:
        out.print(report.summary(), markup=False, soft_wrap=True)
        return
    line = output.styled(("error:", "red"), f" {report.summary()}")
    err.print(line, highlight=False, soft_wrap=True)
    if every:
        for problem in report.problems[1:]:
            err.print(output.styled(f"  {problem.message}"), highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    ctx: typer.Context,
    path: Annotated[
        Path, typer.Option("--output", "-o", help="The JSON Lines file to write ('-': stdout).")
    ],
    since: Annotated[
        date | None,
        typer.Option(parser=_day, metavar="YYYY-MM-DD", help="Only entries from this day (UTC)."),
    ] = None,
) -> None:
    """Write the audit trail as JSON Lines, one entry a line with its hashes, in chain order."""
    from bot.files import replacing
    from ledger import audit

    app_ctx = _ctx(ctx)
    after = None if since is None else datetime.combine(since, time(), UTC)
    with app_ctx.sessions()() as session:
        entries = audit.export(session=session, since=after)
        if str(path) == "-":
            for entry in entries:
                sys.stdout.write(json.dumps(entry, ensure_ascii=False) + "\n")
            return
        count = 0
        with replacing(path, "w") as handle:
            for entry in entries:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
                count += 1
    out.print(f"Wrote {count} audit entries to {path}.", markup=False, soft_wrap=True)


# ---- evidence packs ----------------------------------------------------------------------------

evidence_app = typer.Typer(
    help="Evidence packs for auditors: make one (a signed zip), verify one.", no_args_is_help=True
)
app.add_typer(evidence_app, name="evidence")


def _fail(message: str) -> typer.Exit:
    """Bad input: one line naming it on stderr; the caller raises the returned Exit (code 2)."""
    err.print(output.styled(("error:", "red"), f" {message}"), highlight=False, soft_wrap=True)
    return typer.Exit(2)


@evidence_app.command("pack")
def evidence_pack(
    ctx: typer.Context,
    framework: Annotated[
        str, typer.Option(help="The framework (`compliancebot status` lists them).")
    ],
    start: Annotated[
        date,
        typer.Option(
            "--from", parser=_day, metavar="YYYY-MM-DD", help="The period's first day (UTC)."
        ),
    ],
    end: Annotated[
        date,
        typer.Option(
            "--to", parser=_day, metavar="YYYY-MM-DD", help="The period's last day (UTC)."
        ),
    ],
    path: Annotated[Path, typer.Option("--output", "-o", help="The zip file to write.")],
    account: Annotated[str | None, typer.Option(help="Only this AWS account's findings.")] = None,
) -> None:
    """One zip for an auditor: the report as of --to (HTML, CSV), the task completions of the
    period with their evidence files, the finding history, the audit trail, and a manifest of
    SHA-256 hashes, signed with a key derived from audit.hmac_key when it is set."""
    from bot.evidence import PackError, build_pack
    from bot.files import WriteError
    from ledger.history import last_scan_at

    app_ctx = _ctx(ctx)
    catalog = app_ctx.catalog
    if framework not in catalog.frameworks:
        known = ", ".join(sorted(catalog.frameworks))
        raise _fail(f"--framework: unknown framework {framework!r}; known: {known}")
    if start > end:
        raise _fail(f"--from {start} is after --to {end}: the period would be empty")
    now = utcnow()
    if end > now.astimezone(UTC).date():
        raise _fail(f"--to {end} is in the future (today is {now.astimezone(UTC):%Y-%m-%d} UTC)")
    since = datetime.combine(start, time(), UTC)
    until = min(datetime.combine(end, time.max, UTC), now)  # today: as of now
    settings = app_ctx.settings
    tasks = list(app_ctx.book.tasks.tasks.values()) if settings.calendar.enabled else []
    with app_ctx.sessions()() as session:
        if last_scan_at(session=session, at=until) is None:
            raise _fail(f"--to {end}: no scan had finished by then, so there is nothing to report")
        try:
            summary = build_pack(
                session=session,
                settings=settings,
                catalog=catalog,
                tasks=tasks,
                framework=framework,
                start=since,
                end=until,
                now=now,
                target=path,
                account=account,
                key=settings.audit.key(),
                tool_version=_version(),
            )
        except (PackError, WriteError) as exc:
            raise _fail(f"-o: {exc}") from None
    signed = (
        f"signed (key id {summary.signed_with})"
        if summary.signed_with
        else "unsigned (audit.hmac_key is not set)"
    )
    missing = f", {len(summary.missing)} with a problem" if summary.missing else ""
    out.print(
        f"Wrote {path}: {summary.files} files, {summary.completions} task completions "
        f"({summary.evidence_files} evidence files{missing}), {summary.events} finding events, "
        f"{summary.audit_entries} audit entries; {signed}.",
        markup=False,
        soft_wrap=True,
    )
    for problem in summary.missing:
        err.print(
            output.styled(
                ("warning:", "yellow"),
                f" evidence of occurrence {problem['occurrence_id']} ({problem['location']}): "
                f"{problem['reason']}",
            ),
            highlight=False,
            soft_wrap=True,
        )


@evidence_app.command("verify")
def evidence_verify(
    ctx: typer.Context,
    pack: Annotated[Path, typer.Argument(help="The pack (zip) to check.")],
) -> None:
    """Check a pack without extracting it: every file's SHA-256 and size against the manifest,
    nothing missing or extra, the signature (with audit.hmac_key). Exit 0 when intact, 1 with
    one line per problem."""
    from bot.evidence import PackError, verify_pack

    try:
        result = verify_pack(pack, key=_ctx(ctx).settings.audit.key())
    except PackError as exc:
        raise _fail(str(exc)) from None
    if result.intact:
        out.print(result.summary(), markup=False, soft_wrap=True)
        return
    for problem in result.problems:
        err.print(output.styled(("error:", "red"), f" {problem}"), highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def demo(
    ctx: typer.Context,
    database: Annotated[
        str | None, typer.Option(help="Database URL (default: the configured one).")
    ] = None,
) -> None:
    """Scan an embedded simulated AWS account (moto) and show findings and posture."""
    from bot.demo import run_demo

    run_demo(_ctx(ctx), out=out, database=database)


agent_cli.register(
    app,
    lambda ctx: (_ctx(ctx).settings, _ctx(ctx).sessions(), _ctx(ctx).catalog),
    lambda line: out.print(line, markup=False, soft_wrap=True),
)
archive_cli.register(
    app,
    lambda ctx: (_ctx(ctx).settings, _ctx(ctx).sessions()),
    lambda line: out.print(line, markup=False, soft_wrap=True),
)


def main() -> None:
    """Entry point: user errors print one clear message and exit 2, never a traceback."""
    try:
        app()
    except CompliancebotError as exc:
        # The message quotes files and values, which are not markup; one line stays one line.
        err.print(output.styled(("error:", "red"), f" {exc}"), highlight=False, soft_wrap=True)
        sys.exit(2)
