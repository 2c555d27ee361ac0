"""Aggregates over the whole ledger (posture, counts per filter), reused while nothing changed.

Every change to the ledger writes an audit entry, so the newest audit id says whether a cached
answer is still exact. An answer younger than `max_stale` seconds is served even after a change
(people claim findings all day: re-aggregating 100,000 rows after each claim for every question
is what makes a bot slow), and when one is recomputed, the others asking the same question
meanwhile get the previous answer instead of all recomputing it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

from sqlalchemy.orm import Session

from ledger.queries import ledger_marker

T = TypeVar("T")


class LedgerCache:
    """A small cache of aggregate answers keyed by what was asked."""

    def __init__(
        self,
        *,
        max_stale: float = 5.0,
        max_entries: int = 256,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_stale = max_stale
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._entries: dict[Hashable, tuple[int, float, Any]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, session: Session, key: Hashable, compute: Callable[[], T]) -> T:
        """The cached answer while the ledger is unchanged, else `compute()` (one at a time)."""
        now = self._monotonic()
        with self._guard:
            entry = self._entries.get(key)
            lock = self._locks.setdefault(key, threading.Lock())
        if entry is not None and now - entry[1] < self.max_stale:
            return cast(T, entry[2])
        marker = ledger_marker(session=session)
        if entry is not None and entry[0] >= marker:
            return cast(T, entry[2])
        if not lock.acquire(blocking=entry is None):
            assert entry is not None
            return cast(T, entry[2])  # being recomputed right now: the last answer meanwhile
        try:
            with self._guard:
                done = self._entries.get(key)
            if done is not None and done is not entry and done[0] >= marker:
                return cast(T, done[2])  # computed by the request we waited for
            value = compute()
            with self._guard:
                if key not in self._entries and len(self._entries) >= self.max_entries:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key] = (marker, self._monotonic(), value)
            return value
        finally:
            lock.release()
