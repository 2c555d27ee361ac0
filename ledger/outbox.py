"""The outbox: outward calls (Slack posts, later tickets) written down before they are made.

A caller records an intent under a unique key in its own transaction; a worker delivers due
items, records the outcome, and retries with backoff. Nothing is lost in a crash or an outage,
and the same intent recorded twice is one item.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ledger.models import OutboxItem, OutboxStatus

# Backoff after the n-th failed attempt, capped; a Retry-After from the far side replaces it.
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 15 * 60.0


def enqueue(
    *,
    session: Session,
    sink: str,
    kind: str,
    key: str,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    """Record an intent once; True if it is new, False if the key was already recorded."""
    values = {
        "sink": sink,
        "kind": kind,
        "key": key,
        "payload": payload,
        "status": OutboxStatus.pending,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
        "result": {},
    }
    dialect = session.get_bind().dialect.name
    insert_fn = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert_fn(OutboxItem)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(OutboxItem.id)
    )
    # rowcount is not reliable here across drivers; a returned id is.
    return session.execute(stmt).first() is not None


def enqueue_many(
    *,
    session: Session,
    sink: str,
    kind: str,
    items: Sequence[tuple[str, dict[str, Any]]],
    now: datetime,
    chunk: int = 500,
) -> int:
    """Record many (key, payload) intents in a few statements; returns how many were new."""
    if not items:
        return 0
    dialect = session.get_bind().dialect.name
    insert_fn = pg_insert if dialect == "postgresql" else sqlite_insert
    table = cast(Table, OutboxItem.__table__)
    # One statement executed with many parameter sets: compiled once, sent in batches
    # ("insertmanyvalues"); RETURNING gives back only the rows that were new.
    stmt = insert_fn(table).on_conflict_do_nothing(index_elements=["key"]).returning(table.c.id)
    connection = session.connection()
    new = 0
    for start in range(0, len(items), chunk):
        rows = [
            {
                "sink": sink,
                "kind": kind,
                "key": key,
                "payload": payload,
                "status": OutboxStatus.pending,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
                "delivered_at": None,
                "last_error": None,
                "result": {},
            }
            for key, payload in items[start : start + chunk]
        ]
        new += len(connection.execute(stmt, rows).all())
    return new


def due(*, session: Session, sink: str, now: datetime, limit: int = 50) -> Sequence[OutboxItem]:
    """Pending items whose time has come, oldest first; locked against other replicas."""
    query = (
        select(OutboxItem)
        .where(
            OutboxItem.sink == sink,
            OutboxItem.status == OutboxStatus.pending,
            OutboxItem.next_attempt_at <= now,
        )
        .order_by(OutboxItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(query).all()


def due_ids(*, session: Session, sink: str, now: datetime, limit: int = 100) -> list[int]:
    """Ids of the due items, oldest first; each is then taken with `take` in a transaction."""
    return [item.id for item in due(session=session, sink=sink, now=now, limit=limit)]


def take(*, session: Session, item_id: int) -> OutboxItem | None:
    """The item, locked, if it is still pending (another replica may have delivered it)."""
    return session.scalar(
        select(OutboxItem)
        .where(OutboxItem.id == item_id, OutboxItem.status == OutboxStatus.pending)
        .with_for_update(skip_locked=True)
    )


# The mark an attempt leaves in `result` before its call is made (see `begin`).
IN_FLIGHT = "in_flight"
# The mark `begin` leaves when it finds an earlier attempt's IN_FLIGHT with no outcome.
UNFINISHED = "unfinished_attempt"


def begin(
    *, session: Session, item_id: int, now: datetime, lease: timedelta, token: str
) -> OutboxItem | None:
    """Take a due item for one attempt and write down, under `token`, that the attempt began.

    The caller commits this before making the call. After a crash between the far side's answer
    and the commit of the outcome, the next attempt then knows a call may have landed
    (`in_doubt`) and looks for it instead of making it again. Until the attempt records its
    outcome, or `lease` runs out (a crashed worker), the item is not due for anyone else.
    """
    item = session.scalar(
        select(OutboxItem)
        .where(
            OutboxItem.id == item_id,
            OutboxItem.status == OutboxStatus.pending,
            OutboxItem.next_attempt_at <= now,
        )
        .with_for_update(skip_locked=True)
    )
    if item is None:
        return None
    item.next_attempt_at = now + lease
    earlier = (item.result or {}).get(IN_FLIGHT) is not None or (item.result or {}).get(UNFINISHED)
    item.result = {**(item.result or {}), IN_FLIGHT: token}
    if earlier:  # an attempt began and recorded no outcome: it may have reached the far side
        item.result[UNFINISHED] = True
    return item


def in_doubt(item: OutboxItem) -> bool:
    """An earlier attempt may have reached the far side: it failed unseen, or never finished."""
    return item.attempts > 0 or bool((item.result or {}).get(UNFINISHED))


def delivered(*, item: OutboxItem, now: datetime, result: dict[str, Any]) -> None:
    """The far side has it."""
    item.status = OutboxStatus.delivered
    item.delivered_at = now
    item.attempts += 1
    item.last_error = None
    item.result = result


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """How long to wait after `attempts` failed attempts: Retry-After if the far side said one,
    else exponential and capped.

    The far side's Retry-After is exact: waiting longer only delays the work (a 429 with
    `Retry-After: 3` is due again 3 s after the answer), waiting less earns another 429. It is
    capped like the backoff: a broken or hostile server cannot park an item for years.
    """
    if retry_after is not None and not math.isnan(retry_after):
        return timedelta(seconds=min(BACKOFF_CAP_SECONDS, max(0.0, retry_after)))
    return timedelta(
        seconds=min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    )


def retry_after(headers: Mapping[str, Any] | None, *, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or HTTP-date), or None.

    `headers` may use any case and hold a value or a list of values (slack_sdk, requests and
    urllib differ). `now` is when the answer came (read after the call), the base an HTTP-date
    is measured from. A value that is neither form is ignored, not trusted; a wait is capped at
    the longest backoff, so a hostile or broken server cannot park an item for a year.
    """
    raw: Any = None
    for name, value in (headers or {}).items():
        if str(name).lower() == "retry-after":
            raw = value
            break
    if isinstance(raw, list | tuple):
        raw = raw[0] if raw else None
    if raw is None:
        return None
    text = str(raw).strip()
    if text.isascii() and text.isdigit():
        seconds = float(text)  # not int(): a 5,000-digit value must not raise
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # HTTP-dates are GMT; the parser leaves "-0000" naive
            when = when.replace(tzinfo=now.tzinfo)
        seconds = max(0.0, (when - now).total_seconds())
    return min(seconds, BACKOFF_CAP_SECONDS) if math.isfinite(seconds) else None


def retry_later(
    *, item: OutboxItem, now: datetime, error: str, retry_after: float | None = None
) -> None:
    """A transient failure: try again after a backoff."""
    item.attempts += 1
    item.last_error = error[:4000]
    item.next_attempt_at = now + backoff(item.attempts, retry_after)


def failed(*, item: OutboxItem, now: datetime, error: str) -> None:
    """A permanent refusal: kept, with the far side's message, until retried by hand."""
    item.attempts += 1
    item.status = OutboxStatus.failed
    item.last_error = error[:4000]
    item.next_attempt_at = now


def postpone(*, item: OutboxItem, until: datetime) -> None:
    """Not yet deliverable (it waits on another item); no attempt is counted."""
    item.next_attempt_at = until


def retry_failed(*, session: Session, sink: str, now: datetime) -> int:
    """Put every failed item of a sink back in the queue; returns how many."""
    result = session.execute(
        update(OutboxItem)
        .where(OutboxItem.sink == sink, OutboxItem.status == OutboxStatus.failed)
        .values(status=OutboxStatus.pending, next_attempt_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def counts(*, session: Session, sink: str) -> dict[str, int]:
    """Items per status for one sink."""
    rows = session.execute(
        select(OutboxItem.status, func.count())
        .where(OutboxItem.sink == sink)
        .group_by(OutboxItem.status)
    ).all()
    return {str(status): int(n) for status, n in rows}


def by_key(*, session: Session, key: str) -> OutboxItem | None:
    """The item recorded under `key`, if any."""
    return session.scalar(select(OutboxItem).where(OutboxItem.key == key))


def stuck(*, session: Session, sink: str, limit: int = 50) -> Sequence[OutboxItem]:
    """A sink's undelivered items that failed at least once, oldest first, with their error."""
    return session.scalars(
        select(OutboxItem)
        .where(OutboxItem.sink == sink, OutboxItem.status != OutboxStatus.delivered)
        .where(OutboxItem.last_error.is_not(None))
        .order_by(OutboxItem.id)
        .limit(limit)
    ).all()


def sinks(*, session: Session) -> list[str]:
    """Every sink that has items recorded."""
    return sorted(session.scalars(select(OutboxItem.sink).distinct()))
