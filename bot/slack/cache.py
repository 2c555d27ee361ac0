"""Aggregates over the whole ledger (posture, counts per filter), reused while nothing changed.

Every change to the ledger writes an audit entry, so the newest audit id says whether a cached
answer is still exact. People claim findings all day, and re-aggregating 100,000 rows after
each claim for every question is what makes a bot slow, so:

- an answer younger than `max_stale` seconds is served as it is;
- an older one whose ledger changed, but still younger than three times that, is served once
  more while a background thread recomputes it (nobody waits for the aggregation);
- anything older, or never computed, is computed before answering (after a quiet hour the
  first question gets today's answer, not the last one).

`max_stale=0` makes every answer exact.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import structlog
from sqlalchemy.orm import Session, sessionmaker

from ledger.queries import ledger_marker

T = TypeVar("T")
log = structlog.get_logger(__name__)


class LedgerCache:
    """A small cache of aggregate answers keyed by what was asked."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        max_stale: float = 5.0,
        max_entries: int = 256,
        monotonic: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        self.sessions = sessions
        self.max_stale = max_stale
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._entries: dict[Hashable, tuple[int, float, Any]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()
        self._refresher = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-refresh")
            if background
            else None
        )

    def get(self, key: Hashable, compute: Callable[[Session], T]) -> T:
        """The answer to `key`, computed by `compute(session)` when it must be."""
        now = self._monotonic()
        with self._guard:
            entry = self._entries.get(key)
            lock = self._locks.setdefault(key, threading.Lock())
        if entry is not None and now - entry[1] < self.max_stale:
            return cast(T, entry[2])
        with self.sessions() as session:
            marker = ledger_marker(session=session)
        if entry is not None and entry[0] >= marker:
            return cast(T, entry[2])
        young = entry is not None and now - entry[1] < 3 * self.max_stale
        if young and self._refresher is not None:
            assert entry is not None
            if lock.acquire(blocking=False):
                self._refresher.submit(self._refresh, key, compute, marker, lock)
            return cast(T, entry[2])
        with lock:
            with self._guard:
                done = self._entries.get(key)
            if done is not None and done is not entry and done[0] >= marker:
                return cast(T, done[2])  # computed by the request we waited for
            return self._compute(key, compute, marker)

    def _compute(self, key: Hashable, compute: Callable[[Session], T], marker: int) -> T:
        with self.sessions() as session:
            value = compute(session)
        with self._guard:
            if key not in self._entries and len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (marker, self._monotonic(), value)
        return value

    def _refresh(
        self, key: Hashable, compute: Callable[[Session], Any], marker: int, lock: threading.Lock
    ) -> None:
        try:
            self._compute(key, compute, marker)
        except Exception:  # the old answer stays; the next request tries again
            log.exception("cache.refresh_failed", key=str(key))
        finally:
            lock.release()

    def close(self) -> None:
        """Stop the background refresher."""
        if self._refresher is not None:
            self._refresher.shutdown(wait=True)
