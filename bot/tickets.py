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
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.output import controls_and_remediation
from bot.scanning import Recheck
from bot.settings import require_secrets
from integrations.delivery import OutboxWorker, Refused, RetryLater
from integrations.tickets import TicketError, TicketFinding, TicketRef, TicketSink
from ledger import inbound, outbox
from ledger import services as ledger
from ledger.db import transaction
from ledger.models import (
    ACTIVE,
    Finding,
    FindingEvent,
    FindingStatus,
    OutboxItem,
    SlackMessage,
    SyncCursor,
    Ticket,
)
from rules.catalog import Catalog, Severity
from rules.errors import CompliancebotError

log = structlog.get_logger(__name__)

Check = Callable[[str, str, str, str], Recheck]  # rule id, account, region, resource id
Link = Callable[[Session, Finding], str | None]

TRACKERS = {"jira": "Jira", "trello": "Trello"}
CHECK_BATCH = 50  # tickets asked after per poll round, whether they still exist


@dataclass(frozen=True)
class Route:
    """Which findings a tracker takes: a severity floor, accounts, rules (from frameworks)."""

    min_severity: Severity = Severity.info
    accounts: frozenset[str] = frozenset()
    rules: frozenset[str] | None = None  # None: every rule

    @classmethod
    def of(cls, settings: Any, catalog: Catalog, section: str) -> Route:
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
        self.worker.add(self)

    @property
    def tracker(self) -> str:
        """The tracker's name for people: Jira, Trello."""
        return TRACKERS.get(self.sink.name, self.sink.name)

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
        severities = [str(s) for s in Severity if s.at_least(self.route.min_severity)]
        name = self.sink.name
        query = (
            select(Finding.id)
            .outerjoin(Ticket, (Ticket.finding_id == Finding.id) & (Ticket.sink == name))
            .where(
                Ticket.id.is_(None),
                Finding.status.in_([str(s) for s in ACTIVE]),
                Finding.severity.in_(severities),
            )
            .order_by(Finding.id)
        )
        if self.route.accounts:
            query = query.where(Finding.account.in_(sorted(self.route.accounts)))
        if self.route.rules is not None:
            query = query.where(Finding.rule_id.in_(sorted(self.route.rules)))
        with transaction(self.sessions) as session:
            untracked = session.scalars(query).all()
            behind = session.execute(
                select(Finding.id, Finding.version, Ticket.key)
                .join(Ticket, (Ticket.finding_id == Finding.id) & (Ticket.sink == name))
                .where(Finding.version > Ticket.synced_version)
            ).all()
            now = self.clock()
            new = outbox.enqueue_many(
                session=session,
                sink=name,
                kind="create",
                items=[(f"{name}:create:{fid}", {"finding_id": fid}) for fid in untracked],
                now=now,
            )
            new += outbox.enqueue_many(
                session=session,
                sink=name,
                kind="update",
                # The ticket's key is in it: a ticket made again after a deletion is another.
                items=[
                    (f"{name}:update:{fid}:{key}:{version}"[:200], {"finding_id": fid})
                    for fid, version, key in behind
                ],
                now=now,
            )
        return new

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
        return session.scalar(
            select(Ticket).where(Ticket.finding_id == finding.id, Ticket.sink == self.sink.name)
        )

    def _plain(self, session: Session, finding: Finding) -> TicketFinding:
        controls, remediation = controls_and_remediation(finding.rule_id, self.catalog)
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
            controls=controls,
            remediation=remediation,
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
        now = self.clock()
        fresh = finding.status == "open" and finding.assignee is None
        session.add(
            Ticket(
                finding_id=finding.id,
                sink=self.sink.name,
                key=ref.key,
                url=ref.url,
                # The ticket shows an open, unassigned finding: if that is not what it is now
                # (claimed before its ticket was made), an update follows in the next round.
                synced_version=finding.version if fresh and not ref.done else 0,
                synced_status="resolved" if ref.done else "open",
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
        self._synced(ticket, finding)
        return {"key": ticket.key, "did": done}

    def _synced(self, ticket: Ticket, finding: Finding) -> None:
        ticket.synced_version = finding.version
        ticket.synced_status = finding.status
        ticket.synced_assignee = finding.assignee
        ticket.updated_at = self.clock()

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
            note = session.scalar(
                select(FindingEvent.note)
                .where(
                    FindingEvent.finding_id == finding.id,
                    FindingEvent.kind == "verification_failed",
                )
                .order_by(FindingEvent.id.desc())
                .limit(1)
            )
            return f"compliancebot: open again: {note or 'a re-check still fails'}"
        return f"compliancebot: {finding.status} again (the finding fails again)"

    def _verify(self, session: Session, finding: Finding) -> dict[str, Any]:
        """Re-check a finding whose ticket a person closed (the resolution is pending)."""
        if finding.status != FindingStatus.resolved or finding.verification != "pending":
            return {"skipped": f"finding is {finding.status}, verification {finding.verification}"}
        if self.check is None:
            return {"skipped": "no re-check available: the next scan decides"}
        result = self.check(finding.rule_id, finding.account, finding.region, finding.resource_id)
        ledger.verify_resolution(
            session=session,
            finding_id=finding.id,
            verdict=result.verdict,
            now=self.clock(),
            detail=result.detail,
        )
        log.info("tickets.verified", finding_id=finding.id, verdict=result.verdict)
        return {"verdict": result.verdict, "detail": result.detail}

    def _forget(self, session: Session, finding: Finding, now: datetime) -> dict[str, Any]:
        """The ticket is gone from the tracker: drop it; the plan makes a new one if still open."""
        ticket = self._ticket(session, finding)
        if ticket is None:
            return {"skipped": "no ticket"}
        key = ticket.key
        session.delete(ticket)
        # Retire the create intent, so the plan can record a new one for this finding.
        session.execute(
            update(OutboxItem)
            .where(OutboxItem.key == f"{self.sink.name}:create:{finding.id}")
            .values(key=f"{self.sink.name}:create:{finding.id}:gone:{key}"[:200])
        )
        ledger.audit(
            session,
            now=now,
            actor=f"{self.sink.name}:{key}",
            action="ticket.deleted",
            object_type="finding",
            object_id=str(finding.id),
            detail={"sink": self.sink.name, "key": key, "finding_status": finding.status},
        )
        log.warning(
            "tickets.deleted_in_tracker",
            sink=self.sink.name,
            key=key,
            finding_id=finding.id,
            recreate=finding.status in ACTIVE,
        )
        return {"gone": key, "recreate": finding.status in ACTIVE}

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
            ours = session.scalar(
                select(Ticket.key)
                .join(Finding, Finding.id == Ticket.finding_id)
                .where(Ticket.sink == self.sink.name, Finding.fingerprint == ref.fingerprint)
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
        ticket = session.scalar(
            select(Ticket)
            .where(Ticket.sink == self.sink.name, Ticket.key == ref.key)
            .with_for_update()
        )
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
            ticket = session.scalar(
                select(Ticket)
                .where(Ticket.sink == self.sink.name, Ticket.key == key)
                .with_for_update()
            )
            finding = session.get(Finding, ticket.finding_id) if ticket is not None else None
            if ticket is None or finding is None:
                return "unknown"  # forgotten or re-keyed meanwhile
            now = self.clock()
            if answer is None:
                self._forget(session, finding, now)
                return "deleted"
            # Asked and answered: the ticket goes to the back of the existence check's turn.
            ticket.updated_at = now
            if answer.key == ticket.key:
                return "same"
            ledger.audit(
                session,
                now=now,
                actor=f"{self.sink.name}:{answer.key}",
                action="ticket.moved",
                object_type="finding",
                object_id=str(finding.id),
                detail={"sink": self.sink.name, "from": ticket.key, "to": answer.key},
            )
            log.info("tickets.moved", sink=self.sink.name, key=ticket.key, to=answer.key)
            ticket.key, ticket.url = answer.key, answer.url or ticket.url
            return "moved"

    def check_existing(self, limit: int = CHECK_BATCH) -> dict[str, int]:
        """Ask the tracker about a batch of open findings' tickets: deleted ones are forgotten
        (and made again by the plan), moved ones re-keyed.

        A poll of what changed cannot see a deletion (JQL finds no deleted issue). Each round
        asks about the tickets asked about longest ago (`updated_at`), so the batch rotates
        through all of them however many there are.
        """
        with self.sessions() as session:
            keys = list(
                session.scalars(
                    select(Ticket.key)
                    .join(Finding, Finding.id == Ticket.finding_id)
                    .where(
                        Ticket.sink == self.sink.name,
                        Finding.status.in_([str(s) for s in ACTIVE]),
                    )
                    .order_by(Ticket.updated_at, Ticket.id)
                    .limit(limit)
                )
            )
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
            session.execute(
                update(Ticket)
                .where(Ticket.sink == self.sink.name, Ticket.key == key)
                .values(updated_at=self.clock())
            )
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
            cursor = session.get(SyncCursor, name)
            mark = session.get(SyncCursor, mark_name)
            last = cursor.at if cursor else None
            mark_at = mark.at if mark else None
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
            cursor = session.get(SyncCursor, name)
            if cursor is None:
                session.add(SyncCursor(name=name, at=now))
            elif cursor.at < now:
                cursor.at = now
            if changes.mark is not None:
                mark = session.get(SyncCursor, mark_name)
                if mark is None:
                    session.add(SyncCursor(name=mark_name, at=changes.mark))
                elif mark.at < changes.mark:
                    mark.at = changes.mark
        counts.update(self.check_existing())
        return counts


# ---- building from settings -----------------------------------------------------------------


def slack_link(workspace_url: str) -> Link:
    """The link to the finding's Slack message, when the bot posted one."""
    base = workspace_url.rstrip("/")

    def link(session: Session, finding: Finding) -> str | None:
        message = session.scalar(
            select(SlackMessage)
            .where(SlackMessage.finding_id == finding.id, SlackMessage.kind == "finding")
            .order_by(SlackMessage.id)
            .limit(1)
        )
        if message is None:
            return None
        url = f"{base}/archives/{message.channel}/p{message.ts.replace('.', '')}"
        if message.thread_ts and message.thread_ts != message.ts:
            url += f"?thread_ts={message.thread_ts}&cid={message.channel}"
        return url

    return link


def jira_sink(settings: Any) -> TicketSink:
    """The Jira sink as configured (settings.tickets.jira); its credentials must be set."""
    from integrations.jira_sink import JiraConfig, JiraSink

    jira = settings.tickets.jira
    require_secrets(jira.missing_secrets())
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
            users=dict(jira.users),
            timeout=jira.timeout,
            requests_per_second=jira.requests_per_second or None,
        )
    )


def trello_sink(settings: Any) -> TicketSink:
    """The Trello sink as configured (settings.tickets.trello); its key and token must be set."""
    from integrations.trello_sink import TrelloConfig, TrelloSink

    trello = settings.tickets.trello
    require_secrets(trello.missing_secrets())
    return TrelloSink(
        TrelloConfig(
            api_key=trello.api_key.get_secret_value() if trello.api_key else "",
            token=trello.token.get_secret_value() if trello.token else "",
            board=str(trello.board),
            api_url=trello.api_url,
            lists={str(k): v for k, v in trello.lists.items()},
            labels={str(k): v for k, v in trello.labels.items()},
            users=dict(trello.users),
            timeout=trello.timeout,
            requests_per_second=trello.requests_per_second or None,
        )
    )


SINKS: dict[str, Callable[[Any], TicketSink]] = {"jira": jira_sink, "trello": trello_sink}


def ticket_syncs(
    *,
    settings: Any,
    catalog: Catalog,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
    check: Check | None = None,
    only: Collection[str] | None = None,
) -> list[TicketSync]:
    """One sync per enabled tracker (of `only`, when given), as configured."""
    syncs = []
    for name, build in SINKS.items():
        section = getattr(settings.tickets, name)
        if not section.enabled or (only is not None and name not in only):
            continue
        syncs.append(
            TicketSync(
                sink=build(settings),
                sessions=sessions,
                catalog=catalog,
                clock=clock,
                route=Route.of(section, catalog, name),
                users=dict(section.users),
                check=check,
                link=slack_link(settings.slack.workspace_url) if settings.slack.enabled else None,
                poll_interval=section.poll_interval,
            )
        )
    return syncs


def jira_sync(
    *,
    settings: Any,
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
