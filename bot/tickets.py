"""Ticket sync as configured: one `TicketSync` (integrations.ticket_sync) per enabled tracker,
its sink built by the tracker's plug-in (integrations.trackers) from its settings section."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from bot.settings import Settings, require_secrets
from integrations import trackers
from integrations.delivery import OutboxWorker
from integrations.ticket_sync import Route, TicketSync, slack_link
from integrations.tickets import TicketSink
from ledger.verification import Check
from rules.catalog import Catalog
from rules.errors import CompliancebotError


def tracker_sink(settings: Settings, name: str) -> TicketSink:
    """A registered tracker's sink as configured (settings.tickets.<name>); the secrets it
    needs must be set (an error names each one missing, with its variable)."""
    tracker = trackers.TRACKERS.get(name)
    section = settings.tickets.of(tracker)
    require_secrets(tracker.missing_secrets(section))
    sink: TicketSink = tracker.factory(section)
    if sink.name != tracker.name:  # the outbox, the tickets and the route go by this name
        raise CompliancebotError(
            f"tracker {tracker.name!r} made a sink named {sink.name!r}: they must be the same"
        )
    return sink


def jira_sink(settings: Settings) -> TicketSink:
    """The Jira sink as configured (settings.tickets.jira); its credentials must be set."""
    return tracker_sink(settings, "jira")


def ticket_syncs(
    *,
    settings: Settings,
    catalog: Catalog,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
    check: Check | None = None,
    only: Collection[str] | None = None,
    worker: OutboxWorker | None = None,
) -> list[TicketSync]:
    """One sync per enabled tracker (of `only`, when given), as configured."""
    syncs = []
    for name, section in settings.tickets.sections().items():
        if not section.enabled or (only is not None and name not in only):
            continue
        syncs.append(
            TicketSync(
                sink=tracker_sink(settings, name),
                sessions=sessions,
                catalog=catalog,
                clock=clock,
                route=Route.of(section, catalog, name),
                users=dict(section.users),
                check=check,
                link=slack_link(settings.slack.workspace_url) if settings.slack.enabled else None,
                poll_interval=section.poll_interval,
                worker=worker,
            )
        )
    return syncs


def jira_sync(
    *,
    settings: Settings,
    catalog: Catalog,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
    check: Check | None = None,
) -> TicketSync:
    """The Jira sync as configured (tickets.jira must be enabled)."""
    for sync in ticket_syncs(
        settings=settings, catalog=catalog, sessions=sessions, clock=clock, check=check
    ):
        if sync.sink.name == "jira":
            return sync
    raise CompliancebotError("tickets.jira is not enabled")
