"""The aggregate cache: exact while the ledger is unchanged, never making a request wait twice."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from bot.slack.cache import LedgerCache
from ledger import services as ledger
from ledger.db import transaction
from tests.conftest import FakeClock
from tests.ledger.helpers import findings, obs, scan


class Counter:
    """A compute function that says how many times it ran."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, session: Session) -> int:
        self.runs += 1
        return self.runs


def claim_first(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    """Change the ledger: claim the first finding."""
    with transaction(sessions) as session:
        ledger.claim(session=session, finding_id=findings(sessions)[0].id, user="U1", now=clock())


def test_exact_mode_recomputes_after_every_change(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """With max_stale 0 an answer is reused until the ledger changes, then recomputed."""
    scan(sessions, clock, [obs("vol-1")])
    cache = LedgerCache(sessions, max_stale=0)
    compute = Counter()

    first = cache.get("k", compute)
    again = cache.get("k", compute)
    claim_first(sessions, clock)
    after = cache.get("k", compute)

    assert (first, again, after) == (1, 1, 2)
    cache.close()


def test_under_changes_a_recent_answer_is_served_and_refreshed_behind(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Young answers are served; a stale one is served once while it is recomputed behind."""
    scan(sessions, clock, [obs("vol-1"), obs("vol-2")])
    seconds = [100.0]
    cache = LedgerCache(sessions, max_stale=5, monotonic=lambda: seconds[0])
    compute = Counter()

    assert cache.get("k", compute) == 1
    claim_first(sessions, clock)
    seconds[0] += 4
    assert cache.get("k", compute) == 1  # younger than max_stale
    seconds[0] += 2
    assert cache.get("k", compute) == 1  # stale: served while the refresher recomputes
    cache.close()  # waits for the refresher
    assert cache.get("k", compute) == 2


def test_after_a_quiet_spell_the_first_answer_is_current(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """An answer much older than max_stale is recomputed before answering, not served stale."""
    scan(sessions, clock, [obs("vol-1")])
    seconds = [100.0]
    cache = LedgerCache(sessions, max_stale=5, monotonic=lambda: seconds[0])
    compute = Counter()

    cache.get("k", compute)
    claim_first(sessions, clock)
    seconds[0] += 3600

    assert cache.get("k", compute) == 2
    cache.close()
