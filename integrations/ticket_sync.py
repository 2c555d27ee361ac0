"""Ticket sync: every finding to a tracker ticket exactly once, kept in step both ways.

Outward, each round records the work in the outbox (create a ticket for a finding without one,
update the ticket of a finding whose version moved), then delivers what is due, one finding per
transaction. Before creating, the tracker is searched for a ticket carrying the finding's
fingerprint, so a crash between "created in Jira" and "recorded here" adopts that ticket.
A rescan that changed nothing records nothing and calls the tracker not at all.

Back from the tracker (webhooks, or a poll of what changed since the last one): a ticket closed
by a person resolves its finding pending verification, and a re-check runs; if the resource
still fails, the finding is open again and so is the ticket, with a comment saying so. A ticket
reopened by a person reopens its finding. A ticket deleted in the tracker is forgotten, and a
new one is made only while the finding is still open. What comes back is matched by the ticket
key the bot recorded, and each change is applied once (`processed_events`), however often the
tracker delivers it and whether a webhook or a poll brings it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from integrations import trackers
from integrations.delivery import OutboxWorker, Refused, RetryLater
from integrations.tickets import TicketError, TicketFinding, TicketRef, TicketSink
from integrations.trackers import TrackerSettings
from ledger import inbound, messages, outbox, tickets
from ledger import services as ledger
from ledger.db import transaction
from ledger.models import (
    ACTIVE,
    Finding,
    FindingStatus,
    OutboxItem,
    Ticket,
)
from ledger.verification import Check, last_failed_recheck, recheck_resolution
from rules.catalog import Catalog, Severity
from rules.errors import CompliancebotError

log = structlog.get_logger(__name__)

Link = Callable[[Session, Finding], str | None]

CHECK_BATCH = 50  # tickets asked after per poll round, whether they still exist


@dataclass(frozen=True)
class Route:
    """Which findings a tracker takes: a severity floor, accounts, rules (from frameworks)."""

    min_severity: Severity = Severity.info
    accounts: frozenset[str] = frozenset()
    rules: frozenset[str] | None = None  # None: every rule

    def severities(self) -> list[str]:
        """The severities at or above the floor."""
        return [str(s) for s in Severity if s.at_least(self.min_severity)]

    @classmethod
    def of(cls, settings: TrackerSettings, catalog: Catalog, section: str) -> Route:
        """From a tracker's settings; an unknown framework is an error naming the known ones."""
        rules: set[str] | None = None
        for framework in settings.frameworks:
            if framework not in catalog.frameworks:
                raise CompliancebotError(
                    f"tickets.{section}.frameworks: unknown framework {framework!r}; "
                    f"known: {', '.join(sorted(catalog.frameworks))}"
                )
            rules = (rules or set()) | {r.id for r in catalog.select(framework=framework)}
        return cls(
            min_severity=settings.min_severity,
            accounts=frozenset(settings.accounts),
            rules=frozenset(rules) if rules is not None else None,
        )


class TicketSync:
    """Plans and delivers the work of one tracker, and takes in what people did there."""

    def __init__(
        self,
        *,
        sink: TicketSink,
        sessions: sessionmaker[Session],
        catalog: Catalog,
        clock: Callable[[], datetime],
        route: Route | None = None,
        users: dict[str, str] | None = None,
        check: Check | None = None,
        link: Link | None = None,
        poll_interval: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = 10.0,
        worker: OutboxWorker | None = None,
    ) -> None:
        self.sink = sink
        self.sessions = sessions
        self.catalog = catalog
        self.clock = clock
        self.route = route or Route()
        self.users = users or {}
        self.check = check
        self.link = link
        self.poll_interval = poll_interval
        self.sleep = sleep
        self.max_wait = max_wait  # the longest Retry-After waited out inside a round
        # No lease (OutboxSink): an attempt holds its item's row lock through the tracker's
        # calls, and a create adopts a ticket carrying the fingerprint, so an attempt a crash
        # cut short is taken again at once, without a duplicate.
        self.lease = timedelta(0)
        self.worker = worker or OutboxWorker(
            sessions=sessions,
            clock=clock,
            # Late-bound: `sleep` may be swapped after construction (tests, bench).
            sleep=lambda seconds: self.sleep(seconds),  # noqa: PLW0108
            max_wait=max_wait,
        )

    @property
    def tracker(self) -> str:
        """The tracker's name for people: Jira, Trello."""
        name = self.sink.name
        return trackers.TRACKERS.get(name).title if name in trackers.TRACKERS else name

    def run_once(self) -> dict[str, int]:
        """Take in the tracker's changes (when a poll is due), record what is to do, do it.

        A re-check that fails plans a reopen: the round goes on until nothing is left to do
        (at most three passes).
        """
        totals = {"planned": 0, "delivered": 0, "retrying": 0, "failed": 0}
        polled = self.poll()
        if polled:
            totals.update({f"polled_{k}": v for k, v in polled.items()})
        for _ in range(3):
            planned = self.plan()
            done = self.deliver_due()
            totals["planned"] += planned
            for key, value in done.items():
                totals[key] += value
            if not planned and not done["delivered"]:
                break
        return totals

    # ---- planning -------------------------------------------------------------------------------

    def plan(self) -> int:
        """Outbox items for findings without a ticket, and for tickets behind their finding."""
        with transaction(self.sessions) as session:
            return tickets.plan(
                session=session,
                sink=self.sink.name,
                severities=self.route.severities(),
                accounts=self.route.accounts,
                rules=self.route.rules,
                now=self.clock(),
            )

    # ---- delivery -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The outbox's sink name for this tracker's work (OutboxSink)."""
        return self.sink.name

    def deliver_due(self, limit: int = 200) -> dict[str, int]:
        """Deliver due items through the outbox worker; returns delivered / retrying / failed."""
        done = self.worker.drain(self, limit=limit)
        return {k: done[k] for k in ("delivered", "retrying", "failed")}

    def deliver(self, session: Session, item: OutboxItem) -> dict[str, Any]:
        """Do one item of work in the tracker (OutboxSink)."""
        finding = session.get(Finding, int(item.payload["finding_id"]))
        try:
            if finding is None:
                return {"skipped": "the finding no longer exists"}
            if item.kind == "create":
                return self._create(session, finding)
            if item.kind == "verify":
                return self._verify(session, finding)
            return self._update(session, finding)
        except TicketError as exc:
            if exc.gone and finding is not None and item.kind == "update":
                return self._forget(session, finding, self.clock())
            if exc.permanent:
                raise Refused(str(exc), error="refused") from exc
            # A Retry-After is the tracker asking everyone to slow down, not just this item.
            raise RetryLater(
                str(exc), retry_after=exc.retry_after, pause=exc.retry_after is not None
            ) from exc

    def _ticket(self, session: Session, finding: Finding) -> Ticket | None:
        return tickets.of_finding(session=session, sink=self.sink.name, finding_id=finding.id)

    def _plain(self, session: Session, finding: Finding) -> TicketFinding:
        rule = self.catalog.rule(finding.rule_id)
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
            detail=finding.detail,
            controls=self.catalog.controls_of(finding.rule_id),
            remediation=rule.remediation.text if rule else None,
            link=self.link(session, finding) if self.link else None,
        )

    def _create(self, session: Session, finding: Finding) -> dict[str, Any]:
        if self._ticket(session, finding) is not None:
            return {"skipped": "already has a ticket"}
        if finding.status not in ACTIVE:
            return {"skipped": f"finding is {finding.status}"}
        ref = self.sink.find(finding.fingerprint)
        adopted = ref is not None
        if ref is None:
            ref = self.sink.create(self._plain(session, finding))
        tickets.record(
            session=session,
            sink=self.sink.name,
            finding=finding,
            key=ref.key,
            url=ref.url,
            done=ref.done,
            now=self.clock(),
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
            self.sink.close(ref, self._why(session, finding), status=finding.status)
            done.append("closed")
        elif is_active and not was_active:
            self.sink.reopen(ref, self._why(session, finding), status=finding.status)
            done.append("reopened")
        elif is_active and finding.status != ticket.synced_status:
            self.sink.progress(ref, finding.status)
            done.append("moved")
        if finding.assignee != ticket.synced_assignee and is_active:
            mapped = self.users.get(finding.assignee or "")
            if finding.assignee is None or mapped is not None:
                self.sink.assign(ref, mapped)
                done.append("assigned")
            else:
                self.sink.comment(ref, f"compliancebot: claimed by {finding.assignee}")
                done.append("commented")
        if is_active and tickets.detail_untold(ticket=ticket, finding=finding):
            self.sink.comment(ref, f"compliancebot: what is wrong now: {finding.detail}")
            done.append("detail")
        self._synced(ticket, finding)
        return {"key": ticket.key, "did": done}

    def _synced(self, ticket: Ticket, finding: Finding) -> None:
        tickets.synced(ticket=ticket, finding=finding, now=self.clock())

    def _why(self, session: Session, finding: Finding) -> str:
        if finding.status == "resolved":
            note = f": {finding.resolution_note}" if finding.resolution_note else ""
            return f"compliancebot: resolved by {finding.resolved_by}{note}"
        if finding.status == "accepted":
            return (
                f"compliancebot: risk accepted by {finding.accepted_by} until "
                f"{finding.accepted_until:%Y-%m-%d}: {finding.accepted_reason}"
            )
        if finding.verification == "failed":
            why = last_failed_recheck(session=session, finding_id=finding.id)
            return f"compliancebot: open again: {why or 'a re-check still fails'}"
        return f"compliancebot: {finding.status} again (the finding fails again)"

    def _verify(self, session: Session, finding: Finding) -> dict[str, Any]:
        """Re-check a finding whose ticket a person closed (the resolution is pending)."""
        done = None
        if self.check is not None:
            done = recheck_resolution(
                session=session, finding=finding, check=self.check, clock=self.clock
            )
        if done is not None:
            return {"verdict": done[0], "detail": done[1]}
        if finding.status != FindingStatus.resolved or finding.verification != "pending":
            return {"skipped": f"finding is {finding.status}, verification {finding.verification}"}
        return {"skipped": "no re-check available: the next scan decides"}

    def _forget(self, session: Session, finding: Finding, now: datetime) -> dict[str, Any]:
        """The ticket is gone from the tracker: drop it; the plan makes a new one if still open."""
        result = tickets.forget(session=session, sink=self.sink.name, finding=finding, now=now)
        if "gone" not in result:
            return result
        log.warning(
            "tickets.deleted_in_tracker",
            sink=self.sink.name,
            key=result["gone"],
            finding_id=finding.id,
            recreate=result["recreate"],
        )
        return result

    # ---- back from the tracker ------------------------------------------------------------------

    def receive(self, refs: Iterable[TicketRef]) -> dict[str, int]:
        """Apply what people did in the tracker (from a webhook or a poll), each change once."""
        counts = {
            "closed": 0,
            "reopened": 0,
            "deleted": 0,
            "unchanged": 0,
            "duplicate": 0,
            "unknown": 0,
        }
        for ref in refs:
            counts[self._receive_ref(ref)] += 1
        if counts["closed"] or counts["reopened"] or counts["deleted"]:
            log.info("tickets.received", sink=self.sink.name, **counts)
        return counts

    def _receive_ref(self, ref: TicketRef) -> str:
        """One change, matched by the ticket key we recorded; a label or marker never re-binds.

        Anyone can put a finding's `cb-` label on an issue (or copy a card with its marker), so
        a change to a ticket under another key is not ours. It may be ours moved (Jira: to
        another project, under a new key): then the tracker is asked about the key we recorded,
        and only its answer re-keys the ticket, before the change is applied.
        """
        outcome = self._apply_once(ref)
        if outcome != "unknown" or not ref.fingerprint:
            return outcome
        with self.sessions() as session:
            ours = tickets.key_of_fingerprint(
                session=session, sink=self.sink.name, fingerprint=ref.fingerprint
            )
        if ours is None or ours == ref.key:
            return outcome
        try:
            answer = self.sink.lookup([ours])
        except TicketError as exc:
            log.warning("tickets.lookup_failed", sink=self.sink.name, key=ours, error=str(exc))
            answer = {}
        settled = self._settle(ours, answer[ours]) if ours in answer else "same"
        moved = answer.get(ours)
        if settled == "moved" and moved is not None and moved.key == ref.key:
            return self._apply_once(ref)
        log.warning(
            "tickets.foreign_ticket_ignored",
            sink=self.sink.name,
            key=ref.key,
            ours=ours,
            fingerprint=ref.fingerprint[:80],  # the sender's text: bounded in the log
            deleted=ref.deleted,
        )
        return "deleted" if settled == "deleted" else outcome

    def _apply_once(self, ref: TicketRef) -> str:
        try:
            with transaction(self.sessions) as session:
                return self._receive_one(session, ref)
        except IntegrityError as exc:
            if not inbound.is_duplicate(exc):
                raise
            # Another replica recorded this change first (its id is a primary key) and applied
            # it; this transaction, and with it our copy of the change, was rolled back.
            log.info("tickets.duplicate_change", sink=self.sink.name, key=ref.key)
            return "duplicate"

    def _change_keys(self, changes: Sequence[str]) -> list[str]:
        return [inbound.delivery_key(self.sink.name, change) for change in changes]

    def _receive_one(  # noqa: PLR0911 - one answer per way a change can land
        self, session: Session, ref: TicketRef
    ) -> str:
        ticket = tickets.by_key(session=session, sink=self.sink.name, key=ref.key)
        if ticket is None:
            return "unknown"
        # Checked under the ticket's lock: a replica applying the same change has committed.
        if inbound.seen(session=session, keys=self._change_keys(ref.change)):
            return "duplicate"
        finding = session.get(Finding, ticket.finding_id)
        if finding is None:
            return "unknown"
        now = self.clock()
        inbound.remember(
            session=session,
            keys=self._change_keys([*ref.change, *ref.earlier]),
            source=self.sink.name,
            at=now,
        )
        actor = f"{self.sink.name}:{ref.key}"
        if ref.deleted:
            self._forget(session, finding, now)
            return "deleted"
        if ref.done and ticket.synced_status in ACTIVE:
            if finding.status in ACTIVE:
                verify = self.check is not None
                ledger.resolve(
                    session=session,
                    finding_id=finding.id,
                    user=actor,
                    now=now,
                    note=f"closed in {self.tracker}",
                    verify=verify,
                )
                if verify:
                    outbox.enqueue(
                        session=session,
                        sink=self.sink.name,
                        kind="verify",
                        key=f"{self.sink.name}:verify:{finding.id}:{finding.version}",
                        payload={"finding_id": finding.id},
                        now=now,
                    )
            self._synced(ticket, finding)
            return "closed"
        if not ref.done and ticket.synced_status not in ACTIVE:
            if finding.status in (FindingStatus.resolved, FindingStatus.accepted):
                ledger.reopen(
                    session=session,
                    finding_id=finding.id,
                    user=actor,
                    now=now,
                    note=f"reopened in {self.tracker}",
                )
            self._synced(ticket, finding)
            return "reopened"
        return "unchanged"

    def _settle(self, key: str, answer: TicketRef | None) -> str:
        """Bring the ticket recorded as `key` in step with the tracker's answer about that key.

        None: it no longer exists (forgotten; made again while the finding is open). Another
        key: Jira moved the issue, and GET on the old key answered with it. Either way this is
        the tracker's answer to our question, not a claim in a delivery.
        """
        with transaction(self.sessions) as session:
            ticket = tickets.by_key(session=session, sink=self.sink.name, key=key)
            finding = session.get(Finding, ticket.finding_id) if ticket is not None else None
            if ticket is None or finding is None:
                return "unknown"  # forgotten or re-keyed meanwhile
            now = self.clock()
            if answer is None:
                self._forget(session, finding, now)
                return "deleted"
            # Asked and answered: the ticket goes to the back of the existence check's turn.
            tickets.asked(session=session, sink=self.sink.name, key=key, now=now)
            if answer.key == ticket.key:
                return "same"
            log.info("tickets.moved", sink=self.sink.name, key=ticket.key, to=answer.key)
            tickets.moved(session=session, ticket=ticket, key=answer.key, url=answer.url, now=now)
            return "moved"

    def check_existing(self, limit: int = CHECK_BATCH) -> dict[str, int]:
        """Ask the tracker about a batch of open findings' tickets: deleted ones are forgotten
        (and made again by the plan), moved ones re-keyed.

        A poll of what changed cannot see a deletion (JQL finds no deleted issue). Each round
        asks about the tickets asked about longest ago (`updated_at`), so the batch rotates
        through all of them however many there are.
        """
        with self.sessions() as session:
            keys = tickets.least_recently_asked(session=session, sink=self.sink.name, limit=limit)
        if not keys:
            return {}
        try:
            answers = self.sink.lookup(keys)
        except TicketError as exc:
            log.warning("tickets.check_failed", sink=self.sink.name, error=str(exc))
            return {"check_failed": 1}
        counts = {"checked": len(keys), "gone": 0, "moved": 0}
        for key in keys:
            # A key the tracker did not answer for is not taken as gone.
            settled = self._settle(key, answers[key]) if key in answers else self._tried(key)
            if settled == "deleted":
                counts["gone"] += 1
            elif settled == "moved":
                counts["moved"] += 1
        return counts

    def _tried(self, key: str) -> str:
        with transaction(self.sessions) as session:
            tickets.asked(session=session, sink=self.sink.name, key=key, now=self.clock())
        return "same"

    def poll(self, *, force: bool = False) -> dict[str, int] | None:
        """Ask the tracker what changed since the last poll, when one is due; None: not due.

        The poll starts from the tracker's own mark when it gives one (Trello: the date of the
        last board action seen), else from the last poll; either way a change seen again is
        applied once. Then a batch of tickets is checked to still exist.
        """
        if not self.poll_interval and not force:
            return None
        name = f"tickets:{self.sink.name}"
        mark_name = f"{name}:mark"
        now = self.clock()
        with self.sessions() as session:
            last = tickets.cursor(session=session, name=name)
            mark_at = tickets.cursor(session=session, name=mark_name)
        if last is not None and not force and now - last < timedelta(seconds=self.poll_interval):
            return None
        since = mark_at or last or now - timedelta(seconds=self.poll_interval or 3600)
        try:
            changes = self.sink.changed_since(since, now)
        except TicketError as exc:
            log.warning("tickets.poll_failed", sink=self.sink.name, error=str(exc))
            return {"failed": 1}
        counts = self.receive(changes.refs)
        with transaction(self.sessions) as session:
            tickets.advance_cursor(session=session, name=name, at=now)
            if changes.mark is not None:
                tickets.advance_cursor(session=session, name=mark_name, at=changes.mark)
        counts.update(self.check_existing())
        return counts


def slack_link(workspace_url: str) -> Link:
    """The link to the finding's Slack message, when the bot posted one."""
    base = workspace_url.rstrip("/")

    def link(session: Session, finding: Finding) -> str | None:
        message = messages.first_finding_post(session=session, finding_id=finding.id)
        if message is None:
            return None
        url = f"{base}/archives/{message.channel}/p{message.ts.replace('.', '')}"
        if message.thread_ts and message.thread_ts != message.ts:
            url += f"?thread_ts={message.thread_ts}&cid={message.channel}"
        return url

    return link
