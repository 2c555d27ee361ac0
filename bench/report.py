"""Framework reports over a large ledger: the HIPAA HTML report now, and as of 200 days back.

    python bench/report.py [--findings 50000] [--events 1000000]
                           [--database postgresql://postgres@127.0.0.1:5432/test]

1. The PostgreSQL database given is wiped (point it at a scratch database), migrated, and seeded
   with COPY: one scan a day over 400 days, N findings over the catalog's rules and M finding
   events spread over those days, each finding's events a valid lifecycle (detected, claimed,
   resolved, reopened, risk-accepted, acceptance expired), its row left as its last event says.
2. A fresh child process (so seeding never counts towards its memory) builds the HIPAA report
   as `compliancebot report --format html` does (12 trend points) and renders it, now and
   `--at` 200 days back, each twice; it prints the wall times and its peak RSS.

Targets (issue 13): the HTML report under 10 s with a peak RSS under 500 MB; `--at` 200 days
back under 15 s. Nothing is asserted: this prints numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from slack_load import reset

from bot.reports import RENDERERS, build_report
from ledger import db, history, services
from rules.catalog import load_catalog

END = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 400
START = END - timedelta(days=DAYS)
SLA = {"critical": 7, "high": 30, "medium": 90, "low": 180}
SEVERITIES = ("critical", "high", "high", "medium", "medium", "medium", "low", "low")
FINDING_COLUMNS = (
    "id, fingerprint, rule_id, account, region, resource_type, resource_id, resource_name, "
    "title, severity, status, assignee, first_seen, last_seen, status_changed_at, resolved_at, "
    "resolved_by, accepted_by, accepted_reason, accepted_until, reopen_count, version"
)
EVENT_COLUMNS = "finding_id, at, kind, from_status, to_status, actor, note"


def _ts(at: datetime | None) -> str:
    return "\\N" if at is None else at.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


def _text(value: object) -> str:
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")


def lifecycle(
    rng: random.Random, finding_id: int, count: int, first: datetime
) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """`count` events of one finding from `first`, a valid lifecycle; and its row's state."""
    events: list[tuple[Any, ...]] = []
    at, status = first, "open"
    state: dict[str, Any] = {"assignee": None, "resolved_at": None, "accepted_until": None}
    reopens = 0

    def event(kind: str, to: str, actor: str = "scanner", note: str | None = None) -> None:
        nonlocal status
        events.append((finding_id, at, kind, status if events else None, to, actor, note))
        status = to

    event("created", "open", note="detected by a scan")
    span = (END - first).total_seconds()
    for _ in range(count - 1):
        at += timedelta(seconds=rng.uniform(0.2, 1.8) * span / count)
        if status in ("open", "reopened"):
            pick = rng.random()
            if pick < 0.3:
                state["assignee"] = f"U{rng.randrange(50):03d}"
                event("claimed", "claimed", state["assignee"])
            elif pick < 0.4:
                until = datetime.combine((at + timedelta(days=30)).date(), datetime.max.time(), UTC)
                state["accepted_until"] = until
                event(
                    "accepted", "accepted", "UCISO", f"vendor fix pending (until {until:%Y-%m-%d})"
                )
            else:
                state["resolved_at"] = at
                event("auto_resolved", "resolved", note="a scan found the resource compliant")
        elif status == "claimed":
            state["resolved_at"] = at
            event("resolved", "resolved", state["assignee"] or "U000", "fixed")
        elif status == "accepted":
            if state["accepted_until"] is not None and at > state["accepted_until"]:
                state["accepted_until"] = None
                event("acceptance_expired", "open", note="risk acceptance expired")
            else:
                state["resolved_at"] = at
                event("auto_resolved", "resolved", note="a scan found the resource compliant")
        else:  # resolved
            reopens += 1
            state["resolved_at"] = None
            event("reopened", "reopened", note="a scan detected it again")
    state.update(status=status, changed=at, reopens=reopens)
    return events, state


def seed(url: str, findings: int, events: int) -> None:
    """A migrated, seeded ledger (see the module's docstring)."""
    reset(url)
    engine = db.make_engine(url)
    db.upgrade(engine)
    catalog = load_catalog()
    rules = sorted(catalog.rules)
    rng = random.Random(13)
    per = max(1, events // findings)
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
        scans = io.StringIO()
        for day in range(DAYS + 1):
            at = START + timedelta(days=day)
            scans.write(
                f"{day + 1}\t{_ts(at)}\t{_ts(at + timedelta(minutes=5))}\tcomplete\t"
                "schedule\t{}\t0\t{}\t0\t{}\t0\n"
            )
        with cursor.copy(
            "COPY scans (id, started_at, finished_at, status, trigger, scope, api_calls, "
            "api_calls_by_service, resources, counts, error_count) FROM STDIN"
        ) as copy:
            copy.write(scans.getvalue())
        written = 0
        with (
            cursor.copy(f"COPY findings ({FINDING_COLUMNS}) FROM STDIN") as finding_copy,
        ):
            event_rows = io.StringIO()
            for fid in range(1, findings + 1):
                rule = rules[fid % len(rules)]
                first = START + timedelta(seconds=rng.uniform(0, (DAYS - 30) * 86400))
                rows, state = lifecycle(rng, fid, per, first)
                account = f"{100000000000 + fid % 5}"
                resource_id = f"res-{fid}"
                accepted = state["status"] == "accepted"
                finding_copy.write(
                    "\t".join(
                        _text(v) if not isinstance(v, datetime) else _ts(v)
                        for v in (
                            fid,
                            services.fingerprint(rule, account, "us-east-1", resource_id),
                            rule,
                            account,
                            "us-east-1",
                            catalog.rules[rule].resource_type,
                            resource_id,
                            f"name {fid}",
                            catalog.rules[rule].title[:200],
                            rng.choice(SEVERITIES),
                            state["status"],
                            state["assignee"],
                            first,
                            END,
                            state["changed"],
                            state["resolved_at"] if state["status"] == "resolved" else None,
                            "scanner" if state["status"] == "resolved" else None,
                            "UCISO" if accepted else None,
                            "vendor fix pending" if accepted else None,
                            state["accepted_until"] if accepted else None,
                            state["reopens"],
                            1,
                        )
                    )
                    + "\n"
                )
                for row in rows:
                    event_rows.write(
                        "\t".join(_ts(v) if isinstance(v, datetime) else _text(v) for v in row)
                        + "\n"
                    )
                written += len(rows)
        with cursor.copy(f"COPY finding_events ({EVENT_COLUMNS}) FROM STDIN") as copy:
            copy.write(event_rows.getvalue())
        for table in ("scans", "findings", "finding_events"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - ours
                f"(SELECT max(id) FROM {table}))"
            )
        cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    engine.dispose()
    print(
        f"seeded {findings:,} findings, {written:,} events, {DAYS + 1} scans over {DAYS} days "
        f"in {time.perf_counter() - started:.1f} s"
    )


def measure(url: str) -> None:
    """Build and render the HIPAA HTML report now and 200 days back, twice each."""
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    catalog = load_catalog()
    results: dict[str, Any] = {}
    for label, at in (("now", END), ("at -200 days", END - timedelta(days=200))):
        times = []
        for _ in range(2):
            started = time.perf_counter()
            with sessions() as session:
                first = history.first_scan_at(session=session)
                report = build_report(
                    session=session,
                    catalog=catalog,
                    framework="hipaa",
                    at=at,
                    now=END,
                    sla_days=SLA,
                    trend_points=12,
                    trend_from=None if first is None else max(first, at - timedelta(days=365)),
                )
            page = RENDERERS["html"](report)
            times.append(time.perf_counter() - started)
        results[label] = {
            "seconds": [round(t, 2) for t in times],
            "html_bytes": len(page),
            "open_findings": report.open_findings,
            "failing_controls": report.count("failing"),
        }
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_only:
        measure(args.database)
        return
    seed(args.database, args.findings, args.events)
    subprocess.run(
        [sys.executable, __file__, "--measure-only", "--database", args.database], check=True
    )


if __name__ == "__main__":
    main()
