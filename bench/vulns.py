"""Vulnerable packages: 3,000 installed packages against 200,000 advisories.

    python bench/vulns.py [--advisories 200000] [--packages 3000]
                          [--database postgresql://postgres@127.0.0.1:5432/scratch]

1. A child process writes N generated OSV advisories into one zip, one member per advisory, as
   OSV's per-ecosystem exports are laid out (Debian:12, PyPI, npm, AlmaLinux:9). Package names
   are drawn with a skew (a few names have hundreds of advisories, as linux or openssl do);
   each advisory has an introduced/fixed range and a CVSS vector for half of them.
2. `vulns import` of that zip into a fresh database (SQLite by default; a PostgreSQL URL is
   wiped: point it at a scratch database): time, advisories per second, peak RSS after it.
3. A host tree made here: a dpkg status file, a site-packages directory of dist-info
   directories and a package-lock.json, P packages in all, drawn from the same names.
4. The match as `vulns scan` runs it (the collector: inventory, lookups by name in batches,
   version comparisons): time, advisory entries compared, vulnerable pairs; then the whole
   run_scan (match and storing the findings), and a second one (nothing new).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text

from bot.scanning import run_scan
from ledger import db
from ledger.advisories import LedgerAdvisories, Limits, import_advisories
from rules.catalog import load_catalog
from scanners.host.packages import InventorySources
from scanners.host.vulns import PackageCollector

HOST = "bench-host"
# ecosystem -> (share of the advisories, share of the installed packages, names in the pool)
ECOSYSTEMS = {
    "Debian:12": (0.35, 0.60, 30_000),
    "PyPI": (0.25, 0.25, 40_000),
    "npm": (0.25, 0.15, 50_000),
    "AlmaLinux:9": (0.15, 0.0, 20_000),
}
CVSS = [
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N",
]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def _name(ecosystem: str, rank: int) -> str:
    return {"Debian:12": "deb", "PyPI": "py", "npm": "js", "AlmaLinux:9": "rpm"}[ecosystem] + (
        f"pkg{rank}"
    )


def _version(ecosystem: str, rng: random.Random) -> str:
    major, minor, patch = rng.randint(0, 9), rng.randint(0, 20), rng.randint(0, 30)
    if ecosystem == "Debian:12":
        return f"{major}.{minor}.{patch}-{rng.randint(1, 5)}~deb12u{rng.randint(1, 4)}"
    if ecosystem == "AlmaLinux:9":
        return f"{major}.{minor}.{patch}-{rng.randint(1, 40)}.el9"
    return f"{major}.{minor}.{patch}"


def _skewed(rng: random.Random, pool: int) -> int:
    # Rank 0 is the most advised-about name (about 1.5% of its ecosystem's advisories, as linux
    # has in Debian's); the top 1% of names get about 16%, and the tail is long.
    return min(int(pool * rng.random() ** 2.5), pool - 1)


def generate(path: Path, count: int, seed: int) -> None:
    """The advisory zip (run in a child process: its memory is not the import's)."""
    rng = random.Random(seed)
    names = list(ECOSYSTEMS)
    weights = [ECOSYSTEMS[e][0] for e in names]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for i in range(count):
            ecosystem = rng.choices(names, weights)[0]
            pool = ECOSYSTEMS[ecosystem][2]
            doc: dict[str, Any] = {
                "schema_version": "1.6.0",
                "id": f"BENCH-{i:07d}",
                "modified": "2026-01-01T00:00:00Z",
                "published": "2025-06-01T00:00:00Z",
                "aliases": [f"CVE-2026-{i:07d}"],
                "summary": "a generated advisory",
                "affected": [
                    {
                        "package": {
                            "ecosystem": ecosystem,
                            "name": _name(ecosystem, _skewed(rng, pool)),
                        },
                        "ranges": [
                            {
                                "type": "ECOSYSTEM",
                                "events": [
                                    {"introduced": "0"},
                                    {"fixed": _version(ecosystem, rng)},
                                ],
                            }
                        ],
                    }
                ],
            }
            if i % 2 == 0:
                doc["severity"] = [{"type": "CVSS_V3", "score": CVSS[i % 4 // 2]}]
            archive.writestr(f"{doc['id']}.json", json.dumps(doc))


def host(root: Path, packages: int, seed: int) -> InventorySources:
    """A dpkg status file, a site-packages tree and a package-lock.json."""
    rng = random.Random(seed + 1)
    share = {e: int(packages * ECOSYSTEMS[e][1]) for e in ECOSYSTEMS}
    share["Debian:12"] += packages - sum(share.values())
    stanzas = []
    for rank in range(share["Debian:12"]):
        name, version = _name("Debian:12", rank), _version("Debian:12", rng)
        stanzas.append(
            f"Package: {name}\nStatus: install ok installed\nVersion: {version}\n"
            f"Description: generated\n long text\n"
        )
    (root / "status").write_text("\n".join(stanzas))
    site = root / "site-packages"
    for rank in range(share["PyPI"]):
        info = site / f"{_name('PyPI', rank)}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {_name('PyPI', rank)}\n"
            f"Version: {_version('PyPI', rng)}\n"
        )
    app = root / "app"
    app.mkdir()
    lock = {
        "lockfileVersion": 3,
        "packages": {
            f"node_modules/{_name('npm', rank)}": {"version": _version("npm", rng)}
            for rank in range(share["npm"])
        },
    }
    (app / "package-lock.json").write_text(json.dumps(lock))
    return InventorySources(
        dpkg_status=root / "status",
        rpm_command=None,
        os_ecosystem="Debian:12",
        python_paths=(site,),
        npm_paths=(app,),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--advisories", type=int, default=200_000)
    parser.add_argument("--packages", type=int, default=3_000)
    parser.add_argument("--database", default=None)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate, args.advisories, args.seed)
        return
    with tempfile.TemporaryDirectory(prefix="bench-vulns-") as tmp:
        root = Path(tmp)
        archive = root / "all.zip"
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--generate",
                str(archive),
                "--advisories",
                str(args.advisories),
                "--seed",
                str(args.seed),
            ],
            check=True,
        )
        print(
            f"generated {args.advisories} advisories in {time.perf_counter() - started:.1f} s "
            f"({archive.stat().st_size / 1e6:.1f} MB zip)"
        )
        url = args.database or f"sqlite:///{root / 'bench.db'}"
        if args.database:
            _reset(url)
        engine = db.make_engine(url)
        db.upgrade(engine)
        sessions = db.session_factory(engine)
        rss_before = _rss_mb()
        started = time.perf_counter()
        report = import_advisories(
            sessions=sessions, paths=[archive], now=datetime.now(UTC), limits=Limits()
        )
        took = time.perf_counter() - started
        print(
            f"import: {took:.1f} s, {report.read / took:,.0f} advisories/s "
            f"({report.imported} new, {report.skipped} skipped); "
            f"peak RSS {_rss_mb():.0f} MB (before the import: {rss_before:.0f} MB)"
        )
        again = time.perf_counter()
        second = import_advisories(sessions=sessions, paths=[archive], now=datetime.now(UTC))
        print(
            f"re-import of the same zip: {time.perf_counter() - again:.1f} s "
            f"({second.unchanged} unchanged)"
        )
        (root / "host").mkdir()
        sources = host(root / "host", args.packages, args.seed)
        collector = PackageCollector(
            host=HOST, sources=sources, advisories=LedgerAdvisories(sessions)
        )
        started = time.perf_counter()
        collection = collector.collect()
        took = time.perf_counter() - started
        inventory = collector.last_inventory
        assert inventory is not None
        print(
            f"match: {took:.2f} s for {len(inventory.packages)} installed packages "
            f"({collection.api_calls['advisory_entries']} advisory entries compared, "
            f"{len(collection.resources)} vulnerable pairs, {len(collection.errors)} errors) "
            f"[target < 5 s]"
        )
        catalog = load_catalog()
        for label in ("first run_scan (match + store findings)", "second run_scan (no change)"):
            started = time.perf_counter()
            outcome = run_scan(
                catalog=catalog, collector=collector, sessions=sessions, trigger="vulns"
            )
            print(
                f"{label}: {time.perf_counter() - started:.2f} s, {outcome.counts.new} new, "
                f"{outcome.counts.still_failing} still failing"
            )
        print(f"peak RSS of the process: {_rss_mb():.0f} MB")
        engine.dispose()


if __name__ == "__main__":
    main()
