"""The Splunk HTTP Event Collector event sink: events POSTed to /services/collector/event.

Up to `batch_size` events per request (HEC takes several JSON objects in one body); HEC answers
for the request as a whole, so a refusal or a retry applies to every event in it. The token goes
in `Authorization: Splunk
<token>`; with `channel` set, `X-Splunk-Request-Channel` is sent and the `ackId` HEC returns is
kept in the item's result. `event` is the event's body (an OCSF Compliance Finding for finding
events), `fields` carry its id and kind for searches and dedupe.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:  # imported where the client is made: settings never load httpx
    import httpx

from pydantic import Field, field_validator, model_validator
from sqlalchemy.orm import Session

from integrations.delivery import Refused
from integrations.event_sink import (
    EventSinkSettings,
    call,
    checked_url,
    http_client,
    judge,
    remote_message,
)
from integrations.trackers import Secret, unset_secrets
from ledger import events
from ledger.models import Event, OutboxItem

PATH = "/services/collector/event"
HEC_KEYS = ("text", "message")  # HEC answers {"text": ..., "code": ...}
SOURCETYPES = {events.OCSF_SCHEMA: "ocsf:compliance_finding"}
DEFAULT_SOURCETYPE = "compliancebot:event"


class SplunkSettings(EventSinkSettings):
    """events.splunk: the HEC endpoint; the token comes from the environment
    (COMPLIANCEBOT_EVENTS__SPLUNK__TOKEN) or the secrets file."""

    url: str | None = None  # the HEC base URL: https://splunk.example.com:8088
    token: Secret = None
    index: Annotated[str | None, Field(pattern=r"^[a-z0-9_][a-z0-9_-]{0,79}$")] = None
    source: Annotated[str, Field(min_length=1, max_length=200)] = "compliancebot"
    # Overrides the sourcetype (default: ocsf:compliance_finding or compliancebot:event).
    sourcetype: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    host: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    # The indexer-acknowledgement channel (a GUID), when the token has acknowledgement on.
    channel: uuid.UUID | None = None
    # A CA bundle for a HEC with a certificate of a private CA.
    ca_file: Path | None = None
    # Events per request (1: one request per event).
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 50

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return checked_url(value, example="https://splunk.example.com:8088").rstrip("/")

    @model_validator(mode="after")
    def _url_when_enabled(self) -> SplunkSettings:
        if self.enabled and not self.url:
            raise ValueError("events.splunk is enabled but events.splunk.url is not set")
        return self

    def missing_secrets(self) -> list[str]:
        """The HEC token, when the sink is enabled without one ([]: none missing)."""
        if self.enabled and self.token is None:
            return [
                unset_secrets(
                    [("events", "splunk", "token")],
                    "the Splunk sink (HTTP Event Collector) authenticates with",
                )
            ]
        return []


class SplunkSink:
    """Sends each event to HEC (OutboxSink); `{"code": 0}` is delivered."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        clock: Callable[[], datetime],
        timeout: float = 10.0,
        index: str | None = None,
        source: str = "compliancebot",
        sourcetype: str | None = None,
        host: str | None = None,
        channel: str | None = None,
        verify: str | bool = True,
        name: str = "splunk",
        client: httpx.Client | None = None,
        batch_size: int = 50,
    ) -> None:
        self._name = name
        self._batch_size = batch_size
        self.endpoint = url.rstrip("/") + PATH
        self._token = token
        self.clock = clock
        self.index = index
        self.source = source
        self.sourcetype = sourcetype
        self.host = host
        self.channel = channel
        self.client = client or http_client(timeout, verify)
        self._lease = timedelta(seconds=timeout + 60)

    @property
    def name(self) -> str:
        """The outbox's sink name."""
        return self._name

    @property
    def lease(self) -> timedelta:
        """Longer than the slowest call."""
        return self._lease

    @property
    def batch_size(self) -> int:
        """Events per request (BatchSink)."""
        return self._batch_size

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def hec_event(self, event: Event) -> dict[str, Any]:
        """The HEC JSON for one event."""
        doc: dict[str, Any] = {
            "time": round(event.occurred_at.timestamp(), 3),
            "source": self.source,
            "sourcetype": self.sourcetype or SOURCETYPES.get(event.body_schema, DEFAULT_SOURCETYPE),
            "event": event.body,
            "fields": {
                "event_id": event.id,
                "kind": event.kind,
                "severity": event.severity,
                **({"account": event.account} if event.account else {}),
            },
        }
        if self.index:
            doc["index"] = self.index
        if self.host:
            doc["host"] = self.host
        return doc

    def deliver(self, session: Session, item: OutboxItem) -> dict[str, Any]:
        """POST the item's event to HEC (OutboxSink)."""
        return self.deliver_batch(session, [item])[0]

    def deliver_batch(self, session: Session, items: Sequence[OutboxItem]) -> list[dict[str, Any]]:
        """POST the items' events to HEC in one request (BatchSink)."""
        found = [events.get(session, str(item.payload.get("event"))) for item in items]
        present = [event for event in found if event is not None]
        if not present:
            return [{"skipped": "the event no longer exists"} for _ in items]
        headers = {"Authorization": f"Splunk {self._token}", "Content-Type": "application/json"}
        if self.channel:
            headers["X-Splunk-Request-Channel"] = self.channel
        body = "".join(
            json.dumps(self.hec_event(event), separators=(",", ":"), ensure_ascii=False)
            for event in present
        )
        request = self.client.build_request(
            "POST", self.endpoint, content=body.encode(), headers=headers
        )
        status, answer_headers, answer = call(self.client, request, clock=self.clock, who="Splunk")
        judge(status, answer_headers, answer, now=self.clock(), who="Splunk", keys=HEC_KEYS)
        try:
            parsed = json.loads(answer.decode("utf-8", errors="replace"))
        except ValueError:
            parsed = None
        result: dict[str, Any] = {"status": status}
        if isinstance(parsed, dict):
            code = parsed.get("code")
            if isinstance(code, int) and not isinstance(code, bool) and code != 0:
                # A 2xx that says it did not take the event: HEC's own codes are permanent.
                raise Refused(
                    f"Splunk answered code {code}: {remote_message(answer, HEC_KEYS)}",
                    error=f"hec_{code}",
                )
            ack = parsed.get("ackId")
            if isinstance(ack, int) and not isinstance(ack, bool):
                result["ack_id"] = ack
        if len(present) > 1:
            result["batch"] = len(present)
        return [
            dict(result) if event is not None else {"skipped": "the event no longer exists"}
            for event in found
        ]


def build_sink(section: SplunkSettings, *, clock: Callable[[], datetime]) -> SplunkSink:
    """The sink as configured (its token is set: `missing_secrets` said none lacks)."""
    if section.url is None or section.token is None:
        raise ValueError("events.splunk needs its url and token (see missing_secrets)")
    return SplunkSink(
        url=section.url,
        token=section.token.get_secret_value(),
        clock=clock,
        timeout=section.timeout,
        index=section.index,
        source=section.source,
        sourcetype=section.sourcetype,
        host=section.host,
        channel=str(section.channel) if section.channel else None,
        verify=str(section.ca_file) if section.ca_file else True,
        batch_size=section.batch_size,
    )
