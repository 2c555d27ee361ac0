"""A finding's life through the ledger services: raised, deduplicated, resolved, reopened."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ledger import queries, services
from ledger.db import transaction
from ledger.models import Finding, FindingStatus
from ledger.services import LedgerError
from rules.catalog import Catalog, load_catalog
from tests.conftest import FakeClock
from tests.ledger.helpers import RULE, audit, events, findings, obs, only_finding, scan

CATALOG = load_catalog()


@pytest.fixture
def catalog() -> Catalog:
    """The built-in catalog (the rule ids used here must exist in it)."""
    assert RULE in CATALOG.rules
    return CATALOG


def act(sessions: sessionmaker[Session], action: Callable[..., Finding], **kw: Any) -> Finding:
    """A person's action through the same service function Slack and the CLI call."""
    with transaction(sessions) as session:
        return action(session=session, **kw)


def open_finding(sessions: sessionmaker[Session], clock: FakeClock) -> Finding:
    """Scan once with one failing volume and return its finding."""
    scan(sessions, clock, [obs()])
    return only_finding(sessions)


def control(
    sessions: sessionmaker[Session],
    catalog: Catalog,
    clock: FakeClock,
    framework: str = "soc2",
    control_id: str = "CC6.1",
) -> queries.ControlState:
    """The posture of one control now."""
    with sessions() as session:
        result = queries.posture(
            session=session, catalog=catalog, now=clock(), frameworks=[framework]
        )
    (fw,) = result.frameworks
    return next(c for c in fw.controls if c.control == control_id)


def test_new_failing_resource_opens_a_finding(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A resource failing a rule for the first time shows up as an open finding with history."""
    counts = scan(sessions, clock, [obs()])

    finding = only_finding(sessions)
    assert counts.new == 1
    assert counts.new_ids == [finding.id]
    assert finding.status == FindingStatus.open
    assert (finding.rule_id, finding.resource_id, finding.severity) == (RULE, "vol-1", "high")
    assert finding.first_seen == finding.last_seen == clock()
    assert [
        (e.kind, e.from_status, e.to_status, e.actor) for e in events(sessions, finding.id)
    ] == [("created", None, "open", "scanner")]
    entries = audit(sessions, object_type="finding", object_id=str(finding.id))
    assert [(a.action, a.actor) for a in entries] == [("finding.created", "scanner")]


def test_same_resource_next_scan_is_not_duplicated(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Rescanning a still-failing resource keeps one finding and moves its last-seen time."""
    first = open_finding(sessions, clock)
    clock.advance(days=1)

    counts = scan(sessions, clock, [obs()])

    finding = only_finding(sessions)
    assert (counts.new, counts.still_failing) == (0, 1)
    assert finding.id == first.id
    assert finding.status == FindingStatus.open
    assert finding.first_seen == first.first_seen
    assert finding.last_seen == clock() > first.last_seen
    assert [e.kind for e in events(sessions, finding.id)] == ["created"]


def test_resource_gone_from_complete_listing_is_resolved(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A failing resource that disappears is resolved by the scanner, saying why."""
    first = open_finding(sessions, clock)
    clock.advance(hours=6)

    counts = scan(sessions, clock, [], covered=True)

    finding = only_finding(sessions)
    assert counts.resolved == 1
    assert finding.status == FindingStatus.resolved
    assert finding.resolved_by == "scanner"
    assert finding.resolved_at == clock()
    assert finding.resolution_note is not None
    assert "no longer found the resource" in finding.resolution_note
    history = events(sessions, first.id)
    assert [(e.kind, e.from_status, e.to_status, e.actor) for e in history] == [
        ("created", None, "open", "scanner"),
        ("auto_resolved", "open", "resolved", "scanner"),
    ]


def test_resource_missing_from_incomplete_listing_is_untouched(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """When the service errored (listing not covered), an unseen finding stays open."""
    open_finding(sessions, clock)
    clock.advance(hours=6)

    counts = scan(sessions, clock, [], covered=False)

    finding = only_finding(sessions)
    assert counts.resolved == 0
    assert finding.status == FindingStatus.open
    assert [e.kind for e in events(sessions, finding.id)] == ["created"]


def test_unknown_verdict_is_untouched_when_listing_incomplete(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A resource whose data could not be read neither raises nor resolves a finding."""
    open_finding(sessions, clock)
    clock.advance(hours=6)

    counts = scan(
        sessions, clock, [obs(verdict="unknown"), obs("vol-2", verdict="unknown")], covered=False
    )

    finding = only_finding(sessions)
    assert (counts.new, counts.resolved) == (0, 0)
    assert finding.status == FindingStatus.open


def test_unknown_verdict_is_untouched_when_listing_complete(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A resource listed but not judgeable (an enrich call failed) keeps its open finding."""
    open_finding(sessions, clock)
    clock.advance(hours=6)

    counts = scan(sessions, clock, [obs(verdict="unknown")], covered=True)

    finding = only_finding(sessions)
    assert counts.resolved == 0
    assert finding.status == FindingStatus.open


def test_passing_resource_resolves_its_finding(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Fixing the resource resolves the finding on the next scan, even outside a full listing."""
    open_finding(sessions, clock)
    clock.advance(hours=6)

    counts = scan(sessions, clock, [obs(verdict="pass")], covered=False)

    finding = only_finding(sessions)
    assert counts.resolved == 1
    assert finding.status == FindingStatus.resolved
    assert finding.resolved_by == "scanner"
    assert finding.resolution_note is not None
    assert "compliant" in finding.resolution_note


def test_passing_resource_without_finding_raises_nothing(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Compliant resources never appear as findings."""
    counts = scan(sessions, clock, [obs(verdict="pass"), obs("vol-2", verdict="pass")])

    assert counts.new == 0
    assert findings(sessions) == []


def test_resolved_finding_failing_again_is_reopened(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A resolved finding that fails again comes back as reopened, counted once."""
    first = open_finding(sessions, clock)
    clock.advance(days=1)
    scan(sessions, clock, [obs(verdict="pass")])
    clock.advance(days=1)

    counts = scan(sessions, clock, [obs()])

    finding = only_finding(sessions)
    assert finding.id == first.id
    assert (counts.new, counts.reopened, counts.reopened_ids) == (0, 1, [first.id])
    assert finding.status == FindingStatus.reopened
    assert finding.reopen_count == 1
    assert (finding.resolved_at, finding.resolved_by, finding.resolution_note) == (None,) * 3
    assert [(e.kind, e.to_status) for e in events(sessions, first.id)] == [
        ("created", "open"),
        ("auto_resolved", "resolved"),
        ("reopened", "reopened"),
    ]


def test_claim_assigns_and_reassign_names_previous(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Claiming shows who owns the finding; a second claim records whom it was taken from."""
    first = open_finding(sessions, clock)

    act(sessions, services.claim, finding_id=first.id, user="alice", now=clock())
    clock.advance(hours=1)
    act(sessions, services.claim, finding_id=first.id, user="bob", now=clock())

    finding = only_finding(sessions)
    assert finding.status == FindingStatus.claimed
    assert finding.assignee == "bob"
    claims = [e for e in events(sessions, first.id) if e.kind == "claimed"]
    assert [(e.actor, e.from_status, e.note) for e in claims] == [
        ("alice", "open", None),
        ("bob", "claimed", "reassigned from alice"),
    ]


def test_claimed_finding_stays_claimed_while_failing(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A scan does not take a claimed finding away from its owner while it still fails."""
    first = open_finding(sessions, clock)
    act(sessions, services.claim, finding_id=first.id, user="alice", now=clock())
    clock.advance(days=1)

    scan(sessions, clock, [obs()])

    finding = only_finding(sessions)
    assert (finding.status, finding.assignee) == (FindingStatus.claimed, "alice")


def test_person_resolves_but_resource_still_fails_reopens(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Marking a finding fixed without fixing it: the next scan reopens it."""
    first = open_finding(sessions, clock)
    act(
        sessions,
        services.resolve,
        finding_id=first.id,
        user="alice",
        now=clock(),
        note="encrypted it",
    )
    resolved = only_finding(sessions)
    assert (resolved.status, resolved.resolved_by) == (FindingStatus.resolved, "alice")
    clock.advance(days=1)

    counts = scan(sessions, clock, [obs()])

    finding = only_finding(sessions)
    assert counts.reopened == 1
    assert finding.status == FindingStatus.reopened
    assert finding.reopen_count == 1
    assert finding.resolved_by is None
    assert [(e.kind, e.actor) for e in events(sessions, first.id)] == [
        ("created", "scanner"),
        ("resolved", "alice"),
        ("reopened", "scanner"),
    ]


def test_accept_risk_requires_a_reason(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    """Accepting a risk without a reason is refused and the finding stays open."""
    first = open_finding(sessions, clock)

    for reason in ("", "   "):
        with pytest.raises(LedgerError, match="needs a reason"):
            act(
                sessions,
                services.accept_risk,
                finding_id=first.id,
                user="alice",
                reason=reason,
                until=clock() + timedelta(days=30),
                now=clock(),
            )

    assert only_finding(sessions).status == FindingStatus.open


def test_accept_risk_requires_a_future_expiry(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """An acceptance that would already have expired is refused, naming the date."""
    first = open_finding(sessions, clock)

    for until in (clock(), clock() - timedelta(days=1)):
        with pytest.raises(LedgerError, match=rf"{until:%Y-%m-%d} must be in the future"):
            act(
                sessions,
                services.accept_risk,
                finding_id=first.id,
                user="alice",
                reason="compensating control",
                until=until,
                now=clock(),
            )

    assert only_finding(sessions).status == FindingStatus.open


def test_accepted_risk_still_failing_is_not_counted(
    sessions: sessionmaker[Session], clock: FakeClock, catalog: Catalog
) -> None:
    """Within its acceptance a failing resource stays accepted and the control passes."""
    first = open_finding(sessions, clock)
    until = clock() + timedelta(days=30)
    act(
        sessions,
        services.accept_risk,
        finding_id=first.id,
        user="alice",
        reason=" legacy volume, replaced in Q1 ",
        until=until,
        now=clock(),
    )
    clock.advance(days=10)

    counts = scan(sessions, clock, [obs()])

    finding = only_finding(sessions)
    assert counts.accepted_expired == 0
    assert finding.status == FindingStatus.accepted
    assert (finding.accepted_by, finding.accepted_reason, finding.accepted_until) == (
        "alice",
        "legacy volume, replaced in Q1",
        until,
    )
    assert finding.last_seen == clock()
    assert not finding.is_failing(clock())
    assert control(sessions, catalog, clock).state == "passing"
    with sessions() as session:
        result = queries.posture(session=session, catalog=catalog, now=clock(), frameworks=["soc2"])
    assert result.accepted == 1
    assert result.open_by_severity["high"] == 0


def test_acceptance_expiry_reopens_on_next_scan(
    sessions: sessionmaker[Session], clock: FakeClock, catalog: Catalog
) -> None:
    """Once the acceptance runs out the finding counts again and the next scan reopens it."""
    first = open_finding(sessions, clock)
    act(
        sessions,
        services.accept_risk,
        finding_id=first.id,
        user="alice",
        reason="compensating control",
        until=clock() + timedelta(days=30),
        now=clock(),
    )
    clock.advance(days=31)

    expired = only_finding(sessions)
    assert expired.status == FindingStatus.accepted
    assert expired.is_failing(clock())
    assert control(sessions, catalog, clock).state == "failing"

    counts = scan(sessions, clock, [obs()])

    finding = only_finding(sessions)
    assert counts.accepted_expired == 1
    assert finding.status == FindingStatus.open
    assert finding.is_failing(clock())
    last = events(sessions, first.id)[-1]
    assert (last.kind, last.from_status, last.to_status, last.actor) == (
        "acceptance_expired",
        "accepted",
        "open",
        "scanner",
    )


def test_accepted_finding_then_passing_is_resolved(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A risk-accepted resource that gets fixed is resolved by the next scan."""
    first = open_finding(sessions, clock)
    act(
        sessions,
        services.accept_risk,
        finding_id=first.id,
        user="alice",
        reason="compensating control",
        until=clock() + timedelta(days=30),
        now=clock(),
    )
    clock.advance(days=2)

    counts = scan(sessions, clock, [obs(verdict="pass")])

    assert counts.resolved == 1
    assert only_finding(sessions).status == FindingStatus.resolved


@pytest.mark.parametrize(
    ("action", "kw", "words"),
    [
        (services.claim, {}, "cannot be claimed"),
        (services.accept_risk, {"reason": "r", "until_days": 5}, "cannot be risk-accepted"),
        (services.resolve, {}, "cannot be resolved"),
    ],
)
def test_invalid_transition_names_the_status(
    sessions: sessionmaker[Session],
    clock: FakeClock,
    action: Callable[..., Finding],
    kw: dict[str, Any],
    words: str,
) -> None:
    """Acting on a resolved finding is refused with its current status, changing nothing."""
    first = open_finding(sessions, clock)
    act(sessions, services.resolve, finding_id=first.id, user="alice", now=clock())
    before = len(audit(sessions))
    if "until_days" in kw:
        kw = {"reason": kw["reason"], "until": clock() + timedelta(days=kw["until_days"])}

    with pytest.raises(LedgerError, match=rf"finding {first.id} is resolved: it {words}"):
        act(sessions, action, finding_id=first.id, user="bob", now=clock(), **kw)

    finding = only_finding(sessions)
    assert (finding.status, finding.resolved_by) == (FindingStatus.resolved, "alice")
    assert len(audit(sessions)) == before


def test_reopen_of_open_finding_is_refused(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Reopening a finding that is already open is refused, naming its status."""
    first = open_finding(sessions, clock)

    with pytest.raises(LedgerError, match=rf"finding {first.id} is open: it cannot be reopened"):
        act(sessions, services.reopen, finding_id=first.id, user="bob", now=clock())


def test_unknown_finding_id_is_named(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    """Claiming a finding id that does not exist says which id."""
    with pytest.raises(LedgerError, match="no finding with id 4242"):
        act(sessions, services.claim, finding_id=4242, user="bob", now=clock())


def test_rule_severity_change_updates_the_finding(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Raising a rule's severity (or rewording it) shows on its existing findings next scan."""
    first = open_finding(sessions, clock)
    clock.advance(days=1)

    counts = scan(sessions, clock, [obs(severity="critical", title="EBS volumes encrypted")])

    finding = only_finding(sessions)
    assert finding.id == first.id
    assert (finding.severity, finding.title) == ("critical", "EBS volumes encrypted")
    assert finding.last_seen == clock()
    assert counts.by_severity == {"critical": 1}


def test_findings_are_per_rule_region_and_resource(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """The same volume id in another region, or under another rule, is a separate finding."""
    scan(
        sessions,
        clock,
        [obs(), obs(region="eu-west-1"), obs(rule_id="ec2_snapshot_encrypted"), obs("vol-2")],
    )

    rows = findings(sessions)
    assert len(rows) == 4
    assert len({r.fingerprint for r in rows}) == 4


def test_posture_reports_control_failing_since_first_seen(
    sessions: sessionmaker[Session], clock: FakeClock, catalog: Catalog
) -> None:
    """A control cited by a failing rule shows as failing since the finding was first seen."""
    assert "CC6.1" in catalog.rules[RULE].frameworks["soc2"]
    assert control(sessions, catalog, clock).state == "passing"
    first_seen = clock()
    scan(sessions, clock, [obs("vol-1")])
    clock.advance(days=3)
    scan(sessions, clock, [obs("vol-1"), obs("vol-2")])

    state = control(sessions, catalog, clock)
    assert state.state == "failing"
    assert state.failing_rules == [RULE]
    assert state.failing_findings == 2
    assert state.since == first_seen
    with sessions() as session:
        result = queries.posture(session=session, catalog=catalog, now=clock())
    assert result.open_by_severity["high"] == 2
    assert result.last_scan is not None
    assert result.last_scan.status == "complete"


def test_posture_control_passes_again_once_fixed(
    sessions: sessionmaker[Session], clock: FakeClock, catalog: Catalog
) -> None:
    """After every failing resource is fixed the control is passing with no 'since'."""
    scan(sessions, clock, [obs("vol-1")])
    clock.advance(days=1)
    scan(sessions, clock, [obs("vol-1", verdict="pass")])

    state = control(sessions, catalog, clock)
    assert state.state == "passing"
    assert (state.failing_findings, state.since) == (0, None)
    assert RULE in state.rules
