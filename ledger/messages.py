"""The Slack messages the bot posted: remembered with the version they show, so every change to a
finding or a task occurrence redraws them, whoever made it and from wherever."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.models import Finding, SlackMessage, TaskOccurrence


def remember(
    *,
    session: Session,
    channel: str,
    ts: str,
    kind: str,
    now: datetime,
    finding_id: int | None = None,
    scan_id: int | None = None,
    occurrence_id: int | None = None,
    thread_ts: str | None = None,
    version: int = 0,
) -> None:
    """Record a posted message once (a message adopted after a lost answer may be known)."""
    exists = session.scalar(
        select(SlackMessage.id).where(SlackMessage.channel == channel, SlackMessage.ts == ts)
    )
    if exists is not None:
        return
    session.add(
        SlackMessage(
            kind=kind,
            finding_id=finding_id,
            scan_id=scan_id,
            occurrence_id=occurrence_id,
            channel=channel,
            ts=ts,
            thread_ts=thread_ts,
            rendered_version=version,
            posted_at=now,
            updated_at=now,
        )
    )


def drawn(*, message: SlackMessage, version: int, now: datetime) -> None:
    """The message now shows `version` of what it is about (or cannot be redrawn any more)."""
    message.rendered_version = version
    message.updated_at = now


def latest_for_finding(*, session: Session, finding_id: int) -> SlackMessage | None:
    """The newest message about a finding (a reply goes to its thread)."""
    return session.scalar(
        select(SlackMessage)
        .where(SlackMessage.finding_id == finding_id)
        .order_by(SlackMessage.id.desc())
        .limit(1)
    )


def first_finding_post(*, session: Session, finding_id: int) -> SlackMessage | None:
    """The message that announced a finding, if the bot posted one (a ticket links to it)."""
    return session.scalar(
        select(SlackMessage)
        .where(SlackMessage.finding_id == finding_id, SlackMessage.kind == "finding")
        .order_by(SlackMessage.id)
        .limit(1)
    )


def finding_posts(*, session: Session, finding_id: int) -> Sequence[SlackMessage]:
    """Every message that shows a finding (not the replies in its thread)."""
    return session.scalars(
        select(SlackMessage).where(
            SlackMessage.finding_id == finding_id, SlackMessage.kind == "finding"
        )
    ).all()


def occurrence_posts_behind(
    *, session: Session, occurrence_id: int, version: int
) -> Sequence[SlackMessage]:
    """The reminders and escalations of a task occurrence drawn before `version`."""
    return session.scalars(
        select(SlackMessage).where(
            SlackMessage.occurrence_id == occurrence_id,
            SlackMessage.rendered_version < version,
        )
    ).all()


def stale_findings(*, session: Session, limit: int) -> list[int]:
    """Findings whose posted message shows an older version than the finding has."""
    ids = session.scalars(
        select(SlackMessage.finding_id)
        .join(Finding, Finding.id == SlackMessage.finding_id)
        .where(SlackMessage.kind == "finding", SlackMessage.rendered_version < Finding.version)
        .distinct()
        .limit(limit)
    ).all()
    return [int(i) for i in ids if i is not None]


def stale_occurrences(*, session: Session, limit: int) -> list[int]:
    """Task occurrences whose reminder or escalation shows an older version."""
    ids = session.scalars(
        select(SlackMessage.occurrence_id)
        .join(TaskOccurrence, TaskOccurrence.id == SlackMessage.occurrence_id)
        .where(SlackMessage.rendered_version < TaskOccurrence.version)
        .distinct()
        .limit(limit)
    ).all()
    return [int(i) for i in ids if i is not None]
