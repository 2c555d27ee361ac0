"""Archive and verify a million finding events from PostgreSQL, streamed.

    python bench/archive.py [--findings 50000] [--events 1000000] [--days 30]
                            [--database postgresql://postgres@127.0.0.1:5432/test]
                            [--no-seed] [--dir /tmp/cb-archive]

The PostgreSQL database given is wiped and seeded as bench/report.py does (400 days of history),
unless --no-seed. Then, in a child process (so its peak RSS is the archive's alone),
`ledger.archive.run` archives every finding event older than --days into --dir: one gzip JSON
Lines object per day, each read back and checked before its rows are deleted. Prints the wall
time, rows and objects, rows per second and the child's peak RSS. Target (issue 15): peak RSS
under 300 MB, never all rows in memory. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CHILD = r"""
import json, sys, time
from datetime import timedelta
sys.path.insert(0, sys.argv[4])
from ledger import archive, db
from bot.archive import LocalStore
from report import END

url, root, days = sys.argv[1], sys.argv[2], int(sys.argv[3])
sessions = db.session_factory(db.make_engine(url))
now = END + timedelta(hours=12)
started = time.perf_counter()
report = archive.run(sessions=sessions, store=LocalStore(root), days={"finding_events": days},
                     clock=lambda: now)
took = time.perf_counter() - started
# VmHWM: this process's own peak (ru_maxrss would carry the seeding parent's over exec).
status = open("/proc/self/status").read().splitlines()
rss = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
print(json.dumps({"seconds": took, "rows": report.rows.get("finding_events", 0),
                  "objects": report.objects.get("finding_events", 0), "peak_rss_mb": rss}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-seed", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    if not args.no_seed:
        from report import seed

        seed(args.database, args.findings, args.events)
    root = args.dir or Path(tempfile.mkdtemp(prefix="cb-archive-"))
    here = str(Path(__file__).resolve().parent)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, args.database, str(root), str(args.days), here],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        print(child.stderr[-3000:])
        sys.exit(1)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    stored = sum(p.stat().st_size for p in root.rglob("*.gz"))
    print(
        f"archived {result['rows']:,} finding events into {result['objects']} objects "
        f"({stored / 1e6:.1f} MB gzip) in {result['seconds']:.1f} s "
        f"({result['rows'] / max(result['seconds'], 1e-9):,.0f} rows/s), "
        f"peak RSS {result['peak_rss_mb']:.0f} MB"
    )
    if args.dir is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
