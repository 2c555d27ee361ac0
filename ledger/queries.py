"""Read-side questions: finding lists with filters, posture per framework."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ledger.models import ACTIVE, Finding, FindingStatus, Scan, ScanStatus
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
    # Active, or accepted with the acceptance expired (the next scan reopens it).
    failing = Finding.status.in_([str(s) for s in ACTIVE]) | (
        (Finding.status == FindingStatus.accepted) & (Finding.accepted_until <= now)
    )
    rows = session.execute(
        select(Finding.rule_id, func.count(), func.min(Finding.first_seen))
        .where(failing)
        .group_by(Finding.rule_id)
    ).all()
    for rule_id, count, since in rows:
        failing_by_rule[rule_id] = (count, since)
    sev_rows = session.execute(
        select(Finding.severity, func.count()).where(failing).group_by(Finding.severity)
    ).all()
    by_severity = Counter(dict(sev_rows))
    accepted = (
        session.scalar(
            select(func.count())
            .select_from(Finding)
            .where(Finding.status == FindingStatus.accepted, Finding.accepted_until > now)
        )
        or 0
    )
    last_scan = session.scalar(
        select(Scan)
        .where(Scan.status.in_([ScanStatus.complete, ScanStatus.partial]))
        .order_by(Scan.id.desc())
        .limit(1)
    )
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
    ordered = {str(s): by_severity.get(str(s), 0) for s in Severity}
    return Posture(frameworks=out, open_by_severity=ordered, accepted=accepted, last_scan=last_scan)


def _severity_rank() -> Any:
    """Severity as a sortable SQL expression, worst first."""
    return case({str(s): s.rank for s in Severity}, value=Finding.severity, else_=len(Severity))


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
) -> tuple[list[Finding], int]:
    """One page of findings, worst and newest first, and the total: sorted and cut in SQL."""
    statuses = list(status) or [str(s) for s in ACTIVE]
    where: list[Any] = [Finding.status.in_(statuses)]
    if severity:
        where.append(Finding.severity.in_(list(severity)))
    if framework:
        catalog.require_framework(framework)
        where.append(
            Finding.rule_id.in_(
                [r.id for r in catalog.rules.values() if r.frameworks.get(framework)]
            )
        )
    if assignee:
        where.append(Finding.assignee == assignee)
    total = session.scalar(select(func.count()).select_from(Finding).where(*where)) or 0
    rows = session.scalars(
        select(Finding)
        .where(*where)
        .order_by(_severity_rank(), Finding.last_seen.desc(), Finding.id)
        .offset(offset)
        .limit(limit)
    ).all()
    return list(rows), int(total)


def oldest_active(*, session: Session) -> Finding | None:
    """The active finding that has been failing longest."""
    return session.scalar(
        select(Finding)
        .where(Finding.status.in_([str(s) for s in ACTIVE]))
        .order_by(Finding.first_seen, Finding.id)
        .limit(1)
    )


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
