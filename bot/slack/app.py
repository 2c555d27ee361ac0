"""The Slack app: a Bolt App wired to the ledger, with listeners grouped by kind."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session, sessionmaker

from bot.metrics import Metrics
from bot.scanning import ScanOutcome
from bot.settings import Settings, SlackSettings
from bot.slack.cache import LedgerCache
from bot.slack.delivery import SlackDelivery
from bot.slack.retries import retry_handlers
from bot.slack.task_blocks import TaskView, when
from integrations.delivery import OutboxWorker
from ledger.db import transaction
from ledger.inbound import delivery_key, first_delivery
from ledger.services import audit_refusal
from ledger.tasks import upcoming
from ledger.verification import Recheck
from rules.catalog import Catalog
from rules.tasks import is_group_id

if TYPE_CHECKING:
    from bot.reminders import TaskBook

log = structlog.get_logger(__name__)
APPROVER_CACHE = timedelta(minutes=1)


def make_client(slack: SlackSettings) -> WebClient:
    """A Web API client on the configured base URL. It retries connection errors, 429s and
    5xx itself only for calls that are safe to repeat; a post or an upload is never repeated
    blindly (its owner, the outbox, looks it up first: see `bot.slack.retries`)."""
    return WebClient(
        token=slack.bot_token.get_secret_value() if slack.bot_token else None,
        base_url=slack.api_url,
        timeout=max(1, int(slack.timeout)),
        retry_handlers=retry_handlers(slack.max_retries),
    )


@dataclass
class BotServices:
    """Everything a listener needs, built once by the composition root and passed down."""

    settings: Settings
    catalog: Catalog
    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]
    client: WebClient
    delivery: SlackDelivery
    metrics: Metrics
    # Runs one scan (account or all, trigger) and stores it with its Slack notifications.
    scan: Callable[[str | None, str], ScanOutcome]
    # Re-checks one (rule, account, region, resource) now.
    recheck: Callable[[str, str, str, str], Recheck]
    wake: Callable[[], None] = lambda: None
    book: TaskBook | None = None  # the compliance calendar, when it is on
    # The one outbox worker: Slack's sink, the trackers' and any other are drained by it.
    outbox: OutboxWorker = field(init=False)
    cache: LedgerCache = field(init=False)

    # User group -> (when read, its members): one minute old at most.
    _groups: dict[str, tuple[datetime, frozenset[str]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.outbox = self.delivery.worker
        self.cache = LedgerCache(self.sessions, max_stale=self.settings.slack.cache_seconds)
        self._groups = {}

    @property
    def slack(self) -> SlackSettings:
        return self.settings.slack

    def deliver_round(self) -> dict[str, Any]:
        """One round of the outbox worker over every sink, then Slack's redraws."""
        done: dict[str, Any] = dict(self.outbox.run_once())
        if self.settings.slack.enabled:
            done["refreshed"] = self.delivery.refresh_stale()
        return done

    def task_views(self, days: int = 30) -> list[TaskView]:
        """Open task occurrences due in the next `days` days, overdue first."""
        if self.book is None:
            return []
        now = self.clock()
        with self.sessions() as session:
            rows = upcoming(session=session, now=now, until=now + timedelta(days=days))
            return [v for v in (self.book.view(o, now) for o in rows) if v is not None]

    def tasks(self) -> list[str]:
        """The App Home's upcoming-task lines."""
        return [
            f"{v.title}: {v.due_on:%Y-%m-%d} ({when(v)}) · #{v.occurrence_id}"
            for v in self.task_views()[:10]
        ]

    def members_of(self, group: str) -> frozenset[str]:
        """The members of a user group, read again after a minute; nobody while Slack will not
        say (a permission is never granted on a failed lookup)."""
        now = self.clock()
        known = self._groups.get(group)
        if known is None or now - known[0] > APPROVER_CACHE:
            try:
                members = self.client.usergroups_users_list(usergroup=group).get("users") or []
            except SlackApiError as exc:
                log.warning("slack.user_group_unreadable", group=group, error=str(exc))
                return frozenset()
            known = (now, frozenset(str(m) for m in members))
            self._groups[group] = known
        return known[1]

    def is_approver(self, user: str) -> bool:
        """In the configured approvers list, or a member of the approver user group."""
        if user in self.slack.approvers:
            return True
        group = self.slack.approver_group
        return group is not None and user in self.members_of(group)

    def may_act_for(self, user: str, holders: Iterable[str]) -> bool:
        """May `user` act on something `holders` (user or group IDs) have: one of them, a member
        of one of the groups, or an approver. Slack is asked about groups only when needed."""
        holders = list(holders)
        if user in holders or user in self.slack.approvers:
            return True
        groups = [h for h in holders if is_group_id(h)]
        return any(user in self.members_of(g) for g in groups) or self.is_approver(user)

    def refuse(self, *, user: str, action: str, object_type: str, object_id: str, why: str) -> None:
        """Put an attempt refused for want of permission in the audit trail."""
        with transaction(self.sessions) as session:
            audit_refusal(
                session=session,
                now=self.clock(),
                actor=user,
                action=action,
                object_type=object_type,
                object_id=object_id,
                reason=why,
            )
        log.info("slack.refused", user=user, action=action, object_id=object_id)

    def approvers_text(self) -> str:
        """Who may accept risk, as Slack shows it."""
        names = [f"<@{u}>" for u in self.slack.approvers]
        if self.slack.approver_group:
            names.append(f"<!subteam^{self.slack.approver_group}>")
        return ", ".join(names) or "nobody yet (set slack.approvers or slack.approver_group)"


def _dedupe_events(services: BotServices) -> Callable[..., Any]:
    """Slack resends an event it thinks we missed (X-Slack-Retry-Num): handle each id once."""

    def middleware(body: dict[str, Any], next: Callable[[], Any]) -> Any:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if not event_id:
            return next()
        # Hashed like every inbound key: the id is the sender's, of any length and content.
        key = delivery_key("slack-event", str(event_id))
        if not first_delivery(
            sessions=services.sessions, key=key, source="slack", at=services.clock()
        ):
            log.info("slack.duplicate_event", event_id=str(event_id)[:64])
            services.metrics.requests.labels("event", "duplicate").inc()
            return BoltResponse(status=200, body="")
        return next()

    return middleware


def build_app(services: BotServices, *, executor: Executor | None = None) -> App:
    """The Bolt app with every listener registered.

    Over HTTP, `bot.server` verifies Slack's signature on the raw bytes (with the injected
    clock) and drops replays before a request reaches this app, so Bolt's own check, which
    parses first and reads the wall clock, is off. Socket Mode needs no signature.
    """
    # Bolt copies this logger's level to every logger it makes. Below ERROR it logs request
    # bodies (debug: every response; info: a forged body; warning: an unhandled payload),
    # which would put Slack users' text, and anything a sender makes up, in our logs.
    bolt_logger = logging.getLogger("slack_bolt.compliancebot")
    bolt_logger.setLevel(logging.ERROR)
    app = App(
        client=services.client,
        request_verification_enabled=False,
        process_before_response=False,
        logger=bolt_logger,
        listener_executor=executor,
        name="compliancebot",
    )
    app.middleware(_dedupe_events(services))
    from bot.slack.listeners import actions, commands, events, tasks, views

    for module in (commands, actions, views, events, tasks):
        module.register(app, services)
    return app
