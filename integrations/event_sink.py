"""What every event sink (webhook, Splunk HEC, e-mail) shares: its settings' filters, the rule
for the URLs it calls, and how an HTTP answer becomes delivered / RetryLater / Refused.

The sinks themselves are one module each (`webhook_sink.py`, `splunk_sink.py`,
`email_sink.py`); each is an `OutboxSink` drained by the one outbox worker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:  # httpx is imported where a call is made: settings and scans never load it
    import httpx
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from integrations.delivery import Refused, RetryLater
from integrations.markup import one_line
from ledger import outbox
from ledger.events import KINDS, Subscription
from rules.catalog import Severity

# The most of a remote answer read (a hostile or broken server may send gigabytes), and the
# most of its message kept for `outbox status`.
MAX_ANSWER_BYTES = 64 * 1024
MAX_MESSAGE = 300
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


class EventSinkSettings(BaseModel):
    """What every `events.<sink>` section has: on/off, which events, how long a call may take."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # Only these kinds (docs/events.md lists them); empty: every kind.
    kinds: list[str] = []
    min_severity: Severity = Severity.info
    # Only events citing one of these frameworks / of these accounts (target names); empty: all.
    frameworks: list[str] = []
    accounts: list[str] = []
    timeout: Annotated[float, Field(gt=0, le=120)] = 10.0

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        unknown = [kind for kind in value if kind not in KINDS]
        if unknown:
            raise ValueError(f"unknown event kind(s) {unknown}; known: {', '.join(KINDS)}")
        return value

    def subscription(self, sink: str) -> Subscription:
        """The filter `ledger.events` applies when recording, for the sink named `sink`."""
        return Subscription(
            sink=sink,
            kinds=frozenset(self.kinds),
            min_severity=self.min_severity,
            frameworks=frozenset(self.frameworks),
            accounts=frozenset(self.accounts),
        )


def checked_url(value: str, *, example: str, query: bool = False) -> str:
    """An https URL (http only on a loopback address: nothing leaves the machine), without
    credentials or a fragment (and without a query unless allowed): secrets go in their own
    settings, never in a URL that ends up in logs."""
    parts = urlsplit(value)
    loopback = parts.hostname in LOOPBACK
    if not (parts.scheme == "https" or (parts.scheme == "http" and loopback)) or not parts.hostname:
        raise ValueError(f"must be an https URL such as {example} (http only on 127.0.0.1)")
    if parts.username or parts.password or parts.fragment or (parts.query and not query):
        raise ValueError("must be a plain URL, without user, password, query or fragment")
    return value


def http_client(timeout: float, verify: str | bool = True) -> httpx.Client:
    """A sink's client: no redirects (a body goes where it was configured to, nowhere else) and
    no retries below the outbox's. httpx is imported here, so settings and scans never load it."""
    import httpx

    return httpx.Client(timeout=timeout, follow_redirects=False, verify=verify)


def read_capped(response: httpx.Response, limit: int = MAX_ANSWER_BYTES) -> bytes:
    """At most `limit` bytes of a streamed answer's body; the rest is never read."""
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= limit:
            return data[:limit]
    return data


def remote_message(body: bytes, keys: tuple[str, ...] = ("message", "text", "error")) -> str:
    """What a remote answer says, for people: a JSON object's message if it has one, else its
    text; one line, control characters removed, bounded. Never trusted, never markup."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in keys:
            found = parsed.get(key)
            if isinstance(found, str) and found.strip():
                text = found
                break
    # Bidirectional overrides would reorder what `outbox status` shows: dropped too.
    return one_line(_BIDI.sub("", text), MAX_MESSAGE) or "(no message)"


def call(
    client: httpx.Client,
    request: httpx.Request,
    *,
    clock: Callable[[], datetime],
    who: str,
) -> tuple[int, Mapping[str, str], bytes]:
    """Send `request`; (status, headers, at most MAX_ANSWER_BYTES of the body), or RetryLater
    when the call failed on the way (a timeout, a reset, a refused connection): the far side
    may or may not have acted, and a resend carries the same event id."""
    import httpx

    try:
        response = client.send(request, stream=True)
        try:
            body = read_capped(response)
        finally:
            response.close()
    except httpx.TimeoutException as exc:
        raise RetryLater(f"{who}: timed out ({type(exc).__name__})", error="timeout") from exc
    except httpx.TransportError as exc:
        # The exception's text may quote the URL (a query string): only its kind is kept.
        raise RetryLater(
            f"{who}: connection failed ({type(exc).__name__})", error="connection"
        ) from exc
    return response.status_code, response.headers, body


def judge(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    who: str,
    keys: tuple[str, ...] = ("message", "text", "error"),
) -> None:
    """Return on a 2xx; raise RetryLater (429, 503 with their Retry-After; 408, other 5xx) or
    Refused (any other answer, with the far side's message) otherwise."""
    if 200 <= status < 300:
        return
    message = f"{who} answered HTTP {status}: {remote_message(body, keys)}"
    if status in (429, 503):
        # The far side asks everyone to slow down: the worker waits a short Retry-After out
        # before the next item, and ends the sink's round on a long one.
        wait = outbox.retry_after(headers, now=now)
        raise RetryLater(message, retry_after=wait, pause=wait is not None, error=f"http_{status}")
    if status == 408 or status >= 500:
        raise RetryLater(message, error=f"http_{status}")
    raise Refused(message, error=f"http_{status}")
