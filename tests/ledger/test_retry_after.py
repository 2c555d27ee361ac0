"""Retry-After as the outbox reads it: seconds or an HTTP-date, and never trusted blindly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from ledger import outbox

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def test_seconds_and_http_dates_in_any_header_case_and_shape() -> None:
    """Every way a client library hands the header over gives the same wait."""
    date = format_datetime(NOW + timedelta(seconds=30), usegmt=True)

    assert outbox.retry_after({"Retry-After": "3"}, now=NOW) == 3
    assert outbox.retry_after({"retry-after": ["3"]}, now=NOW) == 3
    assert outbox.retry_after({"RETRY-AFTER": date}, now=NOW) == 30
    assert outbox.retry_after({"Retry-After": format_datetime(NOW, usegmt=True)}, now=NOW) == 0
    assert outbox.retry_after({}, now=NOW) is None
    assert outbox.retry_after(None, now=NOW) is None


def test_a_retry_after_replaces_the_backoff() -> None:
    """Slack says come back in 3 s: the item is due in 3 s, not after our longer backoff."""
    assert outbox.backoff(1, 3) == timedelta(seconds=3)
    assert outbox.backoff(6, 3) == timedelta(seconds=3)
    assert outbox.backoff(1) == timedelta(seconds=outbox.BACKOFF_BASE_SECONDS)


DATES = st.datetimes(timezones=st.just(UTC)).map(lambda d: format_datetime(d, usegmt=True))
MANGLED = st.tuples(DATES, st.text(max_size=8)).map(lambda p: p[0][:-3] + p[1])


@given(
    st.one_of(
        st.text(max_size=300),
        st.integers().map(str),
        DATES,
        MANGLED,
        st.lists(st.text(), max_size=3),
    )
)
def test_any_header_value_is_a_bounded_wait_or_ignored(value: object) -> None:
    """Whatever a server sends as Retry-After is a wait of 0..15 min or ignored, never a crash."""
    wait = outbox.retry_after({"Retry-After": value}, now=NOW)

    assert wait is None or 0 <= wait <= outbox.BACKOFF_CAP_SECONDS
