"""Client-side pacing: the token bucket in front of tracker requests."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.jira_sink import JiraConfig, JiraSink
from integrations.ratelimit import RateLimiter, pace
from integrations.trello_sink import TrelloConfig, TrelloSink
from tests.fakes.jira import FakeJira
from tests.fakes.trello import KEY, TOKEN, FakeTrello
from tests.integrations.test_jira_sink import FINDING


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


@given(
    limit=st.integers(min_value=1, max_value=50),
    latencies=st.lists(st.floats(min_value=0, max_value=0.3), min_size=1, max_size=200),
    on_the_way=st.lists(st.floats(min_value=0, max_value=1), min_size=200, max_size=200),
)
def test_no_one_second_window_holds_more_than_the_limit(
    limit: int, latencies: list[float], on_the_way: list[float]
) -> None:
    """However late each request arrives within its round trip, no one-second window at the
    tracker holds more than the limit, even with requests_per_second equal to it."""
    clock = Time()
    limiter = RateLimiter(limit, monotonic=clock.monotonic, sleep=clock.sleep)
    arrivals = []

    for latency, where in zip(latencies, on_the_way, strict=False):
        _, slot = limiter.enter()
        arrivals.append(clock.now + where * latency)  # somewhere between sent and answered
        clock.now += latency
        limiter.leave(slot)

    arrivals.sort()
    assert all(
        arrivals[i + limit] - arrivals[i] >= 1.0 - 1e-9 for i in range(len(arrivals) - limit)
    )


def test_fast_answers_still_reach_nine_tenths_of_the_limit() -> None:
    """With 2 ms round trips, 400 requests at a limit of 20/s take at most 400 / 18 seconds."""
    clock = Time()
    limiter = RateLimiter(20, monotonic=clock.monotonic, sleep=clock.sleep)

    for _ in range(400):
        _, slot = limiter.enter()
        clock.now += 0.002
        limiter.leave(slot)

    assert clock.now - 100.0 <= 400 / 18


def test_a_jira_sink_paced_at_the_limit_meets_no_429() -> None:
    """requests_per_second equal to Jira's limit: no 429 from a strict one-second window, the
    connect call and the searches before creates included."""
    with FakeJira(rate_limit=10, sliding_window=True) as fake:
        sink = JiraSink(
            JiraConfig(
                url=fake.url,
                project="SEC",
                email="bot@example.com",
                api_token="t",
                timeout=5,
                requests_per_second=10,
            )
        )
        for n in range(12):  # a search and a create each, after serverInfo and /field
            assert sink.find(f"fp{n}") is None
            sink.create(replace(FINDING, fingerprint=f"fp{n}", title=f"finding {n}"))

    assert len(fake.calls) >= 25
    assert fake.limited == 0
