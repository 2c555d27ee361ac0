"""The event stream through the webhook sink to a local receiver: throughput, none lost or
duplicated.

    python bench/events.py [--events 100000] [--findings 200] [--reset-every 0]
                           [--database postgresql://postgres@127.0.0.1:5432/scratch]

1. The database (default: a fresh SQLite file; a PostgreSQL URL is wiped: point it at a
   scratch database) is migrated and seeded with failing findings (the ledger's bulk upsert).
2. N finding events are recorded with `ledger.events.record_many` (OCSF bodies, one outbox item
   each for the webhook sink), 2,000 per transaction, as scans would record them.
3. The receiver (tests/fakes/event_receiver.py: verifies each HMAC signature and timestamp,
   records event ids) runs in a child process on 127.0.0.1. `--reset-every K` makes it take
   every K-th delivery and then reset the connection unanswered (the sink must resend it, and
   the receiver drop the resend by id).
4. The one outbox worker drains the webhook sink (`OutboxWorker.drain`, 1,000 items a round)
   until nothing is pending; a retry's backoff is skipped on the worker's clock, not slept.
5. It prints the recording time, the delivery time and events per second, events delivered,
   distinct ids received, lost (recorded but never received: must be 0), duplicates received
   (must equal the resets, and 0 without them) and refused signatures (must be 0).

Nothing is asserted: this prints numbers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_var, None)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from slack_load import reset, seed  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from integrations.delivery import OutboxWorker  # noqa: E402
from integrations.webhook_sink import WebhookSink  # noqa: E402
from ledger import db, events  # noqa: E402
from ledger.db import transaction  # noqa: E402
from ledger.events import Subscription  # noqa: E402
from ledger.models import Finding, OutboxItem, OutboxStatus  # noqa: E402
from rules.catalog import load_catalog  # noqa: E402
from tests.fakes.event_receiver import WebhookReceiver  # noqa: E402

SECRET = "bench-secret-" + "x" * 32
KINDS = ("finding.detail_changed", "finding.claimed", "finding.reopened", "finding.resolved")


def _now() -> datetime:
    return datetime.now(UTC)


def run_receiver(conn: Connection, reset_every: int) -> None:
    """The receiver in its own process: sends its URL, then answers "stats" until "stop"."""
    receiver = WebhookReceiver(SECRET, _now)
    receiver.keep_bodies = False
    receiver.reset_every = reset_every
    conn.send(receiver.url)
    while True:
        command = conn.recv()
        if command == "stop":
            receiver.stop()
            return
        conn.send(
            (sorted(receiver.ids), len(receiver.taken), receiver.duplicates, receiver.refused)
        )


def record(url: str, count: int) -> tuple[float, list[str]]:
    """N finding events recorded for the webhook sink, 2,000 per transaction."""
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    catalog = load_catalog()
    sink = [Subscription(sink="webhook")]
    with sessions() as session:
        findings = list(session.scalars(select(Finding)))
        for finding in findings:
            session.expunge(finding)
    ids: list[str] = []
    started = time.perf_counter()
    now = _now()
    for start in range(0, count, 2000):
        with transaction(sessions) as session:
            batch = [
                events.finding_event(
                    findings[i % len(findings)],
                    catalog.rule(findings[i % len(findings)].rule_id),
                    kind=KINDS[i % len(KINDS)],
                    now=now,
                    product_version="bench",
                    actor="bench",
                )
                for i in range(start, min(count, start + 2000))
            ]
            ids += events.record_many(session, batch, sinks=sink)
    engine.dispose()
    return time.perf_counter() - started, ids


def deliver(url: str, receiver_url: str) -> tuple[float, int, int]:
    """Drain the webhook sink until nothing is pending: (seconds, delivered, rounds)."""
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    skipped = [timedelta(0)]

    def clock() -> datetime:  # the worker's: real time, plus the backoffs skipped
        return _now() + skipped[0]

    sink = WebhookSink(url=receiver_url, secret=SECRET, clock=_now, timeout=10.0)
    worker = OutboxWorker(sessions=sessions, clock=clock)
    worker.add(sink)
    delivered = rounds = 0
    started = time.perf_counter()
    while True:
        rounds += 1
        done = worker.drain(sink, limit=1000)
        delivered += done["delivered"]
        if done["delivered"] or done["retrying"]:
            continue
        with sessions() as session:
            nxt = session.scalar(
                select(func.min(OutboxItem.next_attempt_at)).where(
                    OutboxItem.sink == "webhook", OutboxItem.status == OutboxStatus.pending
                )
            )
        if nxt is None:
            break
        skipped[0] += max(timedelta(0), nxt - clock()) + timedelta(milliseconds=1)
    elapsed = time.perf_counter() - started
    sink.close()
    engine.dispose()
    return elapsed, delivered, rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--findings", type=int, default=200)
    parser.add_argument("--reset-every", type=int, default=0)
    parser.add_argument("--database", default=None)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-events-")
    url = args.database or f"sqlite:///{tmp}/ledger.db"
    reset(url)
    seed(url, args.findings)
    record_seconds, ids = record(url, args.events)
    print(f"database: {url.split('://', 1)[0]}")
    print(
        f"recorded: {len(ids)} events in {record_seconds:.1f} s "
        f"({len(ids) / record_seconds:,.0f} events/s, in the changes' transactions)"
    )

    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=run_receiver, args=(child, args.reset_every))
    proc.start()
    receiver_url = parent.recv()
    try:
        seconds, delivered, rounds = deliver(url, receiver_url)
        parent.send("stats")
        received, taken, duplicates, refused = parent.recv()
    finally:
        parent.send("stop")
        proc.join(10)

    lost = len(set(ids) - set(received))
    unknown = len(set(received) - set(ids))
    print(
        f"delivered: {delivered} events in {seconds:.1f} s ({delivered / seconds:,.0f} events/s, "
        f"{rounds} worker rounds)"
    )
    print(f"received: {len(received)} distinct ids, {taken} deliveries taken")
    print(f"lost: {lost}  unknown ids: {unknown}")
    injected = f" (a reset after every {args.reset_every}th)" if args.reset_every else ""
    print(f"duplicates received (dropped by id at the receiver): {duplicates}{injected}")
    print(f"refused by the receiver (signature / timestamp): {len(refused)}")


if __name__ == "__main__":
    main()
