"""Agents: hosts that send their host scanners' results to `serve`.

`enroll` makes a token, shown once and kept only as its SHA-256; `revoke` ends it. A result is
taken from an agent whose token matches and is not revoked, and whose time (`sent_at`) is later
than its last accepted result's and not far off the server's clock: a replayed or reordered
result is refused. Enrolment and revocation are audited.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.models import Agent
from ledger.services import LedgerError, audit

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TOKEN_PREFIX = "cba_"  # noqa: S105 - a prefix, recognisable in a leaked-secret scan
# How far a result's own time may be ahead of the server's (clock skew) or behind it.
MAX_AHEAD = timedelta(minutes=5)
MAX_AGE = timedelta(hours=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _active(session: Session, name: str) -> Agent | None:
    return session.scalars(
        select(Agent).where(Agent.name == name, Agent.revoked_at.is_(None))
    ).first()


def enroll(*, session: Session, name: str, by: str, now: datetime) -> str:
    """A new agent named `name` (its findings' account); returns its token, shown only now."""
    if not NAME.match(name):
        raise LedgerError(
            f"an agent name is 1-64 letters, digits, dots, dashes or underscores, not {name!r}",
            field="name",
        )
    if _active(session, name) is not None:
        raise LedgerError(
            f"agent {name!r} is enrolled already: revoke it first (`agent revoke {name}`)",
            field="name",
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(Agent(name=name, token_hash=token_hash(token), enrolled_at=now, enrolled_by=by))
    audit(
        session,
        now=now,
        actor=by,
        action="agent.enrolled",
        object_type="agent",
        object_id=name,
        detail={},
    )
    return token


def revoke(*, session: Session, name: str, by: str, now: datetime) -> Agent:
    """End the agent's token: its results are refused from now on."""
    agent = _active(session, name)
    if agent is None:
        raise LedgerError(f"no enrolled agent named {name!r}", field="name")
    agent.revoked_at, agent.revoked_by = now, by
    audit(
        session,
        now=now,
        actor=by,
        action="agent.revoked",
        object_type="agent",
        object_id=name,
        detail={},
    )
    return agent


def listing(*, session: Session) -> list[Agent]:
    """Every agent, enrolled or revoked, by name."""
    return list(session.scalars(select(Agent).order_by(Agent.name, Agent.id)))


def active(*, session: Session) -> list[Agent]:
    """The enrolled agents (not revoked)."""
    return list(
        session.scalars(select(Agent).where(Agent.revoked_at.is_(None)).order_by(Agent.name))
    )


class Refusal(Exception):  # noqa: N818 - an outcome with its HTTP status
    """Why a result is not taken; `status` is what the agent is answered."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def authenticate(*, session: Session, token: str | None) -> Agent:
    """The agent a bearer token belongs to, or Refusal(401/403)."""
    if not token:
        raise Refusal(401, "no token: send Authorization: Bearer <the agent's token>")
    digest = token_hash(token)
    agent = session.scalars(select(Agent).where(Agent.token_hash == digest)).first()
    # A constant-time comparison too, though the lookup already was by the digest.
    if agent is None or not hmac.compare_digest(agent.token_hash, digest):
        raise Refusal(401, "unknown token")
    if agent.revoked_at is not None:
        raise Refusal(403, f"agent {agent.name!r} was revoked")
    return agent


def take(*, agent: Agent, sent_at: datetime, now: datetime) -> None:
    """Accept a result sent at `sent_at`, or Refusal(409) for a replay, reorder or far clock."""
    if sent_at > now + MAX_AHEAD:
        raise Refusal(409, f"sent_at {sent_at.isoformat()} is ahead of the server's clock")
    if sent_at < now - MAX_AGE:
        raise Refusal(409, f"sent_at {sent_at.isoformat()} is over an hour old: resend fresh")
    if agent.last_sent_at is not None and sent_at <= agent.last_sent_at:
        raise Refusal(409, "a result as old as one already taken: a replay, or out of order")
    agent.last_sent_at, agent.last_seen_at = sent_at, now
