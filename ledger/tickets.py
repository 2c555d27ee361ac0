"""Tickets in trackers: which finding has which ticket, what the ticket last showed, and the
work still to do there (recorded in the outbox). Ticket sync calls these; nothing else writes
the `tickets` and `sync_cursors` tables."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ledger import outbox
from ledger.models import ACTIVE, Finding, OutboxItem, SyncCursor, Ticket
from ledger.services import audit

KEY_LIMIT = 200  # outbox keys are at most this long


def create_key(sink: str, finding_id: int) -> str:
    """The outbox key of a finding's ticket creation: one per finding and tracker."""
    return f"{sink}:create:{finding_id}"


def plan(
    *,
    session: Session,
    sink: str,
    severities: Collection[str],
    accounts: Collection[str] = (),
    rules: Collection[str] | None = None,
    now: datetime,
) -> int:
    """Record the work for a tracker: a create for each active finding it takes that has no
    ticket, an update for each ticket behind its finding. Returns how many items are new."""
    query = (
        select(Finding.id)
        .outerjoin(Ticket, (Ticket.finding_id == Finding.id) & (Ticket.sink == sink))
        .where(
            Ticket.id.is_(None),
            Finding.status.in_([str(s) for s in ACTIVE]),
            Finding.severity.in_(sorted(severities)),
        )
        .order_by(Finding.id)
    )
    if accounts:
        query = query.where(Finding.account.in_(sorted(accounts)))
    if rules is not None:
        query = query.where(Finding.rule_id.in_(sorted(rules)))
    untracked = session.scalars(query).all()
    behind = session.execute(
        select(Finding.id, Finding.version, Ticket.key)
        .join(Ticket, (Ticket.finding_id == Finding.id) & (Ticket.sink == sink))
        .where(Finding.version > Ticket.synced_version)
    ).all()
    new = outbox.enqueue_many(
        session=session,
        sink=sink,
        kind="create",
        items=[(create_key(sink, fid), {"finding_id": fid}) for fid in untracked],
        now=now,
    )
    return new + outbox.enqueue_many(
        session=session,
        sink=sink,
        kind="update",
        # The ticket's key is in it: a ticket made again after a deletion is another.
        items=[
            (f"{sink}:update:{fid}:{key}:{version}"[:KEY_LIMIT], {"finding_id": fid})
            for fid, version, key in behind
        ],
        now=now,
    )


def of_finding(*, session: Session, sink: str, finding_id: int) -> Ticket | None:
    """The finding's ticket in a tracker, if it has one."""
    return session.scalar(
        select(Ticket).where(Ticket.finding_id == finding_id, Ticket.sink == sink)
    )


def by_key(*, session: Session, sink: str, key: str) -> Ticket | None:
    """The ticket we recorded under a tracker's key, locked for the change about to be made."""
    return session.scalar(
        select(Ticket).where(Ticket.sink == sink, Ticket.key == key).with_for_update()
    )


def key_of_fingerprint(*, session: Session, sink: str, fingerprint: str) -> str | None:
    """The key we recorded for the finding with this fingerprint, if any."""
    return session.scalar(
        select(Ticket.key)
        .join(Finding, Finding.id == Ticket.finding_id)
        .where(Ticket.sink == sink, Finding.fingerprint == fingerprint)
    )


def record(
    *,
    session: Session,
    sink: str,
    finding: Finding,
    key: str,
    url: str,
    done: bool,
    now: datetime,
) -> Ticket:
    """A ticket made (or adopted) for a finding."""
    fresh = finding.status == "open" and finding.assignee is None
    ticket = Ticket(
        finding_id=finding.id,
        sink=sink,
        key=key,
        url=url,
        # The ticket shows an open, unassigned finding: if that is not what it is now
        # (claimed before its ticket was made), an update follows in the next round.
        synced_version=finding.version if fresh and not done else 0,
        synced_status="resolved" if done else "open",
        synced_assignee=None,
        synced_detail=detail_digest(finding.detail),  # the new ticket's body says it
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    return ticket


def detail_digest(detail: str | None) -> str | None:
    """What a ticket remembers of the detail it told: its SHA-256."""
    return hashlib.sha256(detail.encode()).hexdigest() if detail else None


def detail_untold(*, ticket: Ticket, finding: Finding) -> bool:
    """The finding says what is wrong, and the ticket has not said that yet."""
    return bool(finding.detail) and ticket.synced_detail != detail_digest(finding.detail)


def synced(*, ticket: Ticket, finding: Finding, now: datetime) -> None:
    """The ticket now shows the finding as it is."""
    ticket.synced_version = finding.version
    ticket.synced_status = finding.status
    ticket.synced_assignee = finding.assignee
    ticket.synced_detail = detail_digest(finding.detail)
    ticket.updated_at = now


def forget(*, session: Session, sink: str, finding: Finding, now: datetime) -> dict[str, Any]:
    """The ticket is gone from the tracker: drop it (audited); a new one is planned while the
    finding is still active."""
    ticket = of_finding(session=session, sink=sink, finding_id=finding.id)
    if ticket is None:
        return {"skipped": "no ticket"}
    key = ticket.key
    session.delete(ticket)
    # Retire the create intent, so the plan can record a new one for this finding.
    session.execute(
        update(OutboxItem)
        .where(OutboxItem.key == create_key(sink, finding.id))
        .values(key=f"{create_key(sink, finding.id)}:gone:{key}"[:KEY_LIMIT])
    )
    audit(
        session,
        now=now,
        actor=f"{sink}:{key}",
        action="ticket.deleted",
        object_type="finding",
        object_id=str(finding.id),
        detail={"sink": sink, "key": key, "finding_status": finding.status},
    )
    return {"gone": key, "recreate": finding.status in ACTIVE}


def moved(*, session: Session, ticket: Ticket, key: str, url: str | None, now: datetime) -> None:
    """The tracker moved the ticket (a Jira issue to another project): follow it, audited."""
    audit(
        session,
        now=now,
        actor=f"{ticket.sink}:{key}",
        action="ticket.moved",
        object_type="finding",
        object_id=str(ticket.finding_id),
        detail={"sink": ticket.sink, "from": ticket.key, "to": key},
    )
    ticket.key, ticket.url = key, url or ticket.url
    ticket.updated_at = now


def asked(*, session: Session, sink: str, key: str, now: datetime) -> None:
    """The tracker was asked about the ticket: it goes to the back of the existence check."""
    session.execute(
        update(Ticket).where(Ticket.sink == sink, Ticket.key == key).values(updated_at=now)
    )


def least_recently_asked(*, session: Session, sink: str, limit: int) -> list[str]:
    """Keys of active findings' tickets, those asked about longest ago first."""
    return list(
        session.scalars(
            select(Ticket.key)
            .join(Finding, Finding.id == Ticket.finding_id)
            .where(Ticket.sink == sink, Finding.status.in_([str(s) for s in ACTIVE]))
            .order_by(Ticket.updated_at, Ticket.id)
            .limit(limit)
        )
    )


def cursor(*, session: Session, name: str) -> datetime | None:
    """Where a poll got to (`None`: it never ran)."""
    row = session.get(SyncCursor, name)
    return row.at if row else None


def advance_cursor(*, session: Session, name: str, at: datetime) -> None:
    """Move a poll's mark forward (never back)."""
    row = session.get(SyncCursor, name)
    if row is None:
        session.add(SyncCursor(name=name, at=at))
    elif row.at < at:
        row.at = at
