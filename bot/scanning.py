"""Run one scan end to end: collect, evaluate, merge into the ledger."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy.orm import Session, sessionmaker

from bot.settings import Settings
from ledger import services
from ledger.db import transaction
from ledger.models import Scan
from ledger.services import Observation, ScanCounts
from rules.catalog import Catalog
from rules.conditions import EvalContext
from rules.engine import Verdict, evaluate_all
from scanners.aws.collector import AwsCollector, AwsTarget, CollectorOptions, ProgressFn
from scanners.model import Collection

log = structlog.get_logger(__name__)
Clock = Callable[[], datetime]


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


@dataclass
class ScanOutcome:
    scan: Scan
    counts: ScanCounts
    collection: Collection


def run_scan(
    *,
    catalog: Catalog,
    collector: AwsCollector,
    sessions: sessionmaker[Session],
    clock: Clock = utcnow,
    rule_ids: list[str] | None = None,
    accounts: set[str] | None = None,
    regions: set[str] | None = None,
    trigger: str = "cli",
) -> ScanOutcome:
    """Scan now and store the result; one failing service never aborts the scan."""
    rules = catalog.select(rule_ids=rule_ids)
    scope = {
        "rules": rule_ids or "all",
        "accounts": sorted(accounts or []) or "all",
        "regions": sorted(regions or []) or "configured",
    }
    with transaction(sessions) as session:
        scan = services.start_scan(session=session, now=clock(), trigger=trigger, scope=scope)
    try:
        log.info("scan.started", scan_id=scan.id, rules=len(rules))
        collection = collector.collect(
            needs=catalog.needs(rules), accounts=accounts, regions=regions
        )
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
                severity=str(r.rule.severity),
                verdict=str(r.verdict),
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
            scan = session.merge(scan)
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
    except Exception as exc:
        # Record why, then let the caller report it: a scan never vanishes without a trace.
        with transaction(sessions) as session:
            services.fail_scan(
                session=session,
                scan=session.merge(scan),
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
