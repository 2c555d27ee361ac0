"""Slack's request signature, checked on the raw bytes before anything parses them.

Nothing of an unverified request is parsed or logged; a verified one is parsed the way Bolt
parses it, and refused (400) if Bolt could not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ledger.inbound import delivery_key

# Slack's timestamps are Unix seconds. int() alone would also take " 1", "1_0", "+1" or other
# scripts' digits, none of which Slack sends.
TIMESTAMP = re.compile(r"[0-9]{1,12}")
SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
MAX_AGE_SECONDS = 300  # Slack's own window for a signed request


class RefusedError(Exception):
    """A request we will not hand to Bolt; the message is ours, never the client's text."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class SignedRequest:
    """A verified Slack request: its text for Bolt, the parsed body, and its replay key."""

    text: str
    body: dict[str, Any]
    replay_key: str


def signature_of(secret: str, timestamp: str, body: bytes) -> str:
    """`v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`, over bytes (the body may be any)."""
    mac = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return "v0=" + mac.hexdigest()


def verify(*, secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The request's signature if Slack signed this body within the last five minutes.

    Raises RefusedError(401) otherwise. slack_sdk's SignatureVerifier computes the same HMAC, but
    decodes the body as UTF-8 and the timestamp with int() first, so hostile input raises
    instead of failing the check; this works on the raw bytes and checks the header shapes.
    """
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not secret or not TIMESTAMP.fullmatch(timestamp) or not SIGNATURE.fullmatch(signature):
        raise RefusedError(401, "the request is not signed by Slack")
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        raise RefusedError(401, "the request's Slack timestamp is over five minutes off")
    if not hmac.compare_digest(signature_of(secret, timestamp, body).encode(), signature.encode()):
        raise RefusedError(401, "the request is not signed by Slack")
    return signature


def parse(body: bytes, content_type: str | None) -> tuple[str, dict[str, Any]]:
    """The body as text and as Bolt will read it: JSON, form fields, or a form `payload` JSON.

    Raises RefusedError(400) where Bolt's own parsing would fail (a 500 inside Bolt).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RefusedError(400, "the request body is not UTF-8") from None
    media = (content_type or "").split(";")[0]
    try:
        # Bolt's rule (slack_bolt.request.internals.parse_body), kept in step with it.
        if not text:
            parsed: Any = {}
        elif media == "application/json" or text.startswith("{"):
            parsed = json.loads(text)
        elif "payload" in text:
            payload = dict(parse_qsl(text, keep_blank_values=True)).get("payload")
            parsed = {} if payload is None else json.loads(payload)
        else:
            parsed = dict(parse_qsl(text, keep_blank_values=True))
    except (ValueError, RecursionError):  # JSONDecodeError, too many digits, too deep
        raise RefusedError(400, "the request body is not valid Slack JSON or form data") from None
    if not isinstance(parsed, dict):
        raise RefusedError(400, "the request body is not a JSON object")
    return text, parsed


def check(*, secret: str, headers: Mapping[str, str], body: bytes, now: float) -> SignedRequest:
    """Verify, then parse: a SignedRequest, or RefusedError with the status to answer."""
    signature = verify(secret=secret, headers=headers, body=body, now=now)
    text, parsed = parse(body, headers.get("content-type"))
    # One signature per (timestamp, body): the same signed request sent again has the same key.
    replay_key = delivery_key("slack-sig", signature)
    return SignedRequest(text=text, body=parsed, replay_key=replay_key)
