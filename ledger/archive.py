"""Retention with a verified archive: old rows leave the database only once an archive holds them.

Per kind (finding events, the audit trail, delivered outbox items, finished scans with their
errors), rows older than the kind's configured age are written, one object per day and kind
(`<kind>/<YYYY>/<MM>/<DD>.jsonl.gz`, then `.2.jsonl.gz`... for rows of a day archived later), as
gzip JSON Lines to a store (bot/archive.py: a local directory or S3). Each object is read back
and checked (row count and SHA-256 of the JSON Lines) before, in one transaction, its `archives`
row is written, the rows are deleted (the count deleted must equal the count archived) and a
chained audit entry `archive.created` records it. A crash anywhere leaves the rows in place; the
next run writes the same object name again (never a second copy).

The audit trail is archived as a prefix of its chain: the database lets an entry go only when an
`archives` row of kind "audit" covers its chain position (migration 0017), and `audit verify`
resumes the chain at the last archived entry's hash, attested by its `archive.created` entry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import IO, Any, Protocol, cast

from sqlalchemy import DateTime, Table, delete, func, insert, select, type_coerce
from sqlalchemy.orm import Session, sessionmaker

from ledger import audit
from ledger.db import transaction
from ledger.models import (
    Archive,
    AuditEntry,
    Event,
    FindingEvent,
    OutboxItem,
    OutboxStatus,
    Scan,
    ScanErrorRow,
)
from rules.errors import CompliancebotError

ACTOR = "compliancebot"
_DELETE_CHUNK = 500
_SPOOL = 32 * 1024 * 1024  # an object is built in memory up to this size, then on disk


class ArchiveError(CompliancebotError):
    """An archive could not be written, read back, checked or restored: nothing was deleted."""


class ArchiveStore(Protocol):
    """Where archive objects go (bot/archive.py: a directory, or S3)."""

    def location(self, name: str) -> str:
        """The object's full name for people and the `archives` table (s3://…, a path)."""
        ...

    def put(self, name: str, body: IO[bytes], size: int) -> None:
        """Store the object (replacing one of the same name); raise ArchiveError on failure."""
        ...

    def get(self, name: str) -> Iterator[bytes]:
        """The stored object's bytes, in chunks; raise ArchiveError when it cannot be read."""
        ...


@dataclass(frozen=True)
class Kind:
    """One archivable table: its rows, when each happened, and which may go."""

    name: str
    table: Table
    at: Any  # the column dating a row
    key: Any  # the column ordering and naming rows (id; audit: chain_seq)
    eligible: tuple[Any, ...] = ()  # more conditions a row must meet to go
    restorable: bool = True


def _table(model: Any) -> Table:
    return cast("Table", model.__table__)


def _pending_event() -> Any:
    """An event some sink has not had yet (its outbox item is not delivered): it stays."""
    return (
        select(OutboxItem.id)
        .where(
            OutboxItem.status != OutboxStatus.delivered,
            OutboxItem.key.endswith(Event.id),
        )
        .exists()
    )


def _kinds() -> dict[str, Kind]:
    outbox = _table(OutboxItem)
    scans = _table(Scan)
    return {
        "finding_events": Kind(
            "finding_events", _table(FindingEvent), FindingEvent.at, FindingEvent.id
        ),
        # The trail is append-only: it goes to the archive, never back into the chain.
        "audit": Kind(
            "audit",
            _table(AuditEntry),
            AuditEntry.at,
            AuditEntry.chain_seq,
            (AuditEntry.chain_seq.is_not(None),),
            restorable=False,
        ),
        "outbox": Kind(
            "outbox",
            outbox,
            OutboxItem.delivered_at,
            OutboxItem.id,
            (OutboxItem.status == OutboxStatus.delivered,),
        ),
        # Outbound events once every sink has them (their ids are text: the archive record
        # has no first and last key for them).
        "events": Kind(
            "events",
            _table(Event),
            Event.occurred_at,
            Event.id,
            (~_pending_event(),),
        ),
        "scans": Kind(
            "scans",
            scans,
            Scan.started_at,
            Scan.id,
            (Scan.finished_at.is_not(None),),
        ),
    }


KINDS = _kinds()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _line(row: dict[str, Any]) -> bytes:
    return (
        json.dumps(
            {k: _plain(v) for k, v in row.items()},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        + "\n"
    ).encode()


def _is_time(column: Any) -> bool:
    kind = column.type
    return isinstance(kind, DateTime) or isinstance(getattr(kind, "impl", None), DateTime)


def _columns(kind: Kind) -> list[Any]:
    # Timestamps as stored (naive UTC): no per-row conversion, and the text a restore writes back.
    return [
        type_coerce(c, DateTime()).label(c.name) if _is_time(c) else c for c in kind.table.columns
    ]


def _cutoff(now: datetime, days: int) -> datetime:
    """Midnight UTC `days` days before today: whole days only go."""
    midnight = datetime.combine((now.astimezone(UTC) - timedelta(days=days)).date(), time())
    return midnight.replace(tzinfo=UTC)


@dataclass
class Built:
    """One object, built and hashed, ready to store."""

    kind: str
    day: date
    body: IO[bytes]
    size: int
    rows: int
    sha256: str
    keys: list[Any]  # the rows' ids (audit: chain positions)
    last_hash: str | None = None


@dataclass
class RunReport:
    """What a run did, per kind: objects written, rows archived; and the problems met."""

    objects: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{k}: {self.rows.get(k, 0)} rows in {n} objects" for k, n in self.objects.items()]
        return "; ".join(parts) or "nothing old enough to archive"


def object_name(kind: str, day: date, part: int) -> str:
    """`<kind>/<YYYY>/<MM>/<DD>.jsonl.gz`; later parts of a day `.2.jsonl.gz`…"""
    suffix = "" if part == 1 else f".{part}"
    return f"{kind}/{day:%Y/%m/%d}{suffix}.jsonl.gz"


def _errors_of(session: Session, scan_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    table = _table(ScanErrorRow)
    for row in session.execute(
        select(table).where(table.c.scan_id.in_(scan_ids)).order_by(table.c.id)
    ).mappings():
        out.setdefault(int(row["scan_id"]), []).append(dict(row))
    return out


def _days(session: Session, kind: Kind, cutoff: datetime) -> list[date]:
    """The days with rows old enough to go, oldest first."""
    naive = cutoff.replace(tzinfo=None)
    at = type_coerce(kind.at, DateTime())
    rows = session.execute(
        select(func.min(at), func.max(at)).where(at < naive, *kind.eligible)
    ).one()
    if rows[0] is None:
        return []
    first, last = rows[0].date(), rows[1].date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _rows_of_day(session: Session, kind: Kind, day: date, cutoff: datetime) -> Iterator[Any]:
    start = datetime.combine(day, time())
    end = min(start + timedelta(days=1), cutoff.replace(tzinfo=None))
    at = type_coerce(kind.at, DateTime())
    stmt = (
        select(*_columns(kind))
        .where(at >= start, at < end, *kind.eligible)
        .order_by(kind.key)
        .execution_options(yield_per=5_000)
    )
    yield from session.connection().execute(stmt).mappings()


def _audit_prefix_end(session: Session, cutoff: datetime) -> int | None:
    """The last chain position that may go: the chain goes as a prefix, never with holes, and
    its last entry always stays (new entries chain to it)."""
    at = type_coerce(AuditEntry.at, DateTime())
    first_kept = session.scalar(
        select(func.min(AuditEntry.chain_seq)).where(
            AuditEntry.chain_seq.is_not(None), at >= cutoff.replace(tzinfo=None)
        )
    )
    last = session.scalar(select(func.max(AuditEntry.chain_seq)))
    if last is None:
        return None
    if first_kept is not None:
        return min(int(first_kept), int(last)) - 1
    return int(last) - 1


def build(session: Session, kind: Kind, day: date, cutoff: datetime) -> Built | None:
    """The day's object for `kind`: gzip JSON Lines in a spooled file, with its hash and keys."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 - handed on, closed by the caller
    digest = hashlib.sha256()
    keys: list[Any] = []
    last_hash = None
    limit = _audit_prefix_end(session, cutoff) if kind.name == "audit" else None
    # mtime=0: the same rows always make the same bytes (a re-run rewrites the same object).
    with gzip.GzipFile(fileobj=spool, mode="wb", mtime=0) as out:
        pending: list[dict[str, Any]] = []

        def flush() -> None:
            errors = _errors_of(session, [r["id"] for r in pending]) if kind.name == "scans" else {}
            for row in pending:
                if kind.name == "scans":
                    row["errors"] = errors.get(int(row["id"]), [])
                line = _line(row)
                digest.update(line)
                out.write(line)
            pending.clear()

        for mapping in _rows_of_day(session, kind, day, cutoff):
            row = dict(mapping)
            key = row[kind.key.name]
            if limit is not None and key > limit:
                continue
            keys.append(key)
            if kind.name == "audit":
                last_hash = row["hash"]
            pending.append(row)
            if len(pending) >= 1_000:
                flush()
        flush()
    if not keys:
        spool.close()
        return None
    size = spool.tell()
    spool.seek(0)
    return Built(kind.name, day, spool, size, len(keys), digest.hexdigest(), keys, last_hash)


def read_back(store: ArchiveStore, name: str) -> tuple[int, str, int]:
    """(rows, SHA-256 of the JSON Lines, stored bytes) of a stored object, streamed."""
    stored = 0

    def chunks() -> Iterator[bytes]:
        nonlocal stored
        for chunk in store.get(name):
            stored += len(chunk)
            yield chunk

    raw = _ChunkReader(chunks())
    digest = hashlib.sha256()
    rows = 0
    try:
        with gzip.GzipFile(fileobj=raw, mode="rb") as lines:
            for line in lines:
                digest.update(line)
                rows += 1
    except (OSError, EOFError) as exc:
        raise ArchiveError(f"{store.location(name)}: not a readable gzip object: {exc}") from exc
    return rows, digest.hexdigest(), stored


class _ChunkReader(io.RawIOBase):
    """A file-like view of an iterator of byte chunks (what gzip reads from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def _part(session: Session, kind: str, day: date) -> int:
    done = session.scalar(
        select(func.count()).select_from(Archive).where(Archive.kind == kind, Archive.day == day)
    )
    return int(done or 0) + 1


def _number(key: Any) -> int | None:
    return key if isinstance(key, int) else None


def _commit_object(
    session: Session, kind: Kind, built: Built, name: str, location: str, stored: int, now: datetime
) -> None:
    """Record the object, drop its rows (exactly as many as it holds) and say so in the trail."""
    session.execute(
        insert(Archive).values(
            kind=built.kind,
            day=built.day,
            name=name,
            location=location,
            rows=built.rows,
            sha256=built.sha256,
            bytes=stored,
            first_key=_number(built.keys[0]),
            last_key=_number(built.keys[-1]),
            last_hash=built.last_hash,
            created_at=now,
        )
    )
    if kind.name == "scans":
        errors = _table(ScanErrorRow)
        for start in range(0, len(built.keys), _DELETE_CHUNK):
            chunk = built.keys[start : start + _DELETE_CHUNK]
            session.execute(delete(errors).where(errors.c.scan_id.in_(chunk)))
    deleted = 0
    for start in range(0, len(built.keys), _DELETE_CHUNK):
        chunk = built.keys[start : start + _DELETE_CHUNK]
        result = session.execute(delete(kind.table).where(kind.key.in_(chunk)))
        deleted += int(getattr(result, "rowcount", 0) or 0)
    if deleted != built.rows:
        raise ArchiveError(
            f"{location}: {built.rows} rows archived but {deleted} would be deleted: nothing "
            "deleted (rows changed during the run; the next run archives them again)"
        )
    audit.append(
        session,
        [
            {
                "at": now,
                "actor": ACTOR,
                "action": "archive.created",
                "object_type": "archive",
                "object_id": name[:128],
                "detail": {
                    "kind": built.kind,
                    "day": built.day.isoformat(),
                    "location": location,
                    "rows": built.rows,
                    "sha256": built.sha256,
                    "first_key": _number(built.keys[0]),
                    "last_key": _number(built.keys[-1]),
                    "last_hash": built.last_hash,
                },
            }
        ],
    )


def run(
    *,
    sessions: sessionmaker[Session],
    store: ArchiveStore,
    days: dict[str, int | None],
    clock: Callable[[], datetime],
    kinds: Iterable[str] | None = None,
) -> RunReport:
    """Archive every kind with an age set in `days` (or only `kinds`); one transaction per
    object, each committed only after its object was read back and matched."""
    report = RunReport()
    for name in kinds or list(KINDS):
        age = days.get(name)
        if age is None:
            continue
        kind = KINDS[name]
        now = clock()
        cutoff = _cutoff(now, age)
        with sessions() as session:
            pending_days = _days(session, kind, cutoff)
        for day in pending_days:
            with transaction(sessions) as session:
                built = build(session, kind, day, cutoff)
                if built is None:
                    continue
                try:
                    obj = object_name(name, day, _part(session, name, day))
                    location = store.location(obj)
                    store.put(obj, built.body, built.size)
                    rows, sha, stored = read_back(store, obj)
                finally:
                    built.body.close()
                if (rows, sha) != (built.rows, built.sha256):
                    raise ArchiveError(
                        f"{location}: read back {rows} rows (SHA-256 {sha[:12]}…), expected "
                        f"{built.rows} ({built.sha256[:12]}…): nothing deleted"
                    )
                _commit_object(session, kind, built, obj, location, stored, clock())
            report.objects[name] = report.objects.get(name, 0) + 1
            report.rows[name] = report.rows.get(name, 0) + built.rows
    return report


def listing(*, session: Session, kind: str | None = None) -> list[Archive]:
    """The archive objects recorded, oldest day first."""
    stmt = select(Archive).order_by(Archive.kind, Archive.day, Archive.id)
    if kind is not None:
        stmt = stmt.where(Archive.kind == kind)
    return list(session.scalars(stmt))


def objects_of(*, session: Session, kind: str, day: date) -> list[Archive]:
    return list(
        session.scalars(
            select(Archive).where(Archive.kind == kind, Archive.day == day).order_by(Archive.id)
        )
    )


def lines(store: ArchiveStore, record: Archive) -> Iterator[dict[str, Any]]:
    """The rows of one object, after its hash and count were checked against the record."""
    name = record.name
    rows, sha, _stored = read_back(store, name)
    if (rows, sha) != (record.rows, record.sha256):
        raise ArchiveError(
            f"{record.location}: holds {rows} rows (SHA-256 {sha[:12]}…) but was archived with "
            f"{record.rows} ({record.sha256[:12]}…): it was changed since"
        )
    raw = _ChunkReader(iter(store.get(name)))
    with gzip.GzipFile(fileobj=raw, mode="rb") as body:
        for line in body:
            yield json.loads(line)


def _typed(kind: Kind, row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for column in kind.table.columns:
        value = row.get(column.name)
        if isinstance(value, str) and _is_time(column):
            value = datetime.fromisoformat(value).replace(tzinfo=UTC)
        out[column.name] = value
    return out


def restore(*, session: Session, store: ArchiveStore, record: Archive) -> tuple[int, int]:
    """Put one object's rows back (those not already there): (restored, already present)."""
    spec = KINDS[record.kind]
    if not spec.restorable:
        raise ArchiveError(
            "the audit trail is append-only: archived entries are not put back into the chain; "
            "write them to a file with --output"
        )
    restored = present = 0
    for row in lines(store, record):
        errors = row.pop("errors", None)
        exists = session.scalar(
            select(func.count()).select_from(spec.table).where(spec.key == row[spec.key.name])
        )
        if exists:
            present += 1
            continue
        session.execute(insert(spec.table).values(**_typed(spec, row)))
        if errors:
            table = _table(ScanErrorRow)
            session.execute(
                insert(table), [{c.name: e.get(c.name) for c in table.columns} for e in errors]
            )
        restored += 1
    return restored, present


def anchor(session: Session) -> Archive | None:
    """The last archive of the audit trail: where the kept chain resumes."""
    return session.scalars(
        select(Archive).where(Archive.kind == "audit").order_by(Archive.last_key.desc()).limit(1)
    ).first()
