"""The one outbox worker: every outward sink (Slack, a tracker, a SIEM) is drained by this loop.

A sink implements `OutboxSink`: it makes the call for one item and says how it went by
returning a result (delivered) or raising `RetryLater` (a transient failure, with the far
side's Retry-After), `Refused` (the far side's message; kept as failed until retried by hand)
or `Postpone` (the item waits on another). The worker owns everything else: which items are
due, the attempt mark committed before the call (so a lost answer is looked up, never blindly
re-sent: `ledger.outbox.in_doubt`), backoff, and one transaction per item so one failure never
undoes another. SDK-level retries stay off for these calls: the outbox owns retries.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

import structlog
from sqlalchemy.orm import Session, sessionmaker

from ledger import outbox
from ledger.db import transaction
from ledger.models import OutboxItem

log = structlog.get_logger(__name__)

DEFAULT_LEASE = timedelta(seconds=120)
POSTPONE = timedelta(seconds=2)


class RetryLater(Exception):  # noqa: N818 - an outcome, named for what the worker does
    """A transient failure: try the item again after a backoff (or the far side's Retry-After).

    `pause` says the far side asked the whole sink to slow down (a tracker's 429), not just
    this item: the worker waits a short Retry-After out before the next item, and ends the
    sink's round on a long one.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        pause: bool = False,
        error: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.pause = pause
        self.error = error or message  # a short name for metrics ("ratelimited", "http_503")


class Refused(Exception):  # noqa: N818 - an outcome
    """The far side will never take the item as it is; `str()` is its message, for people."""

    def __init__(self, message: str, *, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error or "refused"


class Postpone(Exception):  # noqa: N818 - an outcome
    """The item waits on another (a threaded reply on its parent): no attempt is counted."""

    def __init__(self, delay: timedelta = POSTPONE) -> None:
        super().__init__(f"postponed {delay.total_seconds():g} s")
        self.delay = delay


class OutboxSink(Protocol):
    """One outward destination. `name` is the outbox's `sink` column for its items."""

    @property
    def name(self) -> str:
        """The outbox's `sink` column for this sink's items."""
        ...

    @property
    def lease(self) -> timedelta:
        """How long an attempt keeps its item from other replicas: longer than the slowest
        delivery, so only a dead worker's item is taken over."""
        ...

    def deliver(self, session: Session, item: OutboxItem) -> dict[str, Any]:
        """Make the call for `item` and return what to remember of it (a ts, a ticket key).

        `session` is the item's transaction: what the sink records of the delivery (a posted
        message, a ticket row, through `ledger` services) commits with the delivered mark or
        not at all. Raise RetryLater, Refused or Postpone. Any other exception is a bug or a
        crash: it ends the round with the item's transaction rolled back, and the item is
        tried again (as in doubt) when its attempt's lease runs out.
        """
        ...


class BatchSink(OutboxSink, Protocol):
    """A sink that takes several items in one call (Splunk HEC): `batch_size` due items at a
    time go to `deliver_batch`, whose outcome is the call's, for every item in it. A sink
    without `batch_size` (or with 1) gets one item a call."""

    @property
    def batch_size(self) -> int:
        """How many items one call carries at most."""
        ...

    def deliver_batch(self, session: Session, items: Sequence[OutboxItem]) -> list[dict[str, Any]]:
        """Make the one call for `items`; return each item's result, in order. Raise as
        `deliver` does: the outcome applies to every item of the call."""
        ...


Outcome = Callable[[str, str, str, str | None], None]  # sink, kind, outcome, error


def _ignore(sink: str, kind: str, outcome: str, error: str | None) -> None:
    """No metrics wired."""


@dataclass
class OutboxWorker:
    """Delivers due items of its sinks, one transaction per item."""

    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]
    sinks: dict[str, OutboxSink] = field(default_factory=dict)
    # Called once per attempt: (sink, kind, "delivered" | "retrying" | "failed", error).
    on_outcome: Outcome = _ignore
    sleep: Callable[[float], None] = lambda _s: None
    # The longest Retry-After waited out inside a round when a sink asks to pause.
    max_wait: float = 10.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, sink: OutboxSink) -> None:
        """Drain this sink too (one per name)."""
        self.sinks[sink.name] = sink

    def run_once(self, limit: int = 100) -> dict[str, dict[str, int]]:
        """One round over every sink; returns each sink's counts."""
        return {name: self.drain(sink, limit=limit) for name, sink in list(self.sinks.items())}

    def drain(self, sink: OutboxSink, limit: int = 100) -> dict[str, int]:
        """Deliver the sink's due items, oldest first; returns delivered / retrying / failed."""
        counts = {"delivered": 0, "retrying": 0, "failed": 0, "postponed": 0}
        with self._lock:  # one drain per sink at a time in this process; replicas skip-lock
            with self.sessions() as session:
                ids = outbox.due_ids(session=session, sink=sink.name, now=self.clock(), limit=limit)
            size = max(1, int(getattr(sink, "batch_size", 1)))
            batches = [ids[i : i + size] for i in range(0, len(ids), size)]
            for batch in batches:
                if size > 1:
                    outcome, pause, n = self._attempt_batch(cast("BatchSink", sink), batch)
                else:
                    (outcome, pause), n = self._attempt(sink, batch[0]), 1
                if outcome is not None:
                    counts[outcome] += n
                if pause is not None:
                    # The far side asked everyone to slow down, not just this item: wait a
                    # short Retry-After out here (the item waits its turn); a long one ends
                    # the round.
                    if pause > self.max_wait:
                        break
                    self.sleep(pause)
        return counts

    def _attempt(self, sink: OutboxSink, item_id: int) -> tuple[str | None, float | None]:
        token = uuid.uuid4().hex
        # Committed before the call: a crash after the far side's answer cannot erase the fact
        # that the call may have landed, so the next attempt looks for it first.
        with transaction(self.sessions) as session:
            begun = outbox.begin(
                session=session, item_id=item_id, now=self.clock(), lease=sink.lease, token=token
            )
        if begun is None:  # delivered meanwhile, or another replica's attempt holds it
            return None, None
        with transaction(self.sessions) as session:
            item = outbox.take(session=session, item_id=item_id)
            if item is None or (item.result or {}).get(outbox.IN_FLIGHT) != token:
                return None, None  # our lease ran out and another replica took the item over
            return self._deliver(session, sink, item)

    def _attempt_batch(
        self, sink: BatchSink, item_ids: Sequence[int]
    ) -> tuple[str | None, float | None, int]:
        """One call for several items: each attempt mark committed first, as for one item."""
        token = uuid.uuid4().hex
        with transaction(self.sessions) as session:
            begun = [
                i
                for i in item_ids
                if outbox.begin(
                    session=session, item_id=i, now=self.clock(), lease=sink.lease, token=token
                )
                is not None
            ]
        if not begun:
            return None, None, 0
        with transaction(self.sessions) as session:
            items = [
                item
                for i in begun
                if (item := outbox.take(session=session, item_id=i)) is not None
                and (item.result or {}).get(outbox.IN_FLIGHT) == token
            ]
            if not items:
                return None, None, 0
            try:
                results = sink.deliver_batch(session, items)
            except Refused as exc:
                for item in items:
                    outbox.failed(item=item, now=self.clock(), error=str(exc))
                    self.on_outcome(sink.name, item.kind, "failed", exc.error)
                log.warning("outbox.refused", sink=sink.name, items=len(items), error=str(exc))
                return "failed", None, len(items)
            except RetryLater as exc:
                now = self.clock()
                for item in items:
                    outbox.retry_later(
                        item=item, now=now, error=str(exc), retry_after=exc.retry_after
                    )
                    self.on_outcome(sink.name, item.kind, "retrying", exc.error)
                log.info("outbox.retry_later", sink=sink.name, items=len(items), error=str(exc))
                return "retrying", exc.retry_after if exc.pause else None, len(items)
            for item, result in zip(items, results, strict=True):
                outbox.delivered(item=item, now=self.clock(), result=result)
                self.on_outcome(sink.name, item.kind, "delivered", None)
            return "delivered", None, len(items)

    def _deliver(
        self, session: Session, sink: OutboxSink, item: OutboxItem
    ) -> tuple[str, float | None]:
        try:
            result = sink.deliver(session, item)
        except Postpone as exc:
            outbox.postpone(item=item, until=self.clock() + exc.delay)
            return "postponed", None
        except Refused as exc:
            outbox.failed(item=item, now=self.clock(), error=str(exc))
            self.on_outcome(sink.name, item.kind, "failed", exc.error)
            log.warning("outbox.refused", sink=sink.name, key=item.key, error=str(exc))
            return "failed", None
        except RetryLater as exc:
            # The clock is read after the call: Retry-After counts from the far side's answer,
            # and the call itself may have taken seconds.
            now = self.clock()
            outbox.retry_later(item=item, now=now, error=str(exc), retry_after=exc.retry_after)
            self.on_outcome(sink.name, item.kind, "retrying", exc.error)
            log.info(
                "outbox.retry_later",
                sink=sink.name,
                key=item.key,
                error=str(exc),
                attempts=item.attempts,
            )
            return "retrying", exc.retry_after if exc.pause else None
        outbox.delivered(item=item, now=self.clock(), result=result)
        self.on_outcome(sink.name, item.kind, "delivered", None)
        return "delivered", None


class DeliveryWorker:
    """A thread running a round every interval, or at once when woken."""

    def __init__(
        self, run_round: Callable[[], object], interval: float, name: str = "outbox"
    ) -> None:
        self.run_round = run_round
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        """Start the loop."""
        self._thread.start()

    def wake(self) -> None:
        """Run a round now (after a change made in Slack)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the round in progress and stop."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_round()
            except Exception:
                log.exception("delivery_round_failed", worker=self._thread.name)
            self._wake.wait(self.interval)
            self._wake.clear()
