"""`compliancebot vulns`: import OSV advisories offline, scan this host's installed packages.

Nothing here fetches anything from the network: advisories come from files an operator
downloaded (OSV's per-ecosystem zip exports or JSON files).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import Settings

if TYPE_CHECKING:
    from scanners.host.vulns import PackageCollector

vulns_app = typer.Typer(
    help="Vulnerable installed packages: import OSV advisories (offline), scan this host.",
    no_args_is_help=True,
)

SHOWN_SKIPS = 20  # skipped advisories named on the terminal; all are counted


def package_collector(settings: Settings, sessions: sessionmaker[Session]) -> PackageCollector:
    """The host's package collector over the ledger's advisories, from the `vulns` settings."""
    from ledger.advisories import LedgerAdvisories
    from scanners.host.packages import InventorySources
    from scanners.host.vulns import PackageCollector

    v = settings.vulns
    sources = InventorySources(
        dpkg_status=v.dpkg_status,
        rpm_command=v.rpm_command,
        os_ecosystem=v.os_ecosystem,
        os_release=v.os_release,
        python_paths=tuple(v.python_paths),
        npm_paths=tuple(v.npm_paths),
        npm_max_depth=v.npm_max_depth,
        max_file_bytes=v.max_file_bytes,
    )
    return PackageCollector(host=v.host, sources=sources, advisories=LedgerAdvisories(sessions))


@vulns_app.command("import")
def import_(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="OSV advisory JSON files, directories of them, or OSV's zip exports.",
            metavar="PATH...",
        ),
    ],
) -> None:
    """Import advisories into the database; a newer `modified` replaces a stored one."""
    from bot.cli import _ctx, err, out
    from bot.scanning import utcnow
    from ledger import advisories

    app_ctx = _ctx(ctx)
    limits = advisories.Limits(max_file_bytes=app_ctx.settings.vulns.max_advisory_bytes)
    report = advisories.import_advisories(
        sessions=app_ctx.sessions(), paths=paths, now=utcnow(), limits=limits
    )
    for skipped in report.skipped_examples[:SHOWN_SKIPS]:
        err.print(f"skipped: {skipped.source}: {skipped.reason}")
    if report.skipped > SHOWN_SKIPS:
        err.print(f"... and {report.skipped - SHOWN_SKIPS} more skipped")
    with app_ctx.sessions()() as session:
        stored = advisories.count(session=session)
    out.print(
        f"Read {report.read} advisories: {report.imported} new, {report.replaced} replaced, "
        f"{report.unchanged} unchanged, {report.skipped} skipped. {stored} stored."
    )
    if report.read == 0 and report.skipped:
        raise typer.Exit(1)


@vulns_app.command("scan")
def scan(
    ctx: typer.Context,
    output_format: Annotated[
        str, typer.Option("--output", "-o", help="table, json or ocsf.")
    ] = "table",
) -> None:
    """Inventory this host's packages, match them against the advisories, store findings."""
    from bot.cli import _check_format, _ctx, _emit, err, out
    from bot.scanning import run_scan, utcnow
    from bot.server import scan_listeners
    from ledger.queries import list_findings
    from scanners.host.vulns import RESOURCE_TYPE

    _check_format(output_format)
    app_ctx = _ctx(ctx)
    settings, catalog, sessions = app_ctx.settings, app_ctx.catalog, app_ctx.sessions()
    collector = package_collector(settings, sessions)
    result = run_scan(
        catalog=catalog,
        collector=collector,
        sessions=sessions,
        trigger="vulns",
        listeners=scan_listeners(settings=settings, clock=utcnow),
    )
    rules = [r.id for r in catalog.rules.values() if r.resource_type == RESOURCE_TYPE]
    with sessions() as session:
        found = list_findings(
            session=session, catalog=catalog, rule_ids=rules, account=collector.host
        )
        s, c = result.scan, result.counts
        summary = {
            "id": s.id,
            "status": s.status,
            "host": collector.host,
            "packages": len(collector.last_inventory.packages) if collector.last_inventory else 0,
            "vulnerable": s.resources,
            "errors": s.error_count,
            **c.as_dict(),
        }
        if output_format != "table":
            _emit(output_format, found, catalog, title="Vulnerable packages", scan=summary)
            return
        table = Table(title="Vulnerable packages", expand=False)
        for column in ("ID", "Severity", "Status", "What is wrong"):
            table.add_column(column, overflow="fold")
        for f in found:
            table.add_row(str(f.id), f.severity, f.status, f.detail or f.resource_id)
        out.print(table)
    out.print(
        f"Scan #{s.id} {s.status} on {collector.host}: {summary['packages']} packages, "
        f"{s.resources} vulnerable (package, advisory) pairs, {c.new} new, {c.reopened} "
        f"reopened, {c.resolved} resolved, {c.still_failing} still failing."
    )
    for e in result.collection.errors[:SHOWN_SKIPS]:
        err.print(f"not checked: {e.service}: {e.message}")
