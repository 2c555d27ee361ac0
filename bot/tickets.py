"""Ticket sync: every finding to a tracker ticket exactly once, kept in step with its state.

Each round first records the work in the outbox (create a ticket for a finding without one,
update the ticket of a finding whose version moved), then delivers what is due, one finding per
transaction. Before creating, the tracker is searched for a ticket carrying the finding's
fingerprint, so a crash between "created in Jira" and "recorded here" adopts that ticket.
A rescan that changed nothing records nothing and calls the tracker not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.slack.render import finding_view
from integrations.tickets import TicketError, TicketFinding, TicketRef, TicketSink
from ledger import outbox
from ledger.db import transaction
from ledger.models import ACTIVE, Finding, OutboxItem, Ticket
from rules.catalog import Catalog, Severity

log = structlog.get_logger(__name__)


class TicketSync:
    """Plans and delivers the work of one tracker."""

    def __init__(
        self,
        *,
        sink: TicketSink,
        sessions: sessionmaker[Session],
        catalog: Catalog,
        clock: Callable[[], datetime],
        min_severity: Severity = Severity.info,
        users: dict[str, str] | None = None,
    ) -> None:
        self.sink = sink
        self.sessions = sessions
        self.catalog = catalog
        self.clock = clock
        self.min_severity = min_severity
        self.users = users or {}

    def run_once(self) -> dict[str, int]:
        """Record what is to do, then do what is due."""
        planned = self.plan()
        done = self.deliver()
        return {"planned": planned, **done}

    # ---- planning -------------------------------------------------------------------------------

    def plan(self) -> int:
        """Outbox items for findings without a ticket, and for tickets behind their finding."""
        severities = [str(s) for s in Severity if s.at_least(self.min_severity)]
        name = self.sink.name
        with transaction(self.sessions) as session:
            untracked = session.execute(
                select(Finding.id)
                .outerjoin(Ticket, (Ticket.finding_id == Finding.id) & (Ticket.sink == name))
                .where(
                    Ticket.id.is_(None),
                    Finding.status.in_([str(s) for s in ACTIVE]),
                    Finding.severity.in_(severities),
                )
            ).all()
            behind = session.execute(
                select(Finding.id, Finding.version)
                .join(Ticket, (Ticket.finding_id == Finding.id) & (Ticket.sink == name))
                .where(Finding.version > Ticket.synced_version)
            ).all()
            now = self.clock()
            new = 0
            for (finding_id,) in untracked:
                new += outbox.enqueue(
                    session=session,
                    sink=name,
                    kind="create",
                    key=f"{name}:create:{finding_id}",
                    payload={"finding_id": finding_id},
                    now=now,
                )
            for finding_id, version in behind:
                new += outbox.enqueue(
                    session=session,
                    sink=name,
                    kind="update",
                    key=f"{name}:update:{finding_id}:{version}",
                    payload={"finding_id": finding_id},
                    now=now,
                )
        return new

    # ---- delivery -------------------------------------------------------------------------------

    def deliver(self, limit: int = 200) -> dict[str, int]:
        """Deliver due items, one transaction each; returns delivered / retrying / failed."""
        counts = {"delivered": 0, "retrying": 0, "failed": 0}
        with self.sessions() as session:
            ids = outbox.due_ids(
                session=session, sink=self.sink.name, now=self.clock(), limit=limit
            )
        for item_id in ids:
            with transaction(self.sessions) as session:
                item = outbox.take(session=session, item_id=item_id)
                if item is None:  # delivered meanwhile by another replica
                    continue
                counts[self._deliver_one(session, item)] += 1
        return counts

    def _deliver_one(self, session: Session, item: OutboxItem) -> str:
        now = self.clock()
        finding = session.get(Finding, int(item.payload["finding_id"]))
        try:
            if finding is None:
                result: dict[str, Any] = {"skipped": "the finding no longer exists"}
            elif item.kind == "create":
                result = self._create(session, finding)
            else:
                result = self._update(session, finding)
        except TicketError as exc:
            if exc.permanent:
                outbox.failed(item=item, now=now, error=str(exc))
                log.warning("tickets.refused", key=item.key, error=str(exc))
                return "failed"
            outbox.retry_later(item=item, now=now, error=str(exc), retry_after=exc.retry_after)
            log.info("tickets.retry_later", key=item.key, error=str(exc))
            return "retrying"
        outbox.delivered(item=item, now=now, result=result)
        return "delivered"

    def _ticket(self, session: Session, finding: Finding) -> Ticket | None:
        return session.scalar(
            select(Ticket).where(Ticket.finding_id == finding.id, Ticket.sink == self.sink.name)
        )

    def _plain(self, finding: Finding) -> TicketFinding:
        view = finding_view(finding, self.catalog, self.clock())
        return TicketFinding(
            fingerprint=finding.fingerprint,
            finding_id=finding.id,
            title=finding.title,
            severity=finding.severity,
            status=finding.status,
            resource_type=finding.resource_type,
            resource_id=finding.resource_id,
            resource_name=finding.resource_name,
            account=finding.account,
            region=finding.region,
            controls=view.controls,
            remediation=view.remediation,
        )

    def _create(self, session: Session, finding: Finding) -> dict[str, Any]:
        if self._ticket(session, finding) is not None:
            return {"skipped": "already has a ticket"}
        if finding.status not in ACTIVE:
            return {"skipped": f"finding is {finding.status}"}
        ref = self.sink.find(finding.fingerprint)
        adopted = ref is not None
        if ref is None:
            ref = self.sink.create(self._plain(finding))
        now = self.clock()
        session.add(
            Ticket(
                finding_id=finding.id,
                sink=self.sink.name,
                key=ref.key,
                url=ref.url,
                # The ticket shows an open, unassigned finding: if that is not what it is now
                # (claimed before its ticket was made), an update follows in the next round.
                synced_version=finding.version
                if finding.status == "open" and finding.assignee is None
                else 0,
                synced_status="open",
                synced_assignee=None,
                created_at=now,
                updated_at=now,
            )
        )
        log.info("tickets.created", finding_id=finding.id, key=ref.key, adopted=adopted)
        return {"key": ref.key, "adopted": adopted}

    def _update(self, session: Session, finding: Finding) -> dict[str, Any]:
        ticket = self._ticket(session, finding)
        if ticket is None or finding.version <= ticket.synced_version:
            return {"skipped": "nothing new"}
        ref = TicketRef(sink=self.sink.name, key=ticket.key, url=ticket.url)
        was_active = ticket.synced_status in ACTIVE
        is_active = finding.status in ACTIVE
        done = []
        if was_active and not is_active:
            self.sink.close(ref, self._why(finding))
            done.append("closed")
        elif is_active and not was_active:
            self.sink.reopen(ref, self._why(finding))
            done.append("reopened")
        if finding.assignee != ticket.synced_assignee and is_active:
            mapped = self.users.get(finding.assignee or "")
            if finding.assignee is None or mapped is not None:
                self.sink.assign(ref, mapped)
                done.append("assigned")
            else:
                self.sink.comment(ref, f"compliancebot: claimed by {finding.assignee}")
                done.append("commented")
        ticket.synced_version = finding.version
        ticket.synced_status = finding.status
        ticket.synced_assignee = finding.assignee
        ticket.updated_at = self.clock()
        return {"key": ticket.key, "did": done}

    @staticmethod
    def _why(finding: Finding) -> str:
        if finding.status == "resolved":
            note = f": {finding.resolution_note}" if finding.resolution_note else ""
            return f"compliancebot: resolved by {finding.resolved_by}{note}"
        if finding.status == "accepted":
            return (
                f"compliancebot: risk accepted by {finding.accepted_by} until "
                f"{finding.accepted_until:%Y-%m-%d}: {finding.accepted_reason}"
            )
        return f"compliancebot: {finding.status} again (the finding fails again)"


def jira_sink(settings: Any) -> TicketSink:
    """The Jira sink as configured (settings.tickets.jira)."""
    from integrations.jira_sink import JiraConfig, JiraSink

    jira = settings.tickets.jira
    return JiraSink(
        JiraConfig(
            url=str(jira.url),
            project=jira.project,
            issue_type=jira.issue_type,
            email=jira.email,
            api_token=jira.api_token.get_secret_value() if jira.api_token else None,
            token=jira.token.get_secret_value() if jira.token else None,
            priorities={str(k): v for k, v in jira.priorities.items()},
            labels=tuple(jira.labels),
            components=tuple(jira.components),
            fields=dict(jira.fields),
            done_transition=jira.done_transition,
            reopen_transition=jira.reopen_transition,
            timeout=jira.timeout,
        )
    )


def jira_sync(
    *,
    settings: Any,
    catalog: Catalog,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
) -> TicketSync:
    """The Jira sync as configured."""
    jira = settings.tickets.jira
    return TicketSync(
        sink=jira_sink(settings),
        sessions=sessions,
        catalog=catalog,
        clock=clock,
        min_severity=jira.min_severity,
        users=dict(jira.users),
    )
