"""The ledger at an instant: what an auditor asking "as of the end of the period" is shown."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ledger import history, queries, services
from ledger.db import transaction
from ledger.models import ACTIVE, Finding, FindingEvent, FindingStatus
from ledger.services import LedgerError
from rules.catalog import load_catalog
from tests.conftest import FakeClock
from tests.ledger.helpers import REGION, obs

CATALOG = load_catalog()
RULES = ("ec2_volume_encrypted", "ec2_sg_ssh_open_to_world")
RESOURCES = 4
_accounts = itertools.count(100000000000)


def end_of_day(at: datetime, days: int) -> datetime:
    """An acceptance end as the CLI and Slack make it: the end of a UTC day."""
    return datetime.combine((at + timedelta(days=days)).date(), time.max, tzinfo=UTC)


def scan_account(
    sessions: sessionmaker[Session], now: datetime, account: str, verdicts: dict[int, str]
) -> None:
    """One complete scan of one account: resource i fails, passes or is unknown for rule i % 2."""
    observations = [
        obs(f"vol-{i}", verdict=v, rule_id=RULES[i % 2], account=account)
        for i, v in verdicts.items()
    ]
    with transaction(sessions) as session:
        started = services.start_scan(session=session, now=now, trigger="schedule", scope={})
        counts = services.upsert_from_scan(
            session=session,
            scan=started,
            observations=observations,
            covered={(r, account, REGION) for r in RULES},
            rule_ids=set(RULES),
            accounts={account},
            now=now,
        )
        services.finish_scan(
            session=session,
            scan=started,
            now=now,
            counts=counts,
            api_calls={"ec2": 1},
            resources=len(observations),
            errors=[],
        )


@dataclass
class Story:
    """A history applied through the services, and what the test itself knows of it."""

    account: str
    instants: list[datetime] = field(default_factory=list)
    # finding id -> [(when accepted, until)], written by the test as it accepts.
    acceptances: dict[int, list[tuple[datetime, datetime]]] = field(default_factory=dict)


def ids_by_resource(sessions: sessionmaker[Session], account: str) -> dict[int, int]:
    """Resource index -> finding id, for the findings of one account."""
    with sessions() as session:
        rows = session.execute(
            select(Finding.resource_id, Finding.id).where(Finding.account == account)
        ).all()
    return {int(r.resource_id.split("-")[1]): r.id for r in rows}


def person(sessions: sessionmaker[Session], action: Callable[..., Finding], **kw: Any) -> bool:
    """A person's action through the services; False when the ledger refuses it."""
    try:
        with transaction(sessions) as session:
            action(session=session, **kw)
    except LedgerError:
        return False
    return True


verdict = st.sampled_from(["fail", "fail", "pass", "unknown"])
step = st.one_of(
    st.tuples(st.just("scan"), st.dictionaries(st.integers(0, RESOURCES - 1), verdict)),
    st.tuples(st.just("advance"), st.integers(1, 60)),
    st.tuples(
        st.sampled_from(["claim", "resolve", "verify", "accept", "reopen", "snooze"]),
        st.integers(0, RESOURCES - 1),
        st.integers(0, 4),
    ),
)


def apply(sessions: sessionmaker[Session], clock: FakeClock, story: Story, action: Any) -> None:
    """Apply one generated step at the clock's time."""
    now = clock()
    story.instants.append(now)
    if action[0] == "scan":
        scan_account(sessions, now, story.account, action[1])
        return
    if action[0] == "advance":
        clock.advance(hours=action[1])
        return
    kind, index, n = action
    finding_id = ids_by_resource(sessions, story.account).get(index)
    if finding_id is None:
        return
    common: dict[str, Any] = {"finding_id": finding_id, "now": now}
    if kind == "claim":
        person(sessions, services.claim, user=f"U{n}", **common)
    elif kind == "resolve":
        person(sessions, services.resolve, user="U1", verify=n % 2 == 0, **common)
    elif kind == "verify":
        with transaction(sessions) as session:
            services.verify_resolution(
                session=session, verdict=("fail", "pass", "unknown")[n % 3], detail="d", **common
            )
    elif kind == "accept":
        until = end_of_day(now, n)
        if person(sessions, services.accept_risk, user="U2", reason=f"r{n}", until=until, **common):
            story.acceptances.setdefault(finding_id, []).append((now, until))
    elif kind == "reopen":
        person(sessions, services.reopen, user="U3", **common)
    else:
        person(sessions, services.snooze, user="U4", until=now + timedelta(days=1), **common)


@dataclass(frozen=True)
class Reference:
    """The posture at T by replaying the events up to T in Python, one finding at a time."""

    status: dict[int, str]
    failing: set[int]
    accepted: set[int]


def replay(sessions: sessionmaker[Session], story: Story, at: datetime) -> Reference:
    """Fold each finding's events up to `at`; acceptance ends come from the test's own record."""
    with sessions() as session:
        rows = session.execute(
            select(FindingEvent.finding_id, FindingEvent.at, FindingEvent.to_status)
            .join(Finding)
            .where(Finding.account == story.account)
            .order_by(FindingEvent.id)
        ).all()
    status: dict[int, str] = {}
    for row in sorted(rows, key=lambda r: r.at):  # stable: same instant stays in id order
        if row.at <= at:
            status[row.finding_id] = row.to_status
    failing: set[int] = set()
    accepted: set[int] = set()
    for finding_id, now_status in status.items():
        if now_status in ACTIVE:
            failing.add(finding_id)
        elif now_status == FindingStatus.accepted:
            until = max(a for a in story.acceptances[finding_id] if a[0] <= at)[1]
            (accepted if until > at else failing).add(finding_id)
    return Reference(status=status, failing=failing, accepted=accepted)


def stretches(
    sessions: sessionmaker[Session], story: Story, at: datetime
) -> list[tuple[int, datetime, datetime | None]]:
    """Episodes of failing by folding each finding's events up to `at` in Python: a detection
    or a reopening after a resolution opens one; the first resolution no failed re-check
    undid closes it."""
    with sessions() as session:
        rows = session.execute(
            select(FindingEvent.finding_id, FindingEvent.at, FindingEvent.kind)
            .join(Finding)
            .where(Finding.account == story.account, FindingEvent.at <= at)
            .order_by(FindingEvent.finding_id, FindingEvent.at, FindingEvent.id)
        ).all()
    out: list[tuple[int, datetime, datetime | None]] = []
    for finding_id, events in itertools.groupby(rows, key=lambda r: r.finding_id):
        opened: datetime | None = None
        resolved: datetime | None = None
        for row in events:
            if row.kind in ("created", "reopened") and (opened is None or resolved is not None):
                if opened is not None:
                    out.append((finding_id, opened, resolved))
                opened, resolved = row.at, None
            elif row.kind in ("resolved", "auto_resolved"):
                resolved = resolved or row.at
            elif row.kind == "verification_failed":
                resolved = None
        if opened is not None:
            out.append((finding_id, opened, resolved))
    return out


def rebuilt(sessions: sessionmaker[Session], story: Story, at: datetime) -> Reference:
    """The same three answers from ledger.history."""
    with sessions() as session:
        rows = history.findings_at(session=session, at=at, account=story.account)
    return Reference(
        status={f.id: f.status for f in rows},
        failing={f.id for f in rows if f.is_failing(at)},
        accepted={f.id for f in rows if f.acceptance_in_force(at)},
    )


def comparable(state: queries.Posture) -> dict[str, Any]:
    """A posture as plain data, its last scan by id."""
    return {
        "frameworks": [asdict(fw) for fw in state.frameworks],
        "open_by_severity": state.open_by_severity,
        "accepted": state.accepted,
        "last_scan": state.last_scan.id if state.last_scan else None,
    }


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(step, min_size=1, max_size=25),
    pick=st.integers(0, 10**6),
    shift=st.integers(-2, 2),
)
def test_the_posture_at_any_instant_is_the_replay_of_the_events_up_to_it(
    sessions: sessionmaker[Session], clock: FakeClock, steps: list[Any], pick: int, shift: int
) -> None:
    """Whatever people and scans did, the state at T is what replaying the history up to T says,
    and the rebuilt posture now is the live posture."""
    story = Story(account=str(next(_accounts)))
    clock.advance(days=1)
    for action in steps:
        apply(sessions, clock, story, action)
    story.instants.append(clock())
    # An instant of a change, a microsecond either side of it, or between two of them.
    at = story.instants[pick % len(story.instants)] + timedelta(microseconds=shift)
    if shift == 2:
        at += (clock() - at) / 2
    expected = replay(sessions, story, at)
    assert rebuilt(sessions, story, at) == expected
    with sessions() as session:
        spans = history.acceptances_at(session=session, at=clock(), account=story.account)
        episodes = history.episodes_at(session=session, at=at, account=story.account)
    assert {s.finding_id for s in spans if s.start <= at < s.end} == expected.accepted
    assert [(e.finding_id, e.opened, e.resolved) for e in episodes] == stretches(
        sessions, story, at
    )

    now = clock()
    with sessions() as session:
        live = queries.posture(session=session, catalog=CATALOG, now=now)
        then = history.posture_at(session=session, catalog=CATALOG, at=now)
    assert comparable(then) == comparable(live)


def test_a_finding_reads_as_it_was_on_each_day(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Detected, resolved, detected again and risk-accepted: each day shows that day's state,
    who accepted, why and until when, and the acceptance stops counting once it ends."""
    account = "222233334444"
    start = clock()
    scan_account(sessions, clock(), account, {0: "fail"})
    (finding_id,) = ids_by_resource(sessions, account).values()
    clock.advance(days=2)
    person(sessions, services.resolve, finding_id=finding_id, user="U1", now=clock())
    clock.advance(days=2)
    scan_account(sessions, clock(), account, {0: "fail"})
    clock.advance(days=1)
    until = end_of_day(clock(), 3)
    person(
        sessions,
        services.accept_risk,
        finding_id=finding_id,
        user="UCISO",
        reason="vendor fix due (soon)",
        until=until,
        now=clock(),
    )
    clock.advance(days=1)
    person(sessions, services.reopen, finding_id=finding_id, user="U3", now=clock())

    def at(days: float) -> history.FindingAt | None:
        with sessions() as session:
            rows = history.findings_at(
                session=session, at=start + timedelta(days=days), account=account
            )
        return rows[0] if rows else None

    assert at(-1) is None  # before it was detected
    states = [at(d) for d in (0, 1, 3, 4.5)]
    assert [s.status if s else None for s in states] == [
        "open",
        "open",
        "resolved",
        "reopened",
    ]
    accepted = at(5.5)
    assert accepted is not None
    assert accepted.status == "accepted"
    assert (accepted.accepted_by, accepted.accepted_reason) == ("UCISO", "vendor fix due (soon)")
    assert accepted.accepted_until == until
    assert accepted.acceptance_in_force(start + timedelta(days=5.5))
    assert not accepted.is_failing(start + timedelta(days=5.5))
    assert accepted.is_failing(until + timedelta(seconds=1))
    reopened = at(7)
    assert reopened is not None
    assert reopened.status == "reopened"

    with sessions() as session:
        episodes = history.episodes_at(session=session, at=clock(), account=account)
    assert [(e.opened - start, e.resolved and e.resolved - start) for e in episodes] == [
        (timedelta(0), timedelta(days=2)),
        (timedelta(days=4), None),
    ]


def test_a_resolution_the_recheck_undid_does_not_end_the_episode(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Resolved, the re-check still fails, resolved by a scan later: remediated at the scan."""
    account = "333344445555"
    start = clock()
    scan_account(sessions, clock(), account, {0: "fail"})
    (finding_id,) = ids_by_resource(sessions, account).values()
    clock.advance(days=1)
    person(sessions, services.resolve, finding_id=finding_id, user="U1", now=clock(), verify=True)
    with transaction(sessions) as session:
        services.verify_resolution(
            session=session, finding_id=finding_id, verdict="fail", now=clock(), detail="no"
        )
    clock.advance(days=2)
    scan_account(sessions, clock(), account, {0: "pass"})
    with sessions() as session:
        (episode,) = history.episodes_at(session=session, at=clock(), account=account)
    assert episode.resolved is not None
    assert episode.resolved - start == timedelta(days=3)


def test_the_last_scan_and_the_first_are_read_at_the_instant(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """The last scan shown at T is the one finished by T; the first scan bounds what T can be."""
    with sessions() as session:
        assert history.first_scan_at(session=session) is None
    first = clock()
    scan_account(sessions, clock(), "444455556666", {0: "fail"})
    clock.advance(days=3)
    scan_account(sessions, clock(), "444455556666", {0: "fail"})
    with sessions() as session:
        assert history.first_scan_at(session=session) == first
        early = history.last_scan_at(session=session, at=first + timedelta(days=1))
        late = history.last_scan_at(session=session, at=clock())
        assert early is not None
        assert late is not None
        assert (early.finished_at, late.finished_at) == (first, clock())
        assert history.last_scan_at(session=session, at=first - timedelta(seconds=1)) is None
