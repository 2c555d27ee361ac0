"""The Slack app: a Bolt App wired to the ledger, with listeners grouped by kind."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.metrics import Metrics
from bot.scanning import Recheck, ScanOutcome
from bot.settings import Settings, SlackSettings
from bot.slack.cache import LedgerCache
from bot.slack.delivery import SlackDelivery
from bot.slack.task_blocks import TaskView, when
from ledger.db import transaction
from ledger.models import ProcessedEvent
from ledger.tasks import upcoming
from rules.catalog import Catalog

if TYPE_CHECKING:
    from bot.reminders import TaskBook

log = structlog.get_logger(__name__)
APPROVER_CACHE = timedelta(minutes=1)


def make_client(slack: SlackSettings) -> WebClient:
    """A Web API client on the configured base URL, retrying rate limits and 5xx itself."""
    return WebClient(
        token=slack.bot_token.get_secret_value() if slack.bot_token else None,
        base_url=slack.api_url,
        timeout=max(1, int(slack.timeout)),
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=slack.max_retries),
            RateLimitErrorRetryHandler(max_retry_count=slack.max_retries),
            ServerErrorRetryHandler(max_retry_count=slack.max_retries),
        ],
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
    scan_lock: threading.Lock = field(default_factory=threading.Lock)
    cache: LedgerCache = field(init=False)

    def __post_init__(self) -> None:
        self.cache = LedgerCache(self.sessions, max_stale=self.settings.slack.cache_seconds)

    _approvers: tuple[datetime, frozenset[str]] | None = None

    @property
    def slack(self) -> SlackSettings:
        return self.settings.slack

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
            f"{v.title}: {v.due_on:%Y-%m-%d} ({when(v.days_left)}) · #{v.occurrence_id}"
            for v in self.task_views()[:10]
        ]

    def is_approver(self, user: str) -> bool:
        """In the configured approvers list, or a member of the approver user group."""
        if user in self.slack.approvers:
            return True
        group = self.slack.approver_group
        if group is None:
            return False
        now = self.clock()
        if self._approvers is None or now - self._approvers[0] > APPROVER_CACHE:
            try:
                members: list[str] = (
                    self.client.usergroups_users_list(usergroup=group).get("users", []) or []
                )
            except SlackApiError as exc:
                log.warning("slack.approver_group_unreadable", group=group, error=str(exc))
                return False
            self._approvers = (now, frozenset(str(m) for m in members or []))
        return user in self._approvers[1]

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
        try:
            with transaction(services.sessions) as session:
                session.add(
                    ProcessedEvent(event_id=str(event_id), source="slack", at=services.clock())
                )
        except IntegrityError:
            log.info("slack.duplicate_event", event_id=event_id)
            services.metrics.requests.labels("event", "duplicate").inc()
            return BoltResponse(status=200, body="")
        return next()

    return middleware


def build_app(services: BotServices, *, executor: Executor | None = None) -> App:
    """The Bolt app with every listener registered."""
    slack = services.slack
    http = slack.mode == "http"
    app = App(
        client=services.client,
        signing_secret=slack.signing_secret.get_secret_value()
        if http and slack.signing_secret
        else None,
        request_verification_enabled=http,
        process_before_response=False,
        listener_executor=executor,
        name="compliancebot",
    )
    app.middleware(_dedupe_events(services))
    from bot.slack.listeners import actions, commands, events, tasks, views

    for module in (commands, actions, views, events, tasks):
        module.register(app, services)
    return app
