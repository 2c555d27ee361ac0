"""The generic webhook event sink: each event POSTed as JSON, signed with HMAC-SHA256.

The receiver verifies `X-Compliancebot-Signature` (`v1=` + hex HMAC-SHA256 of the secret over
`<timestamp>.<raw body>`, the timestamp being `X-Compliancebot-Timestamp`), refuses a timestamp
outside its replay window, and dedupes by `X-Compliancebot-Event-Id` (also the body's `id`): a
delivery whose answer was lost is sent again, signed anew, with the same id. docs/events.md
shows the verification.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where the client is made: settings never load httpx
    import httpx

from pydantic import field_validator, model_validator
from sqlalchemy.orm import Session

from integrations.event_sink import EventSinkSettings, call, checked_url, http_client, judge
from integrations.trackers import GENERATE, Secret, unset_secrets
from ledger import events, outbox
from ledger.models import OutboxItem

SIGNATURE = "X-Compliancebot-Signature"
TIMESTAMP = "X-Compliancebot-Timestamp"
EVENT_ID = "X-Compliancebot-Event-Id"
EVENT_KIND = "X-Compliancebot-Event-Kind"


class WebhookSettings(EventSinkSettings):
    """events.webhook: where events are POSTed; the secret comes from the environment
    (COMPLIANCEBOT_EVENTS__WEBHOOK__SECRET) or the secrets file."""

    url: str | None = None
    secret: Secret = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return checked_url(value, example="https://siem.example.com/hooks/compliancebot")

    @model_validator(mode="after")
    def _url_when_enabled(self) -> WebhookSettings:
        if self.enabled and not self.url:
            raise ValueError("events.webhook is enabled but events.webhook.url is not set")
        return self

    def missing_secrets(self) -> list[str]:
        """The signing secret, when the sink is enabled without one ([]: none missing)."""
        if self.enabled and self.secret is None:
            return [
                unset_secrets(
                    [("events", "webhook", "secret")],
                    f"the webhook sink signs every event with it ({GENERATE})",
                )
            ]
        return []


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256(secret, `<timestamp>.<body>`): the signature header's value."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


class WebhookSink:
    """POSTs each event (OutboxSink); a 2xx is delivered."""

    def __init__(
        self,
        *,
        url: str,
        secret: str,
        clock: Callable[[], datetime],
        timeout: float = 10.0,
        name: str = "webhook",
        client: httpx.Client | None = None,
        user_agent: str = "compliancebot",
    ) -> None:
        self._name = name
        self.url = url
        self._secret = secret
        self.clock = clock
        self.client = client or http_client(timeout)
        self.user_agent = user_agent
        self._lease = timedelta(seconds=timeout + 60)

    @property
    def name(self) -> str:
        """The outbox's sink name."""
        return self._name

    @property
    def lease(self) -> timedelta:
        """Longer than the slowest call."""
        return self._lease

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def deliver(self, session: Session, item: OutboxItem) -> dict[str, Any]:
        """POST the item's event, signed (OutboxSink)."""
        event = events.get(session, str(item.payload.get("event")))
        if event is None:  # archived or deleted before it went out
            return {"skipped": "the event no longer exists"}
        body = json.dumps(
            events.envelope(event), separators=(",", ":"), ensure_ascii=False
        ).encode()
        # Signed at the moment of sending (not when recorded): a resend after an outage is
        # inside the receiver's replay window.
        timestamp = str(int(self.clock().timestamp()))
        request = self.client.build_request(
            "POST",
            self.url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": self.user_agent,
                TIMESTAMP: timestamp,
                SIGNATURE: sign(self._secret, timestamp, body),
                EVENT_ID: event.id,
                EVENT_KIND: event.kind,
            },
        )
        status, headers, answer = call(self.client, request, clock=self.clock, who="the webhook")
        judge(status, headers, answer, now=self.clock(), who="the webhook")
        return {"status": status, "resent": outbox.in_doubt(item)}


def build_sink(section: WebhookSettings, *, clock: Callable[[], datetime]) -> WebhookSink:
    """The sink as configured (its secret is set: `missing_secrets` said none lacks)."""
    if section.url is None or section.secret is None:
        raise ValueError("events.webhook needs its url and secret (see missing_secrets)")
    return WebhookSink(
        url=section.url,
        secret=section.secret.get_secret_value(),
        clock=clock,
        timeout=section.timeout,
    )
