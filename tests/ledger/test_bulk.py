"""Large scans are merged in bulk: the statement count does not grow with the findings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from ledger import services
from ledger.db import transaction
from ledger.models import AuditEntry, Finding, FindingEvent
from ledger.services import Observation, ScanCounts
from tests.conftest import FakeClock
from tests.ledger.helpers import ACCOUNT, REGION, RULE, obs

N = 10_000
MAX_STATEMENTS = 100


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    """Every statement sent to the database meanwhile (an executemany counts once)."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def big_scan(
    sessions: sessionmaker[Session], clock: FakeClock, observations: list[Observation]
) -> tuple[ScanCounts, list[str]]:
    """Merge one scan's observations, returning its counts and the statements it took."""
    engine = sessions.kw["bind"]
    with transaction(sessions) as session:
        scan = services.start_scan(session=session, now=clock(), trigger="schedule", scope={})
        with counting(engine) as statements:
            counts = services.upsert_from_scan(
                session=session,
                scan=scan,
                observations=observations,
                covered={(RULE, ACCOUNT, REGION)},
                rule_ids={RULE},
                accounts={ACCOUNT},
                now=clock(),
            )
        services.finish_scan(
            session=session,
            scan=scan,
            now=clock(),
            counts=counts,
            api_calls={"ec2": 1},
            resources=len(observations),
            errors=[],
        )
    return counts, statements


def count(sessions: sessionmaker[Session], model: type[Any]) -> int:
    """Rows of one table."""
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_ten_thousand_new_findings_take_few_statements(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A first scan of a big account finishes quickly: 10,000 findings in under 100 statements."""
    observations = [obs(f"vol-{i:05d}") for i in range(N)]

    counts, statements = big_scan(sessions, clock, observations)

    assert counts.new == N
    assert len(counts.new_ids) == N
    assert len(statements) < MAX_STATEMENTS, len(statements)
    assert count(sessions, Finding) == N
    assert count(sessions, FindingEvent) == N
    # one per finding created, plus the scan's start and finish
    assert count(sessions, AuditEntry) == N + 2


def test_rescan_of_ten_thousand_findings_takes_few_statements(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Rescanning the same 10,000 failing resources creates nothing and stays in bulk."""
    observations = [obs(f"vol-{i:05d}") for i in range(N)]
    big_scan(sessions, clock, observations)
    clock.advance(days=1)

    counts, statements = big_scan(sessions, clock, observations)

    assert (counts.new, counts.still_failing, counts.resolved) == (0, N, 0)
    assert len(statements) < MAX_STATEMENTS, len(statements)
    assert count(sessions, Finding) == N
    assert count(sessions, FindingEvent) == N
    with sessions() as session:
        stale = session.scalar(
            select(func.count()).select_from(Finding).where(Finding.last_seen != clock())
        )
    assert stale == 0


def test_ten_thousand_resolutions_are_recorded(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """When 10,000 failing resources all disappear, each finding is resolved with its event."""
    big_scan(sessions, clock, [obs(f"vol-{i:05d}") for i in range(N)])
    clock.advance(days=1)

    counts, _ = big_scan(sessions, clock, [])

    assert counts.resolved == N
    with sessions() as session:
        still_open = session.scalar(
            select(func.count()).select_from(Finding).where(Finding.status != "resolved")
        )
    assert still_open == 0
    assert count(sessions, FindingEvent) == 2 * N


def test_ten_thousand_resolutions_take_few_statements(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A scan after a big clean-up (10,000 resources gone) also merges in under 100 statements."""
    big_scan(sessions, clock, [obs(f"vol-{i:05d}") for i in range(N)])
    clock.advance(days=1)

    counts, statements = big_scan(sessions, clock, [])

    assert counts.resolved == N
    assert len(statements) < MAX_STATEMENTS, len(statements)
