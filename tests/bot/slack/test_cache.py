"""The aggregate cache: exact while the ledger is unchanged, recomputed after any change."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from bot.slack.cache import LedgerCache
from ledger import services as ledger
from ledger.db import transaction
from tests.conftest import FakeClock
from tests.ledger.helpers import obs, only_finding, scan


def test_answers_are_reused_until_the_ledger_changes(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A second ask is served from the cache; after a claim the next ask recomputes."""
    scan(sessions, clock, [obs("vol-1")])
    cache = LedgerCache(max_stale=0)
    computed: list[int] = []

    def compute() -> int:
        computed.append(1)
        return len(computed)

    with sessions() as session:
        first = cache.get(session, "k", compute)
        again = cache.get(session, "k", compute)
    with transaction(sessions) as session:
        ledger.claim(session=session, finding_id=only_finding(sessions).id, user="U1", now=clock())
    with sessions() as session:
        after = cache.get(session, "k", compute)

    assert (first, again, after) == (1, 1, 2)


def test_a_recent_answer_is_served_for_max_stale_seconds(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Under a stream of changes an answer younger than max_stale is reused, then recomputed."""
    scan(sessions, clock, [obs("vol-1"), obs("vol-2")])
    seconds = [100.0]
    cache = LedgerCache(max_stale=5, monotonic=lambda: seconds[0])
    computed: list[int] = []

    def compute() -> int:
        computed.append(1)
        return len(computed)

    with sessions() as session:
        cache.get(session, "k", compute)
    with transaction(sessions) as session:
        ledger.claim(session=session, finding_id=only_finding_of(sessions), user="U1", now=clock())
    seconds[0] += 4
    with sessions() as session:
        within = cache.get(session, "k", compute)
    seconds[0] += 2
    with sessions() as session:
        after = cache.get(session, "k", compute)

    assert (within, after) == (1, 2)


def only_finding_of(sessions: sessionmaker[Session]) -> int:
    """The id of the first finding."""
    from tests.ledger.helpers import findings

    return findings(sessions)[0].id
