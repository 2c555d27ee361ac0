"""First ticket sync of a big ledger into a rate-limited Jira.

    python bench/ticket_sync.py [--findings 5000] [--rate 50] [--client-rate 0] [--sliding]
                                [--database postgresql://postgres@127.0.0.1:5432/test]

1. The database (default: a fresh SQLite file; a PostgreSQL URL is wiped: point it at a
   scratch database) is migrated and seeded with N failing findings.
2. A fake Jira (tests/fakes/jira.py) runs in a child process on 127.0.0.1, answering 429 with
   Retry-After past `--rate` requests per second (a token bucket of one second's worth; with
   `--sliding`, past `--rate` requests in any one-second window, the strictest reading).
3. The ticket sync (`jira_sync`, as `compliancebot tickets sync` and `serve` build it) runs
   rounds until nothing is pending. `--client-rate R` paces our requests at R per second
   (tickets.jira.requests_per_second); 0 relies on Retry-After alone.
4. It prints tickets created, duplicates (fingerprint labels on more than one issue: must be
   0), requests sent and refused with 429, the total time, and the ratio of the achieved
   request rate (requests Jira served per second) to the allowed one (target >= 0.9).
5. The same findings are scanned again (nothing changed) and one more round runs: it prints
   the tracker calls that round made (must be 0).

Nothing is asserted: this prints numbers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_var, None)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from slack_load import reset, seed  # noqa: E402

from bot.logging import configure  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.tickets import jira_sync  # noqa: E402
from ledger import db  # noqa: E402
from ledger.models import OutboxItem, OutboxStatus  # noqa: E402
from rules.catalog import load_catalog  # noqa: E402
from tests.fakes.jira import FakeJira  # noqa: E402


def run_fake(rate: float, conn: Connection, sliding: bool = False) -> None:
    """The fake Jira in its own process: sends its URL, then answers "stats" until "stop"."""
    fake = FakeJira(rate_limit=rate, sliding_window=sliding).start()
    conn.send(fake.url)
    while True:
        command = conn.recv()
        if command == "stop":
            fake.stop()
            return
        with fake._lock:
            labels = Counter(
                label
                for issue in fake.issues.values()
                for label in issue["fields"]["labels"]
                if label.startswith("cb-")
            )
            conn.send(
                {
                    "issues": len(fake.issues),
                    "duplicates": sum(n - 1 for n in labels.values() if n > 1),
                    "requests": len(fake.calls),
                    "limited": fake.limited,
                }
            )


def pending(sessions: Any) -> int:
    """Ticket work not yet delivered or refused."""
    from sqlalchemy import func, select

    with sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxItem)
                .where(OutboxItem.sink == "jira", OutboxItem.status == OutboxStatus.pending)
            )
            or 0
        )


def sync_all(sync: Any, sessions: Any) -> int:
    """Rounds until nothing is pending; returns how many."""
    rounds = 0
    while True:
        rounds += 1
        done = sync.run_once()
        if not pending(sessions):
            return rounds
        if not done["delivered"]:
            time.sleep(0.1)  # what is left waits out its backoff: no need to spin


def report(
    before: dict[str, int],
    after: dict[str, int],
    elapsed: float,
    rounds: int,
    rate: float,
    client_rate: float,
) -> None:
    """Print the numbers of the first sync."""
    sent = after["requests"] - before["requests"]
    limited = after["limited"] - before["limited"]
    served = sent - limited
    achieved = served / elapsed
    print(
        f"tickets created: {after['issues']}   duplicates: {after['duplicates']}   rounds: {rounds}"
    )
    print(
        f"requests: {sent} sent, {limited} refused with 429, {served} served; "
        f"total time {elapsed:.1f} s"
    )
    print(
        f"achieved {achieved:.1f} req/s of {rate:.0f} allowed: ratio {achieved / rate:.2f}"
        f"  (client pace: {client_rate or 'none'})"
    )


def main() -> None:
    """Seed, sync, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--findings", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=50.0, help="Jira's limit, requests/s")
    parser.add_argument("--client-rate", type=float, default=0.0, help="our pace (0: none)")
    parser.add_argument(
        "--sliding",
        action="store_true",
        help="Jira counts any one-second window (strict), not a token bucket",
    )
    parser.add_argument("--database", default=None)
    args = parser.parse_args()
    configure(level="warning")

    scratch = tempfile.TemporaryDirectory()
    url = args.database or f"sqlite:///{Path(scratch.name) / 'bench.db'}"
    if url.startswith("postgresql"):
        reset(url)
    seconds, new = seed(url, args.findings)
    print(f"seeded {new} findings in {seconds:.1f} s ({url.split('@')[-1]})")

    parent, child = multiprocessing.Pipe()
    fake = multiprocessing.get_context("spawn").Process(
        target=run_fake, args=(args.rate, child, args.sliding), daemon=True
    )
    fake.start()
    jira_url = parent.recv()

    def stats() -> dict[str, int]:
        parent.send("stats")
        answer: dict[str, int] = parent.recv()
        return answer

    settings = Settings.model_validate(
        {
            "tickets": {
                "jira": {
                    "enabled": True,
                    "url": jira_url,
                    "token": "bench",
                    "requests_per_second": args.client_rate,
                }
            }
        }
    )
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    from bot.scanning import utcnow

    sync = jira_sync(settings=settings, catalog=load_catalog(), sessions=sessions, clock=utcnow)
    sync.sink.validate()  # connects (serverInfo) before the clock starts
    before = stats()
    started = time.perf_counter()
    rounds = sync_all(sync, sessions)
    elapsed = time.perf_counter() - started
    report(before, stats(), elapsed, rounds, args.rate, args.client_rate)

    seed(url, args.findings)  # the same findings again: nothing changed
    quiet_before = stats()["requests"]
    result = sync.run_once()
    quiet = stats()["requests"] - quiet_before
    print(f"rescan with nothing changed: {result['planned']} planned, {quiet} tracker calls")

    parent.send("stop")
    fake.join(10)
    engine.dispose()
    scratch.cleanup()


if __name__ == "__main__":
    main()
