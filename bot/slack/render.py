"""From the database to the plain views the Block Kit builders take."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.output import remediation_command
from bot.slack.blocks import (
    FindingsPage,
    FindingView,
    FrameworkLine,
    HomeView,
    ListedFinding,
    ScanSummary,
    StatusView,
)
from bot.slack.cache import LedgerCache
from bot.slack.ids import FindingsQuery
from ledger.models import ACTIVE, Finding, Scan
from ledger.queries import (
    Posture,
    claimed_by,
    count_by_severity,
    count_unclaimed,
    findings_filter,
    oldest_active,
    page_findings,
    posture,
)
from rules.catalog import Catalog


def finding_view(finding: Finding, catalog: Catalog, now: datetime) -> FindingView:
    """A finding as its message shows it, with the rule's controls and remediation."""
    rule = catalog.rule(finding.rule_id)
    cli = None
    if rule is not None and rule.remediation.cli:
        cli = remediation_command(rule.remediation.cli, finding)
    return FindingView(
        id=finding.id,
        title=finding.title,
        severity=finding.severity,
        status=finding.status,
        rule_id=finding.rule_id,
        resource_type=finding.resource_type,
        resource_id=finding.resource_id,
        resource_name=finding.resource_name,
        account=finding.account,
        region=finding.region,
        first_seen=finding.first_seen,
        last_seen=finding.last_seen,
        assignee=finding.assignee,
        controls=catalog.controls_of(finding.rule_id),
        remediation=rule.remediation.text if rule else None,
        remediation_cli=cli,
        resolved_by=finding.resolved_by,
        resolution_note=finding.resolution_note,
        verification=finding.verification,
        accepted_by=finding.accepted_by,
        accepted_reason=finding.accepted_reason,
        accepted_until=finding.accepted_until,
        snoozed_until=finding.snooze_at(now),
        active=finding.status in ACTIVE,
        detail=finding.detail,
    )


def listed(finding: Finding) -> ListedFinding:
    """A finding as one line of a list."""
    return ListedFinding(
        id=finding.id,
        title=finding.title,
        severity=finding.severity,
        status=finding.status,
        resource=finding.resource_name or finding.resource_id,
        account=finding.account,
        region=finding.region,
        assignee=finding.assignee,
    )


def framework_lines(state: Posture) -> list[FrameworkLine]:
    """Posture per framework as summary lines."""
    return [
        FrameworkLine(
            name=fw.name,
            failing=fw.count("failing"),
            passing=fw.count("passing"),
            not_covered=fw.count("not_covered"),
        )
        for fw in state.frameworks
    ]


def status_view(
    *, session: Session, catalog: Catalog, now: datetime, cache: LedgerCache | None = None
) -> StatusView:
    """Everything `/compliance status` shows, in a fixed number of queries."""
    if cache is not None:
        # Acceptances expire with time, not with a change: the minute is part of the key.
        return cache.get(
            ("status", now.replace(second=0, microsecond=0)),
            lambda s: status_view(session=s, catalog=catalog, now=now),
        )
    state = posture(session=session, catalog=catalog, now=now)
    oldest = oldest_active(session=session)
    last = state.last_scan
    return StatusView(
        frameworks=framework_lines(state),
        open_by_severity=state.open_by_severity,
        accepted=state.accepted,
        unclaimed_critical=count_unclaimed(session=session, severity="critical"),
        oldest_open=listed(oldest) if oldest else None,
        oldest_open_since=oldest.first_seen if oldest else None,
        last_scan_id=last.id if last else None,
        last_scan_at=(last.finished_at or last.started_at) if last else None,
        last_scan_status=last.status if last else None,
    )


def findings_page(
    *,
    session: Session,
    catalog: Catalog,
    query: FindingsQuery,
    user: str,
    page_size: int,
    cache: LedgerCache | None = None,
) -> FindingsPage:
    """One page of `/compliance findings` for `user` (whose `mine` it is)."""
    counts = None
    if cache is not None and not query.mine:  # one person's list is cheap and must be exact
        assignee = None
        where = findings_filter(
            catalog=catalog,
            severity=query.severities,
            status=query.statuses,
            framework=query.framework,
            assignee=assignee,
        )
        counts = cache.get(
            ("counts", query.severities, query.statuses, query.framework, assignee),
            lambda s: count_by_severity(session=s, where=where),
        )
    rows, total = page_findings(
        counts=counts,
        session=session,
        catalog=catalog,
        severity=query.severities,
        status=query.statuses,
        framework=query.framework,
        assignee=user if query.mine else None,
        offset=(query.page - 1) * page_size,
        limit=page_size,
    )
    filters = [*query.severities]
    if query.framework:
        filters.append(catalog.frameworks[query.framework].name)
    if query.mine:
        filters.append("claimed by you")
    return FindingsPage(
        query=query,
        items=[listed(r) for r in rows],
        total=total,
        page_size=page_size,
        filters=", ".join(filters),
    )


def scan_summary(
    *,
    session: Session,
    catalog: Catalog,
    scan: Scan,
    now: datetime,
    threaded: int,
    below_threshold: int,
    threshold: str,
) -> ScanSummary:
    """A finished scan's summary with today's posture."""
    state = posture(session=session, catalog=catalog, now=now)
    counts = scan.counts or {}
    return ScanSummary(
        scan_id=scan.id,
        status=scan.status,
        new=int(counts.get("new", 0)),
        reopened=int(counts.get("reopened", 0)),
        resolved=int(counts.get("resolved", 0)),
        failing_by_severity=state.open_by_severity,
        frameworks=framework_lines(state),
        resources=scan.resources,
        api_calls=scan.api_calls,
        errors=scan.error_count,
        threaded=threaded,
        below_threshold=below_threshold,
        threshold=threshold,
    )


def home(
    *,
    session: Session,
    catalog: Catalog,
    user: str,
    now: datetime,
    tasks: list[str],
    cache: LedgerCache | None = None,
) -> HomeView:
    """The App Home of one user."""
    mine, total = claimed_by(session=session, user=user, limit=15)
    return HomeView(
        user=user,
        mine=[listed(f) for f in mine],
        mine_total=total,
        status=status_view(session=session, catalog=catalog, now=now, cache=cache),
        tasks=tasks,
    )
