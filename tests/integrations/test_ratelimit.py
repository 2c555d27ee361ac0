"""Client-side pacing: the token bucket in front of tracker requests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.ratelimit import RateLimiter, pace
from integrations.trello_sink import TrelloConfig, TrelloSink
from tests.fakes.trello import KEY, TOKEN, FakeTrello


class Time:
    """A clock that moves only when something sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@given(
    rate=st.floats(min_value=0.5, max_value=500),
    n=st.integers(min_value=1, max_value=300),
)
def test_n_requests_take_at_least_n_minus_one_intervals(rate: float, n: int) -> None:
    """Back to back, n acquisitions span (n - 1) / rate seconds: never faster than the pace."""
    clock = Time()
    limiter = RateLimiter(rate, monotonic=clock.monotonic, sleep=clock.sleep)

    for _ in range(n):
        limiter.acquire()

    assert clock.now - 100.0 == pytest.approx((n - 1) / rate, rel=1e-6, abs=1e-9)


def test_an_idle_limiter_does_not_save_up_a_burst() -> None:
    """After a quiet minute the next requests are still spaced (burst of one)."""
    clock = Time()
    limiter = RateLimiter(10, monotonic=clock.monotonic, sleep=clock.sleep)
    limiter.acquire()
    clock.now += 60

    waits = [limiter.acquire() for _ in range(3)]

    assert waits == pytest.approx([0.0, 0.1, 0.1])


def test_a_paced_trello_sink_spaces_its_requests() -> None:
    """requests_per_second mounts the pace on the sink's session: every request takes a token."""
    with FakeTrello() as fake:
        fake.add_board("Compliance")
        sink = TrelloSink(
            TrelloConfig(api_key=KEY, token=TOKEN, board="Compliance", api_url=fake.url, timeout=5)
        )
        clock = Time()
        pace(sink.session, 5, monotonic=clock.monotonic, sleep=clock.sleep)

        sink.validate()  # boards, lists, labels: three requests

    assert len(fake.calls) == 3
    assert clock.slept == pytest.approx([0.2, 0.2])
