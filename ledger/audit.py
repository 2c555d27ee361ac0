"""The audit trail's hash chain: each entry carries the hash of the one before it, so an entry
changed, removed or inserted behind the ledger's back is named by `verify`.

The hash is SHA-256 over a canonical serialization of the entry and the previous hash; with an
HMAC key (audit.hmac_key, passed in through the session factory: `use_key`) it is HMAC-SHA256, so
someone who can write the database but lacks the key cannot rebuild a consistent chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import DateTime, Row, func, insert, select, text, type_coerce
from sqlalchemy.orm import Session, sessionmaker

from ledger import events, outbox
from ledger.db import transaction
from ledger.models import Archive, AuditEntry

log = structlog.get_logger(__name__)

GENESIS = "0" * 64  # the prev_hash of the first entry
KEY_INFO = "compliancebot.audit_hmac_key"  # where a session carries the key (Session.info)
# pg_advisory_xact_lock key: the ASCII bytes of "compaudt" (the scan lock is "compscan").
LOCK_KEY = int.from_bytes(b"compaudt", "big")
# How many problems a verification keeps (it counts them all).
MAX_PROBLEMS = 100
_STREAM = 10_000  # rows fetched at a time by verify and export
_KEY_ID_LABEL = b"compliancebot audit key id"


def use_key(sessions: sessionmaker[Session], key: str | None) -> None:
    """Sessions made by `sessions` chain new audit entries with `key` (HMAC-SHA256), or with
    plain SHA-256 when it is None."""
    info = dict(sessions.kw.get("info") or {})
    info[KEY_INFO] = key
    sessions.configure(info=info)


def key_of(session: Session) -> str | None:
    """The HMAC key the session's entries are chained with, if any."""
    key = session.info.get(KEY_INFO)
    return key if isinstance(key, str) and key else None


def key_id(key: str | None) -> str:
    """A short public name for a key ("" for none): says which key made an entry, never the key."""
    if not key:
        return ""
    return hmac.new(key.encode(), _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def _canonical_at(at: datetime) -> str:
    # Stored as naive UTC with microseconds on every backend: the same text before and after
    # (verify reads it naive, skipping the column's conversion to aware: a naive one is UTC).
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds")


def entry_hash(
    *,
    key: str | None,
    at: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    detail: Any,
    entry_key_id: str,
    prev_hash: str,
) -> str:
    """The hash of one entry chained to `prev_hash` (HMAC-SHA256 with `key`, else SHA-256)."""
    payload = json.dumps(
        [
            _canonical_at(at),
            actor,
            action,
            object_type,
            object_id,
            detail,
            entry_key_id,
            prev_hash,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    if key:
        return hmac.new(key.encode(), payload, hashlib.sha256).hexdigest()
    return hashlib.sha256(payload).hexdigest()


def _tail(session: Session) -> tuple[int, str]:
    """(chain_seq, hash) of the last chained entry, (0, GENESIS) for an empty trail."""
    last = session.execute(
        select(AuditEntry.chain_seq, AuditEntry.hash)
        .where(AuditEntry.chain_seq.is_not(None))
        .order_by(AuditEntry.chain_seq.desc())
        .limit(1)
    ).first()
    if last is None or last.chain_seq is None:
        return 0, GENESIS
    return int(last.chain_seq), str(last.hash or GENESIS)


def append(session: Session, entries: Sequence[Mapping[str, Any]]) -> None:
    """Append entries (dicts of at, actor, action, object_type, object_id, detail) in one bulk
    insert, each chained to the one before it.

    Two transactions appending at once must not chain to the same predecessor: on PostgreSQL a
    transaction-level advisory lock is taken before the tail is read (held until commit); SQLite
    serializes writers. The unique chain_seq refuses a fork should either ever fail.
    """
    if not entries:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    seq, prev = _tail(session)
    key = key_of(session)
    kid = key_id(key)
    rows: list[dict[str, Any]] = []
    for entry in entries:
        # What is hashed is what the JSON column gives back (tuples become lists, keys strings).
        detail = json.loads(json.dumps(entry.get("detail") or {}))
        seq += 1
        row = {
            "at": entry["at"],
            "actor": entry["actor"],
            "action": entry["action"],
            "object_type": entry["object_type"],
            "object_id": entry["object_id"],
            "detail": detail,
            "chain_seq": seq,
            "key_id": kid,
            "prev_hash": prev,
        }
        prev = entry_hash(
            key=key,
            at=row["at"],
            actor=row["actor"],
            action=row["action"],
            object_type=row["object_type"],
            object_id=row["object_id"],
            detail=detail,
            entry_key_id=kid,
            prev_hash=row["prev_hash"],
        )
        row["hash"] = prev
        rows.append(row)
    session.execute(insert(AuditEntry), rows)


@dataclass(frozen=True)
class Problem:
    """One break in the chain: the entry where it shows and what is wrong."""

    entry_id: int
    kind: str  # changed, removed, inserted, key
    message: str


@dataclass
class ChainReport:
    """What `verify` found: how many entries, and the breaks (the first MAX_PROBLEMS of them)."""

    entries: int = 0
    unkeyed: int = 0  # entries chained without an HMAC key
    problems: list[Problem] = field(default_factory=list)
    broken: int = 0  # every break, also past MAX_PROBLEMS

    @property
    def intact(self) -> bool:
        return self.broken == 0

    def summary(self) -> str:
        """One line: "N entries, chain intact", or the first break and how many more."""
        if self.intact:
            note = ""
            if self.unkeyed and self.unkeyed < self.entries:
                note = f" ({self.unkeyed} chained before audit.hmac_key was set, without it)"
            entries = "1 entry" if self.entries == 1 else f"{self.entries} entries"
            return f"{entries}, chain intact{note}"
        more = f" (and {self.broken - 1} more)" if self.broken > 1 else ""
        return f"audit trail broken: {self.problems[0].message}{more}"

    def _add(self, problem: Problem) -> None:
        self.broken += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


_COLUMNS = (
    AuditEntry.id,
    AuditEntry.chain_seq,
    # Naive UTC as stored (the ORM type would make each one aware: a cost per row).
    type_coerce(AuditEntry.at, DateTime()).label("at"),
    AuditEntry.actor,
    AuditEntry.action,
    AuditEntry.object_type,
    AuditEntry.object_id,
    AuditEntry.detail,
    AuditEntry.key_id,
    AuditEntry.prev_hash,
    AuditEntry.hash,
)


def _stream(session: Session, stmt: Any) -> Iterator[Row[Any]]:
    """Rows of a Core select on the session's connection (no ORM objects), fetched _STREAM at
    a time (a server-side cursor on PostgreSQL)."""
    result = session.connection().execute(stmt.execution_options(yield_per=_STREAM))
    yield from result


def verify(*, session: Session, key: str | None) -> ChainReport:
    """Walk the chain in order and name every entry changed, removed or inserted."""
    report = ChainReport()
    kid = key_id(key)
    last_id: int | None = None
    last_hash = GENESIS
    before_id: int | None = None
    before_hash: str | None = None
    expected = 1
    keyed_seen = False
    resync = False
    # Archived entries (ledger/archive.py): the kept chain resumes at the last one's hash, and
    # that archive must be attested by its chained `archive.created` entry.
    anchor = session.scalars(
        select(Archive).where(Archive.kind == "audit").order_by(Archive.last_key.desc()).limit(1)
    ).first()
    attested = anchor is None
    if anchor is not None:
        expected, last_hash = (anchor.last_key or 0) + 1, anchor.last_hash or GENESIS
    stmt = select(*_COLUMNS).where(AuditEntry.chain_seq.is_not(None)).order_by(AuditEntry.chain_seq)
    for row in _stream(session, stmt):
        report.entries += 1
        if anchor is not None and not attested:
            attested = _attests(row, anchor)
        entry_kid = row.key_id or ""
        if not entry_kid:
            report.unkeyed += 1
        seq = int(row.chain_seq)
        problem: Problem | None = None
        if entry_kid and entry_kid != kid:
            report._add(_key_problem(row.id, entry_kid, kid))
            return _count_rest(session, report)
        if seq != expected:
            missing = seq - expected
            what = "entry" if missing == 1 else f"{missing} entries"
            problem = Problem(
                row.id,
                "removed",
                f"{what} before audit entry {row.id} removed (chain position"
                f"{'' if missing == 1 else 's'} {_span(expected, seq - 1)} missing)",
            )
        elif not entry_kid and keyed_seen:
            problem = Problem(
                row.id,
                "inserted",
                f"audit entry {row.id} was written without the HMAC key after keyed entries: "
                "inserted or rewritten by someone without audit.hmac_key",
            )
        elif row.hash != _recompute(row, key if entry_kid else None):
            problem = Problem(
                row.id,
                "changed",
                f"audit entry {row.id} was changed: its content no longer matches its hash",
            )
        elif row.prev_hash != last_hash and not resync:
            problem = _link_problem(row, last_id, before_id, before_hash)
        if problem is not None:
            report._add(problem)
        # One break is one problem: the link after a broken entry is not judged again.
        resync = problem is not None
        keyed_seen = keyed_seen or bool(entry_kid)
        expected = seq + 1
        before_id, before_hash = last_id, last_hash
        last_id, last_hash = row.id, row.hash
    if not attested and anchor is not None:
        report._add(
            Problem(
                last_id or 0,
                "removed",
                f"audit entries 1-{anchor.last_key} are gone and the archive said to hold them "
                f"({anchor.location}) is not attested by an archive.created entry in the chain",
            )
        )
    for entry_id in session.scalars(
        select(AuditEntry.id).where(AuditEntry.chain_seq.is_(None)).order_by(AuditEntry.id)
    ):
        report.entries += 1
        report._add(
            Problem(
                entry_id,
                "inserted",
                f"audit entry {entry_id} was inserted outside the ledger: it has no place in "
                "the chain",
            )
        )
    return report


def _attests(row: Row[Any], anchor: Archive) -> bool:
    """The chained record of the archive the kept chain resumes after."""
    detail = row.detail if isinstance(row.detail, dict) else {}
    return (
        row.action == "archive.created"
        and detail.get("kind") == "audit"
        and detail.get("last_key") == anchor.last_key
        and detail.get("last_hash") == anchor.last_hash
        and detail.get("location") == anchor.location
    )


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def _recompute(row: Row[Any], key: str | None) -> str:
    return entry_hash(
        key=key,
        at=row.at,
        actor=row.actor,
        action=row.action,
        object_type=row.object_type,
        object_id=row.object_id,
        detail=row.detail,
        entry_key_id=row.key_id or "",
        prev_hash=row.prev_hash or "",
    )


def _key_problem(entry_id: int, entry_kid: str, kid: str) -> Problem:
    if not kid:
        why = (
            f"audit entry {entry_id} was chained with an HMAC key (key id {entry_kid}) but "
            "audit.hmac_key is not set: set COMPLIANCEBOT_AUDIT__HMAC_KEY to the key that wrote it"
        )
    else:
        why = (
            f"audit entry {entry_id} was chained with another HMAC key (key id {entry_kid}) than "
            f"audit.hmac_key (key id {kid}): set COMPLIANCEBOT_AUDIT__HMAC_KEY to the key that "
            "wrote it"
        )
    return Problem(entry_id, "key", why)


def _count_rest(session: Session, report: ChainReport) -> ChainReport:
    """After a key mismatch nothing more can be checked: count the entries all the same."""
    report.entries = int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0)
    return report


def _link_problem(
    row: Row[Any], last_id: int | None, before_id: int | None, before_hash: str | None
) -> Problem:
    if last_id is None:
        return Problem(
            row.id,
            "removed",
            f"entries before audit entry {row.id} removed: it is first but does not start the "
            "chain",
        )
    if before_hash is not None and row.prev_hash == before_hash:
        after = f"entry {before_id}" if before_id is not None else "the start of the chain"
        return Problem(
            last_id,
            "inserted",
            f"audit entry {last_id} was inserted: entry {row.id} after it chains to {after}",
        )
    return Problem(
        row.id,
        "removed",
        f"audit entry {row.id} does not chain to entry {last_id} before it: an entry between "
        f"them was removed, or entry {last_id} was changed and re-hashed",
    )


def export(*, session: Session, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every entry in chain order (from `since` on) as a JSON-ready dict with its hashes."""
    stmt = select(*_COLUMNS).order_by(AuditEntry.chain_seq, AuditEntry.id)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    for row in _stream(session, stmt):
        yield {
            "id": row.id,
            "chain_seq": row.chain_seq,
            "at": row.at.isoformat() + "Z",
            "actor": row.actor,
            "action": row.action,
            "object_type": row.object_type,
            "object_id": row.object_id,
            "detail": row.detail,
            "key_id": row.key_id or "",
            "prev_hash": row.prev_hash,
            "hash": row.hash,
        }


def alert_key(problem: Problem) -> str:
    """The outbox key of a break's alert: one break is alerted once."""
    return f"audit.chain_broken:{problem.kind}:{problem.entry_id}"


def check_chain(
    *,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
    key: str | None,
    channel: str | None,
) -> ChainReport:
    """The nightly job: `nightly_check` in a transaction of its own."""
    with transaction(sessions) as session:
        return nightly_check(session=session, key=key, now=clock(), channel=channel)


def nightly_check(
    *, session: Session, key: str | None, now: datetime, channel: str | None
) -> ChainReport:
    """Verify the chain; when broken, log `audit.chain_broken` and record a Slack alert to
    `channel` (once per first break) for the Slack sink."""
    report = verify(session=session, key=key)
    if report.intact:
        log.info("audit.chain_intact", entries=report.entries)
        return report
    first = report.problems[0]
    log.error(
        "audit.chain_broken",
        entry_id=first.entry_id,
        kind=first.kind,
        breaks=report.broken,
        detail=first.message,
    )
    if channel is not None:
        outbox.enqueue(
            session=session,
            sink="slack",
            kind="alert",
            key=alert_key(first),
            payload={"channel": channel, "text": report.summary()},
            now=now,
        )
    events.record_audit_break(
        session,
        now=now,
        detail={
            "entry_id": first.entry_id,
            "kind": first.kind,
            "breaks": report.broken,
            "message": first.message,
        },
        once=alert_key(first),
    )
    return report
