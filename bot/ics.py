"""The compliance calendar as iCalendar (RFC 5545): what is due, for Google Calendar or Outlook.

Two kinds of all-day events: open task occurrences (overdue ones included, up to the horizon)
and the remediation due dates of every open finding (first seen + the SLA days of its
severity), however far ahead.
UIDs are stable, so a subscribed calendar updates events instead of duplicating them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

from icalendar import Calendar, Event
from sqlalchemy.orm import Session

from bot.reminders import TaskBook
from bot.slack.task_blocks import when
from ledger.queries import active_findings
from ledger.tasks import upcoming

PRODID = "-//compliancebot//compliance calendar//EN"
MAX_FINDINGS = 5000


def feed(
    *,
    session: Session,
    book: TaskBook,
    sla_days: Mapping[str, int],
    now: datetime,
    horizon_days: int,
    findings: bool = True,
    user: str | None = None,
) -> bytes:
    """The calendar: open occurrences and remediation due dates, as an .ics document.

    With `user`, only what is theirs: occurrences they own (or were given), findings they
    claimed.
    """
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", "Compliance calendar")
    until = now + timedelta(days=horizon_days)
    for occurrence in upcoming(session=session, now=now, until=until, limit=None):
        view = book.view(occurrence, now)
        task = book.tasks.tasks.get(occurrence.task_id)
        if view is None or task is None or (user is not None and view.owner != user):
            continue
        lines = [f"{view.policy}: {when(view)}", "", task.description]
        if task.procedure:
            lines += ["", task.procedure]
        lines += ["", f"Evidence: {view.evidence}", f"Occurrence #{occurrence.id} ({task.id})"]
        cal.add_component(
            _event(
                uid=f"task-{occurrence.id}@compliancebot",
                day=occurrence.due_on,
                summary=task.title,
                description="\n".join(lines),
                category=view.policy,
                stamp=now,
            )
        )
    if findings:
        for finding in active_findings(session=session, assignee=user, limit=MAX_FINDINGS):
            days = sla_days.get(finding.severity)
            if days is None:
                continue
            # Every open finding's due date, however far: the horizon is how far ahead
            # occurrences are made, not how far a remediation deadline may be.
            due = (finding.first_seen + timedelta(days=days)).date()
            cal.add_component(
                _event(
                    uid=f"finding-{finding.id}@compliancebot",
                    day=due,
                    summary=f"Fix [{finding.severity.upper()}] {finding.title}: "
                    f"{finding.resource_name or finding.resource_id}",
                    description=(
                        f"Finding #{finding.id} ({finding.status}), first seen "
                        f"{finding.first_seen:%Y-%m-%d}; {finding.account} / {finding.region}; "
                        f"remediation due {days} days after first seen."
                    ),
                    category="Remediation",
                    stamp=now,
                )
            )
    return bytes(cal.to_ical())


def _event(
    *, uid: str, day: date, summary: str, description: str, category: str, stamp: datetime
) -> Event:
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", stamp)
    event.add("dtstart", day)
    event.add("dtend", day + timedelta(days=1))
    event.add("summary", summary)
    event.add("description", description)
    event.add("categories", [category])
    event.add("transp", "TRANSPARENT")
    return event


def user_token(secret: str, user: str) -> str:
    """A user's own feed token: derived from the shared secret, so nothing is stored, and
    rotating calendar.feed_token revokes every one of them."""
    return hmac.new(secret.encode(), f"calendar-feed:{user}".encode(), hashlib.sha256).hexdigest()[
        :32
    ]


def feed_url(base: str, secret: str, user: str | None = None) -> str:
    """The URL a calendar app subscribes to: everyone's, or one user's."""
    root = base.rstrip("/") + "/calendar.ics"
    if user is None:
        return f"{root}?{urlencode({'token': secret})}"
    return f"{root}?{urlencode({'user': user, 'token': user_token(secret, user)})}"


def token_allows(secret: str, token: str | None, user: str | None) -> bool:
    """The shared token (everything), or a user's own token (with ?user=)."""
    if token is None:
        return False
    expected = secret if user is None else user_token(secret, user)
    return hmac.compare_digest(token.encode(), expected.encode())
