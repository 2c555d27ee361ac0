"""Daily posture snapshots over a large ledger: one day's snapshot, and the back-fill of 400 days.

    python bench/snapshots.py [--findings 50000] [--events 1000000]
                              [--database postgresql://postgres@127.0.0.1:5432/test]
                              [--no-seed]

The PostgreSQL database given is wiped and seeded as bench/report.py does (one scan a day over
400 days, N findings, M events), unless --no-seed; then today's snapshot is taken twice (the
second replaces the first) and every day from the first scan to yesterday is back-filled from
the finding history. Target (issue 13): one day's snapshot under 2 s. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import END, seed
from sqlalchemy import delete

from ledger import db, snapshots
from ledger.db import transaction
from ledger.models import ControlSnapshot, PostureSnapshot
from rules.catalog import load_catalog


def main() -> None:
    """Seed, then print the wall times of a snapshot and of the back-fill."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-seed", action="store_true")
    args = parser.parse_args()
    if not args.no_seed:
        seed(args.database, args.findings, args.events)
    engine = db.make_engine(args.database)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    catalog = load_catalog()
    now = END + timedelta(hours=12)
    with transaction(sessions) as session:
        session.execute(delete(PostureSnapshot))
        session.execute(delete(ControlSnapshot))
    for attempt in (1, 2):
        started = time.perf_counter()
        with transaction(sessions) as session:
            snapshots.take_snapshot(session=session, catalog=catalog, day=END.date(), now=now)
        print(f"today's snapshot ({attempt}): {time.perf_counter() - started:.2f} s")
    started = time.perf_counter()
    days = snapshots.backfill(sessions=sessions, catalog=catalog, now=now)
    took = time.perf_counter() - started
    print(f"back-fill: {len(days)} days in {took:.1f} s ({took / max(1, len(days)):.2f} s a day)")
    engine.dispose()


if __name__ == "__main__":
    main()
