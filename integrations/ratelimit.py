"""Client-side request pacing for trackers that rate-limit (Jira Cloud, Trello).

A token bucket in front of every HTTP request a sink's `requests` session sends, mounted as a
transport adapter, so the pace holds however many requests one ticket operation makes. Set to
the tracker's own limit, it never exceeds that limit in any one-second window (see RateLimiter):
no 429s at all, instead of a burst, a refusal and a wait.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter


class _Slot:
    """One request's place in the window: done when its answer came back."""

    __slots__ = ("done", "ended")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ended = 0.0


class RateLimiter:
    """At most `per_second` requests per second, spaced evenly, and never more than
    ceil(per_second) in any one-second window as the tracker counts them.

    Spacing alone (a token bucket) measures when requests leave; the tracker counts when they
    arrive, and a request delayed on the way arrives closer to the next one. So a request may
    start only a full window after the answer to the request `ceil(per_second)` places before
    it: whatever the delays, that earlier one had arrived by then, and no window holds more.
    """

    def __init__(
        self,
        per_second: float,
        *,
        burst: float | None = None,
        window: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.rate = per_second
        self.burst = max(1.0, burst if burst is not None else 1.0)
        self.window = window
        self.limit = max(1, math.ceil(per_second * window - 1e-9))
        self._monotonic = monotonic
        self._sleep = sleep
        self._gate = threading.Lock()  # one request waits for its turn at a time
        self._tokens = self.burst
        self._at = monotonic()
        self._slots: deque[_Slot] = deque()

    def acquire(self) -> float:
        """Wait for the pace (a request that ends at once); returns the seconds waited."""
        waited, slot = self.enter()
        self.leave(slot)
        return waited

    def enter(self) -> tuple[float, _Slot]:
        """Wait until a request may start; `leave(slot)` when its answer is in."""
        with self._gate:
            now = self._monotonic()
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
            self._at = now
            self._tokens -= 1.0
            waited = -self._tokens / self.rate if self._tokens < 0 else 0.0
            if waited > 0:
                self._sleep(waited)
            if len(self._slots) >= self.limit:
                oldest = self._slots.popleft()
                oldest.done.wait()  # in flight only when `limit` requests run at once
                behind = oldest.ended + self.window - self._monotonic()
                if behind > 0:
                    self._sleep(behind)
                    waited += behind
            slot = _Slot()
            self._slots.append(slot)
            return waited, slot

    def leave(self, slot: _Slot) -> None:
        """The request's answer came back (or it failed): its window starts now."""
        slot.ended = self._monotonic()
        slot.done.set()

    def record(self) -> None:
        """Count a request that was sent without waiting (a client's own connect call)."""
        with self._gate:
            self._tokens -= 1.0
            if len(self._slots) >= self.limit:
                self._slots.popleft()
            slot = _Slot()
            self._slots.append(slot)
        self.leave(slot)


class PacedAdapter(HTTPAdapter):
    """An HTTP adapter that waits for the limiter before each request and reports its end."""

    def __init__(self, limiter: RateLimiter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limiter = limiter

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Wait for the pace, then send."""
        _, slot = self.limiter.enter()
        try:
            return super().send(request, **kwargs)
        finally:
            self.limiter.leave(slot)


def pace(session: requests.Session, per_second: float | None, **clock: Any) -> RateLimiter | None:
    """Pace every request of the session (None or 0: unpaced); `clock`: monotonic, sleep."""
    if not per_second:
        return None
    limiter = RateLimiter(per_second, **clock)
    adapter = PacedAdapter(limiter)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return limiter
