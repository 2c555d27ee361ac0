"""The audit trail's hash chain: bulk append, single appends and `audit verify` over N entries.

    python bench/audit.py [--entries 200000] [--key]
                          [--database postgresql://postgres@127.0.0.1:5432/test]

1. The database (default: a fresh SQLite file; a PostgreSQL URL is wiped: point it at a
   scratch database) is migrated and N entries are appended through `ledger.audit.append` in
   batches of 10,000 (as a scan's merge writes them: one bulk insert, chained in Python),
   with an HMAC key when --key is given.
2. 1,000 single appends, each in its own transaction (a Slack click, a CLI command): the tail
   read and the lock per append.
3. `audit verify` (ledger.audit.verify) over the whole chain, twice.

It prints the wall times, entries per second and the peak RSS. Target: verify of 1,000,000
entries under 30 s. Nothing is asserted: this prints numbers.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from slack_load import reset

from bot.logging import configure
from ledger import audit, db, services
from ledger.db import transaction

BATCH = 10_000
KEY = "bench-key-" + "x" * 40


def entries(start: int, count: int, now: datetime) -> list[dict[str, Any]]:
    """`count` entries like a scan's merge writes (finding.created with its detail)."""
    return [
        {
            "at": now + timedelta(microseconds=i),
            "actor": "scanner",
            "action": "finding.created",
            "object_type": "finding",
            "object_id": str(i),
            "detail": {"from": None, "to": "open", "scan_id": i // BATCH, "note": "detected"},
        }
        for i in range(start, start + count)
    ]


def peak_mb() -> float:
    """This process's peak resident set size, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """Seed, append, verify, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--key", action="store_true", help="Chain with an HMAC key.")
    parser.add_argument("--database", default=None)
    args = parser.parse_args()
    configure(level="warning")

    scratch = tempfile.TemporaryDirectory()
    url = args.database or f"sqlite:///{Path(scratch.name) / 'bench.db'}"
    if url.startswith("postgresql"):
        reset(url)
    engine = db.make_engine(url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    key = KEY if args.key else None
    audit.use_key(sessions, key)
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    where = url.split("@")[-1] if "@" in url else "SQLite"
    mode = "HMAC-SHA256" if key else "SHA-256"

    started = time.perf_counter()
    for start in range(0, args.entries, BATCH):
        with transaction(sessions) as session:
            audit.append(session, entries(start, min(BATCH, args.entries - start), now))
    elapsed = time.perf_counter() - started
    print(
        f"{where}, {mode}: appended {args.entries} entries in batches of {BATCH} in "
        f"{elapsed:.1f} s ({args.entries / elapsed:,.0f}/s)"
    )

    started = time.perf_counter()
    for i in range(1000):
        with transaction(sessions) as session:
            services.audit(
                session,
                now=now,
                actor="U1",
                action="finding.claimed",
                object_type="finding",
                object_id=str(i),
            )
    elapsed = time.perf_counter() - started
    print(f"1000 single appends, a transaction each: {elapsed:.2f} s ({elapsed:.3f} ms each)")

    for run in (1, 2):
        started = time.perf_counter()
        with sessions() as session:
            report = audit.verify(session=session, key=key)
        elapsed = time.perf_counter() - started
        print(
            f"verify {run}: {report.summary()} in {elapsed:.1f} s "
            f"({report.entries / elapsed:,.0f} entries/s); peak RSS {peak_mb():.0f} MB"
        )
    engine.dispose()
    scratch.cleanup()


if __name__ == "__main__":
    main()
