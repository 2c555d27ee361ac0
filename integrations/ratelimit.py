"""Client-side request pacing for trackers that rate-limit (Jira Cloud, Trello).

A token bucket in front of every HTTP request a sink's `requests` session sends, mounted as a
transport adapter, so the pace holds however many requests one ticket operation makes. Pacing
below the tracker's limit means no 429s at all, instead of a burst, a refusal and a wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter


class RateLimiter:
    """At most `per_second` acquisitions per second on average, in bursts of at most `burst`."""

    def __init__(
        self,
        per_second: float,
        *,
        burst: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.rate = per_second
        self.burst = max(1.0, burst if burst is not None else 1.0)
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._at = monotonic()

    def acquire(self) -> float:
        """Wait for a token; returns the seconds waited."""
        with self._lock:
            now = self._monotonic()
            elapsed = max(0.0, now - self._at)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._at = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class PacedAdapter(HTTPAdapter):
    """An HTTP adapter that takes a token from the limiter before each request."""

    def __init__(self, limiter: RateLimiter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limiter = limiter

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Wait for the pace, then send."""
        self.limiter.acquire()
        return super().send(request, **kwargs)


def pace(session: requests.Session, per_second: float | None, **clock: Any) -> RateLimiter | None:
    """Pace every request of the session (None or 0: unpaced); `clock`: monotonic, sleep."""
    if not per_second:
        return None
    limiter = RateLimiter(per_second, **clock)
    adapter = PacedAdapter(limiter)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return limiter
