"""What a finished scan should say in Slack, recorded in the outbox with the scan itself."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.settings import SlackSettings
from ledger import outbox
from ledger.models import Scan
from ledger.queries import findings_by_id
from ledger.services import ScanCounts
from rules.catalog import Severity

SINK = "slack"


def summary_key(scan_id: int) -> str:
    """The outbox key of a scan's summary message."""
    return f"slack:summary:{scan_id}"


def enqueue_scan(
    *, session: Session, slack: SlackSettings, scan: Scan, counts: ScanCounts, now: datetime
) -> int:
    """Record the summary and one message per new or reopened finding at or above the threshold.

    Returns how many finding messages were recorded. Keys make this idempotent: recording the same
    scan twice records nothing new.
    """
    if not slack.enabled or slack.channel is None:
        return 0
    changed = [*counts.new_ids, *counts.reopened_ids]
    reopened = set(counts.reopened_ids)
    rows = findings_by_id(session=session, ids=changed)
    rows.sort(key=lambda f: (Severity(f.severity).rank, f.id))
    threshold = Severity(slack.min_severity)
    loud = [f for f in rows if Severity(f.severity).at_least(threshold)]
    posted = loud[: slack.max_messages_per_scan]
    parent = summary_key(scan.id)
    placed = []
    for finding in posted:
        channel = slack.channel_for(
            account=finding.account, severity=finding.severity, rule_id=finding.rule_id
        )
        assert channel is not None
        placed.append((finding, channel, slack.thread_findings and channel == slack.channel))
    # The summary first: threaded findings wait for its ts.
    outbox.enqueue(
        session=session,
        sink=SINK,
        kind="summary",
        key=parent,
        payload={
            "scan_id": scan.id,
            "channel": slack.channel,
            "threaded": sum(1 for _, _, in_thread in placed if in_thread),
            "below_threshold": len(rows) - len(posted),
            "threshold": str(threshold),
        },
        now=now,
    )
    for finding, channel, in_thread in placed:
        why = f"reopen:{finding.reopen_count}" if finding.id in reopened else "new"
        outbox.enqueue(
            session=session,
            sink=SINK,
            kind="finding",
            key=f"slack:finding:{finding.id}:{why}",
            payload={
                "finding_id": finding.id,
                "channel": channel,
                "parent_key": parent if in_thread else None,
            },
            now=now,
        )
    return len(posted)


def enqueue_reply(
    *,
    session: Session,
    key: str,
    channel: str,
    finding_id: int,
    text: str,
    now: datetime,
    mention: str | None = None,
) -> None:
    """A reply in the thread of a finding's message (posted top-level if it has none).

    `text` is plain text (it is escaped when posted); `mention`, a Slack user id, is put first
    as a real mention.
    """
    payload: dict[str, object] = {"channel": channel, "finding_id": finding_id, "text": text}
    if mention:
        payload["mention"] = mention
    outbox.enqueue(session=session, sink=SINK, kind="reply", key=key, payload=payload, now=now)
