"""One framework's report as typed data, at an instant: what every renderer (md, json, csv,
html) draws from, so the formats can never disagree on a number."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from ledger import history
from ledger.snapshots import score
from rules.catalog import Catalog, Severity
from rules.tasks import Task

ControlStatus = Literal["failing", "accepted", "passing", "task", "not_covered"]
# The order controls are listed in, and the words each status is shown with.
STATUSES: dict[ControlStatus, str] = {
    "failing": "failing",
    "accepted": "accepted risk",
    "passing": "passing",
    "task": "covered by an administrative task",
    "not_covered": "not covered by an automated rule",
}
TREND_POINTS = 12


@dataclass(frozen=True)
class FailingResource:
    """A finding failing one of the control's rules at the instant."""

    finding_id: int
    rule_id: str
    severity: str
    account: str
    region: str
    resource_type: str
    resource_id: str
    resource_name: str | None
    status: str
    first_seen: datetime
    # The episode of failing it is in began then (it may have been resolved and reopened).
    open_since: datetime
    sla_breached: bool


@dataclass(frozen=True)
class AcceptedRisk:
    """A finding whose risk acceptance is in force at the instant."""

    finding_id: int
    rule_id: str
    severity: str
    account: str
    region: str
    resource_id: str
    resource_name: str | None
    accepted_by: str | None
    reason: str | None
    until: datetime | None


@dataclass(frozen=True)
class TaskEvidence:
    """An administrative task citing the control: its last completion at the instant."""

    task_id: str
    title: str
    completed_at: datetime | None
    completed_by: str | None
    due_on: date | None
    on_time: bool | None
    overdue: int  # occurrences past due and not completed at the instant


@dataclass(frozen=True)
class ControlReport:
    """One control at the instant."""

    control: str
    title: str
    section: str
    status: ControlStatus
    rules: tuple[str, ...]
    failing_rules: tuple[str, ...]
    failing_since: datetime | None
    failing: tuple[FailingResource, ...]
    accepted: tuple[AcceptedRisk, ...]
    tasks: tuple[TaskEvidence, ...]


@dataclass(frozen=True)
class SeverityStats:
    """One severity in the summary."""

    severity: str
    open: int  # failing at the instant (an acceptance in force is not)
    remediated: int  # episodes resolved by the instant
    mean_days_to_remediate: float | None
    sla_days: int | None
    breaches_open: int  # failing at the instant for longer than the SLA
    breaches_resolved: int  # resolved, but later than the SLA


@dataclass(frozen=True)
class TrendPoint:
    """The posture at one instant of the period before the report's."""

    at: datetime
    score: float | None
    failing_controls: int
    open_by_severity: Mapping[str, int]


@dataclass(frozen=True)
class ScanRef:
    """The last scan finished by the instant."""

    id: int
    status: str
    finished_at: datetime


@dataclass(frozen=True)
class FrameworkReport:
    """Everything a framework report shows."""

    framework: str
    name: str
    version: str
    at: datetime  # the instant reported on
    generated_at: datetime
    account: str | None
    last_scan: ScanRef | None
    score: float | None  # % of controls with rules that are not failing
    controls: tuple[ControlReport, ...]
    severities: tuple[SeverityStats, ...]
    trend: tuple[TrendPoint, ...]

    def count(self, status: ControlStatus) -> int:
        """How many controls have this status."""
        return sum(1 for c in self.controls if c.status == status)

    @property
    def open_findings(self) -> int:
        """Findings failing at the instant."""
        return sum(s.open for s in self.severities)


def rank(severity: str) -> int:
    """Worst first; a severity the catalog does not know sorts last."""
    known = [str(s) for s in Severity]
    return known.index(severity) if severity in known else len(known)


def score_of(statuses: Sequence[ControlStatus]) -> float | None:
    """The share of automated controls not failing, in %, one decimal; None without any."""
    return score(
        failing=sum(1 for s in statuses if s == "failing"),
        accepted=sum(1 for s in statuses if s == "accepted"),
        passing=sum(1 for s in statuses if s == "passing"),
    )


def _cited(catalog: Catalog, framework: str) -> dict[str, list[str]]:
    citing: dict[str, list[str]] = {}
    for rule in catalog.rules.values():
        for control in rule.frameworks.get(framework, ()):
            citing.setdefault(control, []).append(rule.id)
    return {control: sorted(ids) for control, ids in citing.items()}


def build_report(
    *,
    session: Session,
    catalog: Catalog,
    framework: str,
    at: datetime,
    now: datetime,
    account: str | None = None,
    tasks: Sequence[Task] = (),
    sla_days: Mapping[str, int] | None = None,
    trend_points: int = TREND_POINTS,
    trend_from: datetime | None = None,
) -> FrameworkReport:
    """The report of `framework` as the ledger stood at `at` (of one account's findings when
    `account` is given); `tasks` are the administrative tasks whose completions count."""
    fw = catalog.require_framework(framework)
    sla = {str(k): v for k, v in (sla_days or {}).items()}
    citing = _cited(catalog, framework)
    rule_ids = {r for ids in citing.values() for r in ids}
    found = history.findings_at(session=session, at=at, rule_ids=rule_ids, account=account)
    episodes = history.episodes_at(session=session, at=at, rule_ids=rule_ids, account=account)
    # The episode each finding is in at the instant: the last one opened.
    open_since = {e.finding_id: e.opened for e in episodes}
    failing = [f for f in found if f.is_failing(at)]

    def breached(severity: str, start: datetime, end: datetime) -> bool:
        days = sla.get(severity)
        return days is not None and end - start > timedelta(days=days)

    by_rule: dict[str, list[FailingResource]] = {}
    for f in failing:
        since = open_since.get(f.id, f.first_seen)
        by_rule.setdefault(f.rule_id, []).append(
            FailingResource(
                finding_id=f.id,
                rule_id=f.rule_id,
                severity=f.severity,
                account=f.account,
                region=f.region,
                resource_type=f.resource_type,
                resource_id=f.resource_id,
                resource_name=f.resource_name,
                status=f.status,
                first_seen=f.first_seen,
                open_since=since,
                sla_breached=breached(f.severity, since, at),
            )
        )
    accepted_by_rule: dict[str, list[AcceptedRisk]] = {}
    for f in found:
        if f.acceptance_in_force(at):
            accepted_by_rule.setdefault(f.rule_id, []).append(
                AcceptedRisk(
                    finding_id=f.id,
                    rule_id=f.rule_id,
                    severity=f.severity,
                    account=f.account,
                    region=f.region,
                    resource_id=f.resource_id,
                    resource_name=f.resource_name,
                    accepted_by=f.accepted_by,
                    reason=f.accepted_reason,
                    until=f.accepted_until,
                )
            )
    task_controls = {
        t.id: set(t.controls.get(framework, ())) for t in tasks if t.controls.get(framework)
    }
    records = history.tasks_at(session=session, task_ids=list(task_controls), at=at)
    titles = {t.id: t.title for t in tasks}

    controls = []
    for control_id, control in fw.controls.items():
        rules = tuple(citing.get(control_id, ()))
        bad = tuple(r for r in rules if r in by_rule)
        resources = tuple(
            sorted(
                (x for r in bad for x in by_rule[r]), key=lambda x: (rank(x.severity), x.finding_id)
            )
        )
        accepted = tuple(a for r in rules for a in accepted_by_rule.get(r, ()))
        evidence = tuple(
            _evidence(task_id, titles[task_id], records[task_id])
            for task_id in sorted(task_controls)
            if control_id in task_controls[task_id]
        )
        status = control_status(rules, bad, {a.rule_id for a in accepted}, tasked=bool(evidence))
        controls.append(
            ControlReport(
                control=control_id,
                title=control.title,
                section=control.section,
                status=status,
                rules=rules,
                failing_rules=bad,
                failing_since=min((x.first_seen for x in resources), default=None),
                failing=resources,
                accepted=accepted,
                tasks=evidence,
            )
        )

    open_by = Counter(f.severity for f in failing)
    stats = []
    for sev in [str(s) for s in Severity]:
        done = [e for e in episodes if e.severity == sev and e.resolved is not None]
        durations = [(e.resolved - e.opened).total_seconds() for e in done if e.resolved]
        stats.append(
            SeverityStats(
                severity=sev,
                open=open_by.get(sev, 0),
                remediated=len(done),
                mean_days_to_remediate=round(sum(durations) / len(durations) / 86400, 2)
                if durations
                else None,
                sla_days=sla.get(sev),
                breaches_open=sum(
                    1
                    for f in failing
                    if f.severity == sev and breached(sev, open_since.get(f.id, f.first_seen), at)
                ),
                breaches_resolved=sum(
                    1 for e in done if e.resolved and breached(sev, e.opened, e.resolved)
                ),
            )
        )
    scan = history.last_scan_at(session=session, at=at)
    statuses = [c.status for c in controls]
    return FrameworkReport(
        framework=framework,
        name=fw.name,
        version=str(fw.version),
        at=at,
        generated_at=now,
        account=account,
        last_scan=ScanRef(scan.id, scan.status, scan.finished_at)
        if scan is not None and scan.finished_at is not None
        else None,
        score=score_of(statuses),
        controls=tuple(controls),
        severities=tuple(stats),
        trend=_trend(
            session=session,
            citing=citing,
            controls=list(fw.controls),
            rule_ids=rule_ids,
            account=account,
            episodes=episodes,
            start=trend_from,
            at=at,
            points=trend_points,
            last=TrendPoint(at, score_of(statuses), statuses.count("failing"), dict(open_by)),
        ),
    )


def _evidence(task_id: str, title: str, record: history.TaskAt) -> TaskEvidence:
    last = record.last
    return TaskEvidence(
        task_id=task_id,
        title=title,
        completed_at=None if last is None else last.completed_at,
        completed_by=None if last is None else last.completed_by,
        due_on=None if last is None else last.due_on,
        on_time=None if last is None else last.on_time,
        overdue=record.overdue,
    )


def _trend(
    *,
    session: Session,
    citing: Mapping[str, Sequence[str]],
    controls: Sequence[str],
    rule_ids: set[str],
    account: str | None,
    episodes: Sequence[history.Episode],
    start: datetime | None,
    at: datetime,
    points: int,
    last: TrendPoint,
) -> tuple[TrendPoint, ...]:
    """The posture at `points` instants evenly spread from `start` to `at`, the last one the
    report's own. A finding counts as failing at an instant inside one of its episodes and
    outside a risk acceptance in force: one pass over the episodes, one query for the
    acceptances, whatever the number of points."""
    if start is None or points < 2 or start >= at:
        return (last,)
    step = (at - start) / (points - 1)
    instants = [start + step * i for i in range(points - 1)]
    accepted: list[set[int]] = [set() for _ in instants]
    accepted_rules: list[set[str]] = [set() for _ in instants]
    spans = history.acceptances_at(session=session, at=at, rule_ids=rule_ids, account=account)
    rule_of = {e.finding_id: e.rule_id for e in episodes}
    for span in spans:
        for i in range(bisect_left(instants, span.start), bisect_left(instants, span.end)):
            accepted[i].add(span.finding_id)
            if span.finding_id in rule_of:
                accepted_rules[i].add(rule_of[span.finding_id])
    severities: list[Counter[str]] = [Counter() for _ in instants]
    failing_rules: list[set[str]] = [set() for _ in instants]
    for e in episodes:
        end = len(instants) if e.resolved is None else bisect_left(instants, e.resolved)
        for i in range(bisect_left(instants, e.opened), end):
            if e.finding_id not in accepted[i]:
                severities[i][e.severity] += 1
                failing_rules[i].add(e.rule_id)
    out = []
    for i, when in enumerate(instants):
        statuses = [
            control_status(citing.get(c, ()), failing_rules[i], accepted_rules[i], tasked=False)
            for c in controls
        ]
        out.append(
            TrendPoint(
                at=when,
                score=score_of(statuses),
                failing_controls=statuses.count("failing"),
                open_by_severity=dict(severities[i]),
            )
        )
    return (*out, last)


def control_status(
    rules: Sequence[str], failing: Collection[str], accepted: Collection[str], *, tasked: bool
) -> ControlStatus:
    """A control's status from its rules: failing if one has a failing finding, an accepted
    risk if one has an acceptance in force (and none fails), else passing; without rules,
    covered by a task or not covered."""
    if any(r in failing for r in rules):
        return "failing"
    if any(r in accepted for r in rules):
        return "accepted"
    if rules:
        return "passing"
    return "task" if tasked else "not_covered"
