"""Delivers Slack outbox items and keeps posted finding messages in step with the database.

Posting: an item is delivered once. Every attempt is written down before its call is made, and
a retry after an unknown outcome (timeout, connection reset, 5xx, a crash before the commit)
first looks for a message carrying the item's key in its metadata and adopts it instead of
posting again; the SDK never repeats a post itself (see `bot.slack.app.make_client`). A 429 is
due again Retry-After seconds after Slack's answer; a permanent refusal (unknown channel, bad
blocks) is kept as failed with Slack's error, for `compliancebot slack status` and `slack retry`.

Re-rendering: every change to a finding or a task occurrence bumps its version; a message
rendered at an older version is updated from the database, whoever made the change and from
wherever (a Slack button, the CLI, a scan).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from http.client import HTTPException
from typing import TYPE_CHECKING, Any
from urllib.error import URLError

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from sqlalchemy.orm import Session, sessionmaker

from bot.metrics import Metrics
from bot.settings import SlackSettings
from bot.slack import blocks as kit
from bot.slack.notify import SINK
from bot.slack.render import finding_view, scan_summary
from bot.slack.task_blocks import task_blocks, task_text
from integrations.delivery import OutboxWorker, Postpone, Refused, RetryLater
from ledger import messages, outbox
from ledger.db import transaction
from ledger.models import (
    ACTIVE,
    Finding,
    OccurrenceStatus,
    OutboxItem,
    OutboxStatus,
    Scan,
    SlackMessage,
    TaskOccurrence,
)
from rules.catalog import Catalog

if TYPE_CHECKING:
    from bot.reminders import TaskBook

log = structlog.get_logger(__name__)
METADATA_EVENT = "compliancebot_outbox"
# ok:false errors that are worth another try; every other one is a permanent refusal.
TRANSIENT = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# How a task message is remembered (slack_messages.kind), by "is it an escalation": a redraw
# keeps the escalation's own heading.
TASK_KINDS = {False: "task", True: "task_escalate"}
# chat.update errors after which the message cannot be updated any more.
GONE = frozenset({"message_not_found", "channel_not_found", "is_archived", "cant_update_message"})
POSTPONE = timedelta(seconds=2)
# Failures after which nobody knows whether Slack acted: the connection broke, timed out, or the
# answer was cut short. The next attempt looks the post up first.
UNKNOWN_OUTCOME = (SlackRequestError, URLError, TimeoutError, OSError, HTTPException)


def _error_of(exc: SlackApiError, now: datetime) -> tuple[str, float | None, bool]:
    """(error name, Retry-After seconds, transient?) of a Slack API failure answered at `now`."""
    response = exc.response
    status = int(getattr(response, "status_code", 200) or 200)
    data = getattr(response, "data", None)
    error = str(data.get("error", "")) if isinstance(data, dict) else ""
    headers = getattr(response, "headers", None)
    retry_after = outbox.retry_after(headers if isinstance(headers, dict) else None, now=now)
    if status == 429 or error == "ratelimited":
        return "ratelimited", retry_after, True
    if status >= 500:
        return f"http_{status}", retry_after, True
    if not error:
        return "malformed_response", None, True
    return error, retry_after, error in TRANSIENT


class SlackDelivery:
    """The Slack sink of the outbox (posts), and the redrawing of stale finding messages."""

    name = SINK

    def __init__(
        self,
        *,
        client: WebClient,
        sessions: sessionmaker[Session],
        catalog: Catalog,
        slack: SlackSettings,
        clock: Callable[[], datetime],
        metrics: Metrics,
        book: TaskBook | None = None,
        worker: OutboxWorker | None = None,
    ) -> None:
        self.client = client
        self.book = book  # the compliance calendar, when it is on
        self.sessions = sessions
        self.catalog = catalog
        self.slack = slack
        self.clock = clock
        self.metrics = metrics
        # How long an attempt keeps its item from other replicas: longer than its slowest run
        # (a DM to open, a few history pages, the post), so only a dead worker's item is retaken.
        self.lease = timedelta(seconds=max(120.0, 10 * slack.timeout))
        self.worker = worker or OutboxWorker(
            sessions=sessions, clock=clock, on_outcome=metrics.outbox_outcome
        )
        self._lock = threading.Lock()

    # ---- the loop body --------------------------------------------------------------------------

    def run_once(self) -> dict[str, int]:
        """Deliver what is due, then re-render what is stale; returns what it did."""
        with self._lock:
            delivered = self.deliver_due()
            refreshed = self.refresh_stale()
        return {"delivered": delivered, "refreshed": refreshed}

    def deliver_due(self, limit: int = 100) -> int:
        """Deliver due Slack items through the outbox worker; returns how many went out."""
        return self.worker.drain(self, limit=limit)["delivered"]

    def deliver(self, session: Session, item: OutboxItem) -> dict[str, Any]:
        """Post one item (OutboxSink): Slack's refusals become the worker's outcomes."""
        handler = {
            "summary": self._summary,
            "finding": self._finding,
            "reply": self._reply,
            "task_remind": self._task,
            "task_escalate": self._task,
            "alert": self._alert,
        }.get(item.kind)
        if handler is None:
            raise Refused(f"unknown outbox kind {item.kind!r}")
        try:
            return handler(session, item)
        except SlackApiError as exc:
            # The clock is read after the call: Retry-After counts from Slack's answer, and the
            # call itself may have taken seconds.
            error, retry_after, transient = _error_of(exc, self.clock())
            if transient:
                raise RetryLater(error, retry_after=retry_after, error=error) from exc
            raise Refused(f"Slack refused it: {error}", error=error) from exc
        except UNKNOWN_OUTCOME as exc:
            raise RetryLater(f"{type(exc).__name__}: {exc}", error=type(exc).__name__) from exc

    # ---- posting --------------------------------------------------------------------------------

    def _post(
        self, item: OutboxItem, *, channel: str, text: str, blocks: list[Any], thread: str | None
    ) -> dict[str, Any]:
        if outbox.in_doubt(item):
            found = self._already_posted(item, channel=channel, thread=thread)
            if found is not None:
                log.info("slack.adopted", key=item.key, ts=found)
                return {"channel": channel, "ts": found, "adopted": True}
        response = self.client.chat_postMessage(
            channel=channel,
            text=text,
            blocks=blocks,
            thread_ts=thread,
            unfurl_links=False,
            metadata={"event_type": METADATA_EVENT, "event_payload": {"key": item.key}},
        )
        return {"channel": str(response["channel"]), "ts": str(response["ts"])}

    def _already_posted(self, item: OutboxItem, *, channel: str, thread: str | None) -> str | None:
        """The ts of a message an earlier, unconfirmed attempt posted, if Slack has it."""
        oldest = f"{item.created_at.timestamp() - 60:.6f}"
        cursor = None
        for _ in range(5):
            if thread:
                page = self.client.conversations_replies(
                    channel=channel, ts=thread, include_all_metadata=True, cursor=cursor
                )
            else:
                page = self.client.conversations_history(
                    channel=channel,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
            messages: list[dict[str, Any]] = page.get("messages", []) or []
            for message in messages:
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("key") == item.key:
                    return str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return None

    def _summary(self, session: Session, item: OutboxItem) -> dict[str, Any]:
        p = item.payload
        scan = session.get(Scan, int(p["scan_id"]))
        if scan is None:
            raise Refused(f"scan {p['scan_id']} no longer exists")
        view = scan_summary(
            session=session,
            catalog=self.catalog,
            scan=scan,
            now=self.clock(),
            threaded=int(p.get("threaded", 0)),
            below_threshold=int(p.get("below_threshold", 0)),
            threshold=str(p.get("threshold", "high")),
        )
        result = self._post(
            item,
            channel=str(p["channel"]),
            text=kit.summary_text(view),
            blocks=kit.summary_blocks(view),
            thread=None,
        )
        self._remember(session, result, kind="summary", scan_id=scan.id)
        return result

    def _finding(self, session: Session, item: OutboxItem) -> dict[str, Any]:
        p = item.payload
        finding = session.get(Finding, int(p["finding_id"]))
        if finding is None:
            raise Refused(f"finding {p['finding_id']} no longer exists")
        if finding.status not in ACTIVE:
            # Settled before it could be announced (an outage, a quick fix): nothing to say.
            return {"skipped": f"finding is {finding.status}"}
        thread = None
        if p.get("parent_key"):
            parent = outbox.by_key(session=session, key=str(p["parent_key"]))
            if parent is not None and parent.status == OutboxStatus.pending:
                raise Postpone
            if parent is not None and parent.status == OutboxStatus.delivered:
                thread = parent.result.get("ts")
        view = finding_view(finding, self.catalog, self.clock())
        result = self._post(
            item,
            channel=str(p["channel"]),
            text=kit.finding_text(view),
            blocks=kit.finding_blocks(view),
            thread=thread,
        )
        self._remember(session, result, kind="finding", finding=finding, thread=thread or None)
        return result

    def _reply(self, session: Session, item: OutboxItem) -> dict[str, Any]:
        p = item.payload
        message = messages.latest_for_finding(session=session, finding_id=int(p["finding_id"]))
        channel = message.channel if message else str(p["channel"])
        thread = (message.thread_ts or message.ts) if message else None
        # The text is data (a re-check's detail names AWS resources) and is escaped; the person
        # it is for is a real mention, so Slack notifies them.
        line = kit.reply_line(str(p["text"]), mention=p.get("mention"))
        return self._post(
            item, channel=channel, text=line, blocks=[kit.section(line)], thread=thread
        )

    def _alert(self, session: Session, item: OutboxItem) -> dict[str, Any]:
        """An operational alert (the audit chain broke) to slack.channel; its text is data."""
        channel = self.slack.channel or item.payload.get("channel")
        if not channel:
            raise Refused("an alert needs slack.channel")
        line = f":rotating_light: {kit.esc(str(item.payload.get('text', '')))}"
        return self._post(
            item, channel=str(channel), text=line, blocks=[kit.section(line)], thread=None
        )

    def _task(self, session: Session, item: OutboxItem) -> dict[str, Any]:
        """A task reminder or escalation, to a person (their DM) or a channel."""
        if self.book is None:
            raise Refused("the compliance calendar is off (calendar.enabled)")
        occurrence = session.get(TaskOccurrence, int(item.payload["occurrence_id"]))
        if occurrence is None:
            raise Refused(f"no task occurrence {item.payload['occurrence_id']}")
        if occurrence.status == OccurrenceStatus.done:
            return {"skipped": "done before the reminder went out"}
        view = self.book.view(occurrence, self.clock())
        if view is None:
            return {"skipped": f"task {occurrence.task_id} is no longer in the catalog"}
        to = str(item.payload["to"])
        channel = to
        if to.startswith(("U", "W")):  # a person: their DM with the bot
            channel = str(self.client.conversations_open(users=to)["channel"]["id"])
        escalation = item.kind == "task_escalate"
        result = self._post(
            item,
            channel=channel,
            text=task_text(view, escalation=escalation),
            blocks=task_blocks(view, escalation=escalation),
            thread=None,
        )
        # Remembered with the version it shows: a change made while it was being posted (on the
        # CLI, say) leaves it stale, and the next round redraws it.
        self._remember(
            session,
            result,
            kind=TASK_KINDS[escalation],
            occurrence_id=occurrence.id,
            version=occurrence.version,
        )
        return result

    def _remember(
        self,
        session: Session,
        result: dict[str, Any],
        *,
        kind: str,
        finding: Finding | None = None,
        scan_id: int | None = None,
        thread: str | None = None,
        occurrence_id: int | None = None,
        version: int = 0,
    ) -> None:
        messages.remember(
            session=session,
            channel=str(result["channel"]),
            ts=str(result["ts"]),
            kind=kind,
            now=self.clock(),
            finding_id=finding.id if finding else None,
            scan_id=scan_id,
            occurrence_id=occurrence_id,
            thread_ts=thread,
            version=finding.version if finding else version,
        )

    # ---- re-rendering ---------------------------------------------------------------------------

    def refresh_finding(self, finding_id: int) -> int:
        """Update every message of one finding to what the database says now."""
        updated = 0
        with transaction(self.sessions) as session:
            # Most findings were never posted (below the threshold): one indexed look-up.
            posts = messages.finding_posts(session=session, finding_id=finding_id)
            if not posts:
                return 0
            finding = session.get(Finding, finding_id)
            if finding is None:
                return 0
            view = finding_view(finding, self.catalog, self.clock())
            text, blocks = kit.finding_text(view), kit.finding_blocks(view)
            for message in posts:
                if message.rendered_version >= finding.version:
                    continue
                done = self._update(
                    message, text=text, blocks=blocks, what={"finding_id": finding_id}
                )
                if done is False:
                    continue
                updated += done is True
                messages.drawn(message=message, version=finding.version, now=self.clock())
        return updated

    def refresh_occurrence(self, occurrence_id: int) -> int:
        """Update every reminder and escalation of one task occurrence to what the database
        says now (done: no buttons left)."""
        if self.book is None:
            return 0
        updated = 0
        with transaction(self.sessions) as session:
            occurrence = session.get(TaskOccurrence, occurrence_id)
            if occurrence is None:
                return 0
            behind = messages.occurrence_posts_behind(
                session=session, occurrence_id=occurrence_id, version=occurrence.version
            )
            view = self.book.view(occurrence, self.clock()) if behind else None
            for message in behind:
                if view is not None:  # None: the task left the catalog; nothing to redraw
                    escalation = message.kind == TASK_KINDS[True]
                    done = self._update(
                        message,
                        text=task_text(view, escalation=escalation),
                        blocks=task_blocks(view, escalation=escalation),
                        what={"occurrence_id": occurrence_id},
                    )
                    if done is False:
                        continue
                    updated += done is True
                messages.drawn(message=message, version=occurrence.version, now=self.clock())
        return updated

    def _update(
        self, message: SlackMessage, *, text: str, blocks: list[Any], what: dict[str, int]
    ) -> bool | None:
        """chat.update one message: True when updated; False when it is to be tried again on a
        later round (a transient failure); None when Slack refuses it for good (gone)."""
        try:
            self.client.chat_update(
                channel=message.channel, ts=message.ts, text=text, blocks=blocks
            )
        except SlackApiError as exc:
            error, _, transient = _error_of(exc, self.clock())
            self.metrics.outbound_errors.labels("slack", "chat.update", error).inc()
            if transient:
                log.info("slack.update_later", error=error, **what)
                return False
            log.warning("slack.update_gone", error=error, **what)
            return None
        except UNKNOWN_OUTCOME as exc:
            self.metrics.outbound_errors.labels("slack", "chat.update", type(exc).__name__).inc()
            return False
        return True

    def refresh_stale(self, limit: int = 100) -> int:
        """Re-render finding and task messages whose finding or occurrence changed since they
        were drawn."""
        with self.sessions() as session:
            findings = messages.stale_findings(session=session, limit=limit)
            occurrences = (
                messages.stale_occurrences(session=session, limit=limit)
                if self.book is not None
                else []
            )
        refreshed = sum(self.refresh_finding(fid) for fid in findings)
        return refreshed + sum(self.refresh_occurrence(oid) for oid in occurrences)
