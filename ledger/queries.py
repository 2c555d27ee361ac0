"""Read-side questions: finding lists with filters, posture per framework."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.models import ACTIVE, AuditEntry, Finding, FindingStatus, Scan, ScanStatus
from rules.catalog import Catalog, Severity


def list_findings(
    *,
    session: Session,
    catalog: Catalog,
    severity: Sequence[str] = (),
    status: Sequence[str] = (),
    framework: str | None = None,
    rule_ids: Sequence[str] = (),
    account: str | None = None,
    limit: int | None = None,
) -> list[Finding]:
    """Findings matching every given filter, worst and newest first.

    With no status filter, findings that count against the posture (open, claimed, reopened)
    are listed.
    """
    query = select(Finding)
    statuses = list(status) or [str(s) for s in ACTIVE]
    query = query.where(Finding.status.in_(statuses))
    if severity:
        query = query.where(Finding.severity.in_(list(severity)))
    if rule_ids:
        query = query.where(Finding.rule_id.in_(list(rule_ids)))
    if framework:
        catalog.require_framework(framework)
        cited = [r.id for r in catalog.rules.values() if r.frameworks.get(framework)]
        query = query.where(Finding.rule_id.in_(cited))
    if account:
        query = query.where(Finding.account == account)
    rows = list(session.scalars(query.order_by(Finding.last_seen.desc(), Finding.id)))
    rows.sort(key=lambda f: Severity(f.severity).rank)
    return rows[:limit] if limit else rows


@dataclass
class ControlState:
    framework: str
    control: str
    title: str
    section: str
    rules: list[str]
    failing_rules: list[str] = field(default_factory=list)
    failing_findings: int = 0
    # Failing since the oldest first_seen among its failing findings.
    since: datetime | None = None

    @property
    def state(self) -> str:
        if not self.rules:
            return "not_covered"
        return "failing" if self.failing_findings else "passing"


@dataclass
class FrameworkPosture:
    framework: str
    name: str
    controls: list[ControlState]

    def count(self, state: str) -> int:
        return sum(1 for c in self.controls if c.state == state)


@dataclass
class Posture:
    frameworks: list[FrameworkPosture]
    open_by_severity: dict[str, int]
    accepted: int
    last_scan: Scan | None


def posture(
    *, session: Session, catalog: Catalog, now: datetime, frameworks: Sequence[str] | None = None
) -> Posture:
    """Controls passing / failing / not covered per framework, and open findings by severity.

    A fixed number of queries whatever the number of findings: failing counts are aggregated in SQL.
    """
    failing_by_rule: dict[str, tuple[int, datetime]] = {}
    by_severity: Counter[str] = Counter()
    # One pass over a covering index for the active findings, and a small one for the expired
    # acceptances (the next scan reopens them): an OR of the two would scan the whole table.
    active = (
        select(Finding.rule_id, Finding.severity, func.count(), func.min(Finding.first_seen))
        .where(Finding.status.in_([str(s) for s in ACTIVE]))
        .group_by(Finding.rule_id, Finding.severity)
    )
    expired = (
        select(Finding.rule_id, Finding.severity, func.count(), func.min(Finding.first_seen))
        .where(Finding.acceptance_lapsed(now))
        .group_by(Finding.rule_id, Finding.severity)
    )
    for query in (active, expired):
        for rule_id, severity, count, since in session.execute(query).all():
            by_severity[severity] += count
            if rule_id in failing_by_rule:
                before, first = failing_by_rule[rule_id]
                failing_by_rule[rule_id] = (before + count, min(first, since))
            else:
                failing_by_rule[rule_id] = (count, since)
    accepted = (
        session.scalar(
            select(func.count()).select_from(Finding).where(Finding.acceptance_in_force(now))
        )
        or 0
    )
    last_scan = session.scalar(
        select(Scan)
        .where(Scan.status.in_([ScanStatus.complete, ScanStatus.partial]))
        .order_by(Scan.id.desc())
        .limit(1)
    )
    ordered = {str(s): by_severity.get(str(s), 0) for s in Severity}
    return Posture(
        frameworks=frameworks_posture(
            catalog=catalog, failing_by_rule=failing_by_rule, frameworks=frameworks
        ),
        open_by_severity=ordered,
        accepted=accepted,
        last_scan=last_scan,
    )


def frameworks_posture(
    *,
    catalog: Catalog,
    failing_by_rule: dict[str, tuple[int, datetime]],
    frameworks: Sequence[str] | None = None,
) -> list[FrameworkPosture]:
    """Each framework's controls, given the failing findings per rule (count, oldest first seen):
    shared by the posture now and the posture rebuilt at an instant (ledger.history)."""
    out = []
    for fw_id in frameworks or sorted(catalog.frameworks):
        fw = catalog.require_framework(fw_id)
        citing: dict[str, list[str]] = {}
        for rule in catalog.rules.values():
            for cited in rule.frameworks.get(fw_id, ()):
                citing.setdefault(cited, []).append(rule.id)
        controls = []
        for control_id, control in fw.controls.items():
            state = ControlState(
                framework=fw_id,
                control=control_id,
                title=control.title,
                section=control.section,
                rules=sorted(citing.get(control_id, [])),
            )
            for rule_id in state.rules:
                if rule_id in failing_by_rule:
                    count, since = failing_by_rule[rule_id]
                    state.failing_rules.append(rule_id)
                    state.failing_findings += count
                    state.since = since if state.since is None else min(state.since, since)
            controls.append(state)
        out.append(FrameworkPosture(framework=fw_id, name=fw.name, controls=controls))
    return out


def page_findings(
    *,
    session: Session,
    catalog: Catalog,
    severity: Sequence[str] = (),
    status: Sequence[str] = (),
    framework: str | None = None,
    assignee: str | None = None,
    offset: int = 0,
    limit: int = 10,
    counts: dict[str, int] | None = None,
) -> tuple[list[Finding], int]:
    """One page of findings, worst and newest first, and the total.

    Counted per severity first, then each severity's slice of the page is read in
    (severity, last_seen) index order: no query sorts the whole table. `counts` (from
    `count_by_severity` with the same filters) may be passed in when the caller caches them.
    """
    where = findings_filter(
        catalog=catalog, severity=severity, status=status, framework=framework, assignee=assignee
    )
    if counts is None:
        counts = count_by_severity(session=session, where=where)
    known = [str(s) for s in Severity]
    order = known + sorted(set(counts) - set(known))
    rows: list[Finding] = []
    skip, want = offset, limit
    for sev in order:
        n = int(counts.get(sev, 0))
        if want <= 0:
            break
        if skip >= n:
            skip -= n
            continue
        rows.extend(
            session.scalars(
                select(Finding)
                .where(*where, Finding.severity == sev)
                # One direction for both keys: a backward scan of (severity, last_seen, id).
                .order_by(Finding.last_seen.desc(), Finding.id.desc())
                .offset(skip)
                .limit(want)
            )
        )
        want = limit - len(rows)
        skip = 0
    return rows, int(sum(counts.values()))


def oldest_active(*, session: Session) -> Finding | None:
    """The active finding that has been failing longest."""
    return session.scalar(
        select(Finding)
        .where(Finding.status.in_([str(s) for s in ACTIVE]))
        .order_by(Finding.first_seen, Finding.id)
        .limit(1)
    )


def claimed_by(*, session: Session, user: str, limit: int) -> tuple[list[Finding], int]:
    """The active findings `user` has (claimed, or reopened while theirs), oldest first, at
    most `limit`; and how many there are."""
    mine = (
        Finding.assignee == user,
        Finding.status.in_([FindingStatus.claimed, FindingStatus.reopened]),
    )
    rows = session.scalars(select(Finding).where(*mine).order_by(Finding.first_seen).limit(limit))
    total = session.scalar(select(func.count()).select_from(Finding).where(*mine))
    return list(rows), int(total or 0)


def active_findings(
    *, session: Session, assignee: str | None = None, limit: int | None = None
) -> list[Finding]:
    """Active findings (of one assignee), the longest failing first; at most `limit`."""
    query = select(Finding).where(Finding.status.in_([str(s) for s in ACTIVE]))
    if assignee is not None:
        query = query.where(Finding.assignee == assignee)
    return list(session.scalars(query.order_by(Finding.first_seen).limit(limit)))


def findings_by_id(*, session: Session, ids: Sequence[int], chunk: int = 500) -> list[Finding]:
    """The findings with these ids (those that exist), in a few bounded IN queries."""
    rows: list[Finding] = []
    for start in range(0, len(ids), chunk):
        part = list(ids[start : start + chunk])
        rows.extend(session.scalars(select(Finding).where(Finding.id.in_(part))))
    return rows


def count_unclaimed(*, session: Session, severity: str) -> int:
    """Active findings of a severity that nobody has claimed."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Finding)
            .where(
                Finding.status.in_([FindingStatus.open, FindingStatus.reopened]),
                Finding.severity == severity,
            )
        )
        or 0
    )


def count_by_status(*, session: Session) -> dict[str, int]:
    """Findings per lifecycle state (for metrics)."""
    rows = session.execute(select(Finding.status, func.count()).group_by(Finding.status)).all()
    return {str(s): int(n) for s, n in rows}


def findings_filter(
    *,
    catalog: Catalog,
    severity: Sequence[str] = (),
    status: Sequence[str] = (),
    framework: str | None = None,
    assignee: str | None = None,
) -> list[Any]:
    """The WHERE clauses of a findings list."""
    where: list[Any] = [Finding.status.in_(list(status) or [str(s) for s in ACTIVE])]
    if severity:
        where.append(Finding.severity.in_(list(severity)))
    if framework:
        catalog.require_framework(framework)
        cited = [r.id for r in catalog.rules.values() if r.frameworks.get(framework)]
        where.append(Finding.rule_id.in_(cited))
    if assignee:
        where.append(Finding.assignee == assignee)
    return where


def count_by_severity(*, session: Session, where: list[Any]) -> dict[str, int]:
    """How many findings match, per severity."""
    rows = session.execute(
        select(Finding.severity, func.count()).where(*where).group_by(Finding.severity)
    ).all()
    return {str(sev): int(n) for sev, n in rows}


def ledger_marker(*, session: Session) -> int:
    """Grows with every change to the ledger (every change is audited): a cache key."""
    return int(session.scalar(select(func.max(AuditEntry.id))) or 0)
