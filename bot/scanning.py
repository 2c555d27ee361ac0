"""Run one scan end to end: collect, evaluate, merge into the ledger."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import Settings
from ledger import scanlock, services
from ledger.db import transaction
from ledger.models import Scan
from ledger.services import Observation, ScanCounts
from ledger.verification import Recheck
from rules.catalog import Catalog
from rules.conditions import EvalContext
from rules.engine import Verdict, evaluate_all
from rules.errors import CompliancebotError
from scanners.aws.collector import AwsCollector, AwsTarget, CollectorOptions, ProgressFn
from scanners.model import Collection, Collector

log = structlog.get_logger(__name__)
Clock = Callable[[], datetime]
# Told of a stored scan inside the transaction that stores it (Slack notices, ticket work).
ScanListener = Callable[[Session, Scan, ScanCounts], None]


def utcnow() -> datetime:
    """The real clock; tests inject their own."""
    return datetime.now(UTC)


def aws_targets(settings: Settings) -> list[AwsTarget]:
    """The configured AWS targets as the scanner's own type."""
    return [
        AwsTarget(
            name=t.name,
            account_id=t.account_id,
            regions="all" if t.regions == "all" else tuple(t.regions),
            role_arn=t.role_arn,
            external_id=t.external_id,
            profile=t.profile,
            endpoint_url=t.endpoint_url or settings.aws.endpoint_url,
            global_region=t.global_region,
        )
        for t in settings.aws.targets
    ]


def collector_for(settings: Settings, *, progress: ProgressFn | None = None) -> AwsCollector:
    """A collector over the configured targets and limits."""
    options = CollectorOptions(
        max_workers=settings.aws.max_workers,
        max_attempts=settings.aws.max_attempts,
        connect_timeout=settings.aws.connect_timeout,
        read_timeout=settings.aws.read_timeout,
    )
    return AwsCollector(targets=aws_targets(settings), options=options, progress=progress)


class NothingScannedError(CompliancebotError):
    """Every target failed: the scan saw nothing, so it must not pass for a clean one."""


def _nothing_scanned(collection: Collection) -> str:
    reasons = sorted(
        {f"{e.account}: {e.service}.{e.operation}: {e.code}" for e in collection.errors}
    )
    shown = "; ".join(reasons[:5]) + (f"; and {len(reasons) - 5} more" if len(reasons) > 5 else "")
    return f"nothing could be scanned (every target failed): {shown}"


@dataclass
class ScanOutcome:
    scan: Scan
    counts: ScanCounts
    collection: Collection


def run_scan(
    *,
    catalog: Catalog,
    collector: Collector,
    sessions: sessionmaker[Session],
    clock: Clock = utcnow,
    rule_ids: list[str] | None = None,
    accounts: set[str] | None = None,
    regions: set[str] | None = None,
    trigger: str = "cli",
    listeners: Sequence[ScanListener] = (),
) -> ScanOutcome:
    """Scan now and store the result; one failing service never aborts the scan.

    `listeners` run in the transaction that stores the result, so what they record (the Slack
    notifications of this scan, the ticket work) is committed with the scan or not at all.
    """
    # The collector's rules only: an AWS scan never judges (or resolves) a host's findings.
    rules = [
        r for r in catalog.select(rule_ids=rule_ids) if r.resource_type in collector.resource_types
    ]
    scope = {
        "rules": rule_ids or "all",
        "accounts": sorted(accounts or []) or "all",
        "regions": sorted(regions or []) or "configured",
    }
    # The scan lock, across processes: a second scan is refused (ScanAlreadyRunningError)
    # before it records anything, and a scan left `running` by a dead process is marked failed.
    with scanlock.hold_scan(sessions=sessions, clock=clock, trigger=trigger, scope=scope) as held:
        scan = held.scan
        try:
            log.info("scan.started", scan_id=scan.id, rules=len(rules))
            collection = collector.collect(
                needs=catalog.needs(rules), accounts=accounts, regions=regions
            )
            if collection.errors and not collection.listed:
                # No listing completed anywhere (a bad profile, no credentials, access denied on
                # every call): storing it as a "partial" scan with zero findings would read as
                # clean.
                raise NothingScannedError(_nothing_scanned(collection))
            now = clock()
            results = evaluate_all(rules, collection.resources, EvalContext(now=now))
            observations = [
                Observation(
                    rule_id=r.rule.id,
                    account=r.resource.account,
                    region=r.resource.region,
                    resource_type=r.resource.type,
                    resource_id=r.resource.id,
                    resource_name=r.resource.name,
                    title=r.rule.title,
                    severity=r.resource.severity or str(r.rule.severity),
                    verdict=str(r.verdict),
                    detail=r.detail.text if r.detail else None,
                    evidence=r.detail.evidence if r.detail else None,
                )
                for r in results
            ]
            by_type: dict[str, list[str]] = {}
            for rule in rules:
                by_type.setdefault(rule.resource_type, []).append(rule.id)
            covered = {
                (rule_id, account, region)
                for rtype, account, region in collection.listed
                for rule_id in by_type.get(rtype, ())
            }
            with transaction(sessions) as session:
                # Still ours? A scan that lost its lock stores nothing beside another scan.
                scan = held.resume(session)
                counts = services.upsert_from_scan(
                    session=session,
                    scan=scan,
                    observations=observations,
                    covered=covered,
                    rule_ids={r.id for r in rules},
                    accounts=collection.accounts,
                    now=now,
                )
                services.finish_scan(
                    session=session,
                    scan=scan,
                    now=clock(),
                    counts=counts,
                    api_calls=dict(collection.api_calls),
                    resources=len(collection.resources),
                    errors=collection.errors,
                )
                for listener in listeners:
                    listener(session, scan, counts)
        except Exception as exc:
            # Record why, then let the caller report it: a scan never vanishes without a trace.
            # (One already marked interrupted by the scan that took its lock keeps that reason.)
            with transaction(sessions) as session:
                running = held.running(session)
                if running is not None:
                    services.fail_scan(
                        session=session,
                        scan=running,
                        now=clock(),
                        message=f"{type(exc).__name__}: {exc}",
                    )
            raise
    log.info(
        "scan.finished",
        scan_id=scan.id,
        status=scan.status,
        **counts.as_dict(),
        api_calls=scan.api_calls,
        errors=scan.error_count,
        failing=sum(1 for r in results if r.verdict is Verdict.failed),
    )
    return ScanOutcome(scan=scan, counts=counts, collection=collection)


def recheck(  # noqa: PLR0911 - one return per way a re-check can end
    *,
    catalog: Catalog,
    collector: Collector,
    rule_id: str,
    account: str,
    region: str,
    resource_id: str,
    clock: Clock = utcnow,
) -> Recheck:
    """Evaluate one rule on one resource now, fetching only what that rule reads."""
    rule = catalog.rules.get(rule_id)
    if rule is None:
        return Recheck("unknown", f"rule {rule_id} is not enabled", 0)
    # Global resources carry a pseudo-region; their services are listed whatever the filter.
    regions = {region} if region.count("-") >= 2 else None
    # Only this resource is fetched (by its id) where its type allows; see ResourceSpec.by_id.
    collection = collector.collect(
        needs=catalog.needs([rule]),
        accounts={account},
        regions=regions,
        only=(rule.resource_type, resource_id),
    )
    calls = sum(collection.api_calls.values())
    if collection.errors:
        first = collection.errors[0]
        return Recheck("unknown", f"{first.service}.{first.operation} failed: {first.code}", calls)
    mine = [
        r
        for r in collection.resources
        if r.type == rule.resource_type
        and r.id == resource_id
        and r.account == account
        and r.region == region
    ]
    if not mine:
        if (rule.resource_type, account, region) in collection.listed:
            return Recheck("pass", "the resource no longer exists", calls)
        return Recheck("unknown", "the resource could not be listed", calls)
    results = evaluate_all([rule], mine, EvalContext(now=clock()))
    if not results:
        return Recheck("pass", "the rule no longer applies to the resource", calls)
    verdict = results[0].verdict
    if verdict is Verdict.failed:
        found = results[0].detail
        return Recheck("fail", (found and found.text) or f"{rule.title} ({resource_id})", calls)
    if verdict is Verdict.passed:
        return Recheck("pass", f"{resource_id} now complies", calls)
    return Recheck("unknown", "the data the rule needs could not be read", calls)


def collector_of(
    settings: Settings, sessions: sessionmaker[Session], resource_type: str | None
) -> Collector:
    """The scanner that collects `resource_type`: this host's file integrity or package
    collector for host types, else AWS's."""
    if resource_type == "host.file":
        from bot.fim_cli import fim_collector

        return fim_collector(settings=settings, sessions=sessions)
    if resource_type == "host.package":
        from bot.vulns_cli import package_collector

        return package_collector(settings, sessions)
    return collector_for(settings)


def rechecker(
    *,
    catalog: Catalog,
    settings: Settings,
    sessions: sessionmaker[Session],
    clock: Clock = utcnow,
) -> Callable[[str, str, str, str], Recheck]:
    """The re-check of one finding's resource (a Slack Resolve, a ticket a person closed),
    with the scanner of its rule's resource type."""

    def check(rule_id: str, account: str, region: str, resource_id: str) -> Recheck:
        rule = catalog.rule(rule_id)
        return recheck(
            catalog=catalog,
            collector=collector_of(settings, sessions, rule.resource_type if rule else None),
            rule_id=rule_id,
            account=account,
            region=region,
            resource_id=resource_id,
            clock=clock,
        )

    return check
