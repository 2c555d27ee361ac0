"""File integrity monitoring over 100,000 files: baseline, a rescan with 1% changed, --verify.

    python bench/fim.py [--files 100000] [--changed 0.01] [--size 1024]
                        [--database postgresql://postgres@127.0.0.1:5432/scratch]

1. A temporary tree of N files (1,000 per directory, `--size` bytes each) is written and watched
   with one `**` glob; the database (default: a fresh SQLite file; a PostgreSQL URL is wiped:
   point it at a scratch database) is migrated.
2. Baseline: every file stat'ed and hashed (`fim baseline`: scanners.host.fim.snapshot with
   verify) and stored (ledger.fim.record_baseline).
3. 1% of the files are rewritten (new content, new size), then one rescan as `fim scan` runs it:
   the baseline loaded, the incremental walk (only changed files hashed), and run_scan with the
   four host.file rules storing the findings. Then the same rescan again (the changes still
   failing: nothing new) and a `--verify` rescan (every file hashed).
4. It prints each phase's time, files hashed, findings, and the peak RSS of the process.

The tree is in the page cache (just written): a cold cache adds the disk's read time to the
baseline and to --verify, not to the incremental rescan (it reads only metadata). Nothing is
asserted: this prints numbers.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text

from bot.scanning import run_scan
from ledger import db
from ledger import fim as store
from ledger.db import transaction
from rules.catalog import load_catalog
from scanners.host.fim import FimCollector, FimOptions, snapshot

HOST = "bench-host"
PER_DIR = 1000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def _tree(root: Path, files: int, size: int) -> list[Path]:
    paths = []
    filler = os.urandom(size)
    for i in range(files):
        directory = root / f"d{i // PER_DIR:04d}"
        if i % PER_DIR == 0:
            directory.mkdir()
        path = directory / f"f{i:06d}.bin"
        path.write_bytes(i.to_bytes(8, "big") + filler[8:])
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--database", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fim-bench-") as tmp:
        root = Path(tmp) / "tree"
        root.mkdir()
        url = args.database or f"sqlite:///{Path(tmp) / 'ledger.db'}"
        if url.startswith("postgresql"):
            _reset(url)
        engine = db.make_engine(url)
        db.upgrade(engine)
        sessions = db.session_factory(engine)
        catalog = load_catalog()

        started = time.perf_counter()
        paths = _tree(root, args.files, args.size)
        took = time.perf_counter() - started
        print(f"tree: {len(paths)} files of {args.size} bytes in {took:.1f} s")
        options = FimOptions(host=HOST, watch=(f"{root}/**",), severity=())

        started = time.perf_counter()
        found = snapshot(options, verify=True)
        walked = time.perf_counter() - started
        with transaction(sessions) as session:
            store.record_baseline(
                session=session, host=HOST, states=found.states.values(), actor="bench",
                reason="bench", now=_now(),
            )  # fmt: skip
        total = time.perf_counter() - started
        print(
            f"baseline: {total:.2f} s ({walked:.2f} s walk + hash of {found.stats.hashed} files, "
            f"{total - walked:.2f} s store); peak RSS {_rss_mb():.0f} MB"
        )

        del found  # `fim baseline` and `fim scan` are separate processes
        step = max(1, round(1 / args.changed)) if args.changed > 0 else len(paths) + 1
        changed = paths[::step]
        for path in changed:
            with path.open("ab") as f:
                f.write(b"changed")

        for label, verify in (("rescan", False), ("rescan again", False), ("verify rescan", True)):
            started = time.perf_counter()
            with sessions() as session:
                baseline = store.load_baseline(session=session, host=HOST)
            loaded = time.perf_counter() - started
            collector = FimCollector(options=options, baseline=baseline, verify=verify)
            outcome = run_scan(
                catalog=catalog, collector=collector, sessions=sessions, trigger="fim"
            )
            total = time.perf_counter() - started
            stats = collector.last.stats if collector.last else None
            print(
                f"{label} ({len(changed)} of {len(paths)} changed): {total:.2f} s "
                f"(baseline load {loaded:.2f} s, walk {stats.seconds if stats else 0:.2f} s, "
                f"{stats.hashed if stats else 0} hashed); {len(collector.changes)} changes, "
                f"{outcome.counts.new} new findings, {outcome.counts.still_failing} still "
                f"failing; peak RSS {_rss_mb():.0f} MB"
            )
            del collector, baseline  # one scan's memory at a time, as one `fim scan` process
        engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


if __name__ == "__main__":
    main()
