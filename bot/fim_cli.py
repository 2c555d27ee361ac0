"""`compliancebot fim baseline|scan|accept`: file integrity monitoring of this host."""

from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING, Annotated

import typer

from bot import output
from bot.scanning import ScanOutcome, run_scan, utcnow
from ledger import fim as baseline_store
from ledger.db import transaction
from ledger.queries import list_findings
from rules.errors import CompliancebotError
from scanners.host import fim
from scanners.host.fim import FileState, FimCollector, display_path, undisplay_path
from scanners.model import ScanError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from bot.cli import Context
    from bot.settings import Settings

fim_app = typer.Typer(
    help="File integrity monitoring: baseline the watched files, scan for changes, accept them.",
    no_args_is_help=True,
)

out = output.PlainConsole()
err = output.PlainConsole(stderr=True)
MAX_USER = 128
MAX_REASON = 2000
SHOWN = 50  # changes and errors printed; the rest are counted


class FimUsageError(CompliancebotError):
    """A `fim` command cannot do what was asked; the message says why and what would work."""


def _app(ctx: typer.Context) -> Context:
    from bot.cli import _ctx  # the root command's context (bot.cli imports this module)

    return _ctx(ctx)


def _text(value: str, *, name: str, limit: int) -> str:
    value = value.strip()
    if not value or len(value) > limit or not value.isprintable():
        raise typer.BadParameter(
            f"give 1 to {limit} printable characters (no control characters)", param_hint=name
        )
    return value


def _user(value: str) -> str:
    return _text(value, name="--user", limit=MAX_USER)


def _reason(value: str) -> str:
    return _text(value, name="--reason", limit=MAX_REASON)


def _default_user() -> str:
    try:
        return getpass.getuser()[:MAX_USER] or "cli"
    except (KeyError, OSError):
        return "cli"


def _print_errors(errors: list[ScanError]) -> None:
    for e in errors[:SHOWN]:
        err.print(output.styled(("not checked:", "yellow"), f" {e.code}: {e.message}"))
    if len(errors) > SHOWN:
        err.print(f"... and {len(errors) - SHOWN} more errors (see the scan record).")


# ---- baseline ----------------------------------------------------------------------------------


@fim_app.command()
def baseline(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="Replace this host's existing baseline.")
    ] = False,
    user: Annotated[
        str | None, typer.Option(parser=_user, help="Who records it (default: the OS user).")
    ] = None,
    reason: Annotated[str, typer.Option(parser=_reason, help="Why.")] = "initial baseline",
) -> None:
    """Hash every watched file and record the result as this host's accepted baseline."""
    app_ctx = _app(ctx)
    options = app_ctx.settings.fim.options()
    sessions = app_ctx.sessions()
    with sessions() as session:
        existing = baseline_store.baseline_size(session=session, host=options.host)
    if existing and not force:  # before the walk, which can take minutes
        raise baseline_store.BaselineExistsError(
            f"host {options.host} already has a baseline of {existing} files; `fim accept PATH` "
            "accepts a change, --force replaces the whole baseline"
        )
    found = fim.snapshot(options, verify=True)
    with transaction(sessions) as session:
        count = baseline_store.record_baseline(
            session=session,
            host=options.host,
            states=found.states.values(),
            actor=user or _default_user(),
            reason=reason,
            now=utcnow(),
            force=force,
        )
    s = found.stats
    out.print(
        f"Baseline of {options.host}: {count} files ({s.hashed} hashed, "
        f"{s.hashed_bytes} bytes, {s.seconds:.1f} s); {len(found.errors)} not readable."
    )
    _print_errors(found.errors)


# ---- scan --------------------------------------------------------------------------------------


def _baseline(app_ctx: Context, host: str) -> dict[str, FileState]:
    with app_ctx.sessions()() as session:
        known = baseline_store.load_baseline(session=session, host=host)
    if not known:
        raise FimUsageError(
            f"host {host} has no baseline yet: run `compliancebot fim baseline` first (every "
            "watched file would otherwise be reported as added)"
        )
    return known


def fim_collector(
    *, settings: Settings, sessions: sessionmaker[Session], verify: bool = False
) -> FimCollector:
    """The FIM collector of this host over its stored baseline (empty when none is recorded):
    what a re-check of a host.file finding (Slack's Resolve, a closed ticket) should use."""
    options = settings.fim.options()
    with sessions() as session:
        known = baseline_store.load_baseline(session=session, host=options.host)
    return FimCollector(options=options, baseline=known, verify=verify)


def _print_changes(collector: FimCollector) -> None:
    changes = collector.changes
    for change in changes[:SHOWN]:
        what = ", ".join(change.changed)
        out.print(
            f"{change.change:<11} {display_path(change.path)}" + (f"  ({what})" if what else "")
        )
    if len(changes) > SHOWN:
        out.print(f"... and {len(changes) - SHOWN} more changes (`compliancebot findings`).")


def _summary(result: ScanOutcome, collector: FimCollector) -> None:
    s, c = result.scan, result.counts
    stats = collector.last.stats if collector.last else fim.WalkStats()
    out.print(
        f"Scan #{s.id} {s.status}: {stats.files} files checked ({stats.hashed} hashed, "
        f"{stats.skipped} unchanged), {len(collector.changes)} changed; "
        f"{c.new} new, {c.reopened} reopened, {c.resolved} resolved, "
        f"{c.still_failing} still failing."
    )
    _print_errors(result.collection.errors)


@fim_app.command()
def scan(
    ctx: typer.Context,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Hash every file, even those whose size, mtime and inode match."
        ),
    ] = False,
    output_format: Annotated[
        str, typer.Option("--output", "-o", help="table, json or ocsf.")
    ] = "table",
) -> None:
    """Compare the watched files with the baseline and store the differences as findings."""
    from bot.cli import _check_format, _emit
    from bot.server import scan_listeners

    _check_format(output_format)
    app_ctx = _app(ctx)
    settings, catalog = app_ctx.settings, app_ctx.catalog
    options = settings.fim.options()
    collector = FimCollector(
        options=options, baseline=_baseline(app_ctx, options.host), verify=verify
    )
    sessions = app_ctx.sessions()
    result = run_scan(
        catalog=catalog,
        collector=collector,
        sessions=sessions,
        trigger="fim",
        listeners=scan_listeners(settings=settings, clock=utcnow),
    )
    rule_ids = [r.id for r in catalog.rules.values() if r.resource_type in collector.resource_types]
    with sessions() as session:
        found = list_findings(
            session=session, catalog=catalog, rule_ids=rule_ids, account=options.host
        )
        summary = {
            "id": result.scan.id,
            "status": result.scan.status,
            "resources": result.scan.resources,
            "errors": result.scan.error_count,
            **result.counts.as_dict(),
        }
        if output_format == "table":
            _print_changes(collector)
        _emit(output_format, found, catalog, title="Open file integrity findings", scan=summary)
        if output_format == "table":
            _summary(result, collector)


# ---- accept ------------------------------------------------------------------------------------


def _absolute(path: str) -> str:
    # os.path, not pathlib: a name may hold surrogate escapes and ".." must collapse as text.
    return os.path.normpath(os.path.join(os.getcwd(), path))  # noqa: PTH109, PTH118


@fim_app.command()
def accept(
    ctx: typer.Context,
    path: Annotated[
        str,
        typer.Argument(
            help="A watched file, a directory (every watched file under it) or a glob; a path "
            "as findings show it (with \\n or \\xNN escapes) is understood too."
        ),
    ],
    user: Annotated[str, typer.Option(parser=_user, help="Who accepts the change.")],
    reason: Annotated[str, typer.Option(parser=_reason, help="Why it is accepted.")],
) -> None:
    """Make the current state of PATH the baseline (a file gone leaves it); audited."""
    app_ctx = _app(ctx)
    options = app_ctx.settings.fim.options()
    known = _baseline(app_ctx, options.host)
    targets = list(dict.fromkeys([_absolute(path), _absolute(undisplay_path(path))]))
    single = [t for t in targets if not fim.is_glob(t) and not os.path.isdir(t)]  # noqa: PTH112
    if len(single) == len(targets):
        candidates = set(single)
    else:  # a directory or a glob: every watched path now, and every baseline path, under it
        listing = fim.snapshot(options, baseline=known, verify=False)
        everything = known.keys() | listing.states.keys() | listing.unknown
        candidates = {p for t in targets for p in fim.iter_under(everything, t)}
    current = fim.snapshot(options, baseline=known, verify=True, paths=sorted(candidates))
    present = known.keys() | current.states.keys() | current.unknown
    watched = {p for p in candidates & present if fim.is_watched(options, p)}
    if not watched:
        raise FimUsageError(
            f"{display_path(path)}: no watched file there on {options.host} (none exists nor is "
            "in the baseline, or no fim.watch glob matches it, or fim.exclude does)"
        )
    readable = {p: current.states.get(p) for p in sorted(watched - current.unknown)}  # None: gone
    with transaction(app_ctx.sessions()) as session:
        accepted = baseline_store.accept(
            session=session,
            host=options.host,
            current=readable,
            baseline=known,
            actor=user,
            reason=reason,
            now=utcnow(),
        )
    for p in accepted[:SHOWN]:
        state = "removed from the baseline" if readable[p] is None else "accepted"
        out.print(f"{state}: {display_path(p)}")
    if len(accepted) > SHOWN:
        out.print(f"... and {len(accepted) - SHOWN} more.")
    out.print(
        f"{len(accepted)} of {len(watched)} watched paths changed and were accepted on "
        f"{options.host} by {user}; the next `fim scan` resolves their findings."
    )
    _print_errors(current.errors)
    if current.unknown & watched:
        raise typer.Exit(1)
