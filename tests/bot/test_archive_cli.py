"""`compliancebot archive run|list|restore` as an operator runs them, in their own process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ledger import db
from tests.cli import run_cli
from tests.conftest import FakeClock
from tests.ledger.helpers import obs, scan


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A SQLite ledger with 40 days of finding events (dated from 2026-11-01), archived after
    30 days into tmp_path/archive."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    clock = FakeClock(FakeClock().now.replace(year=2025))  # a year ago: all of it is old
    for day in range(4):
        scan(sessions, clock, [obs("vol-1", verdict="fail" if day % 2 == 0 else "pass")])
        clock.advance(days=1)
    engine.dispose()
    out = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
    out |= {
        "COMPLIANCEBOT_DATABASE__URL": url,
        "COMPLIANCEBOT_ARCHIVE__DIR": str(tmp_path / "archive"),
        "COMPLIANCEBOT_ARCHIVE__DAYS__FINDING_EVENTS": "30",
        "COMPLIANCEBOT_ARCHIVE__DAYS__AUDIT": "30",
        "COLUMNS": "250",
    }
    return out


def test_run_list_restore(env: dict[str, str], tmp_path: Path) -> None:
    done = run_cli("archive", "run", env=env)
    assert done.returncode == 0, done.stderr
    assert "finding_events: 4 rows in 4 objects" in done.stdout

    listed = run_cli("archive", "list", "--kind", "finding_events", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("finding_events  2025-11-01  1 rows  sha256 ")
    assert lines[0].endswith(str(tmp_path / "archive/finding_events/2025/11/01.jsonl.gz"))

    refused = run_cli("archive", "restore", "--kind", "audit", "--day", "2025-11-01", env=env)
    assert refused.returncode == 2
    assert "append-only" in refused.stderr

    out = tmp_path / "audit-2025-11-01.jsonl"
    written = run_cli(
        "archive", "restore", "--kind", "audit", "--day", "2025-11-01", "-o", str(out), env=env
    )
    assert written.returncode == 0, written.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows
    assert all(r["hash"] for r in rows)

    back = run_cli("archive", "restore", "--kind", "finding_events", "--day", "2025-11-01", env=env)
    assert back.returncode == 0, back.stderr
    assert "restored 1 rows of finding_events for 2025-11-01 (0 already there)" in back.stdout
    verify = run_cli("audit", "verify", env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["archive", "list", "--kind", "bogus"], "unknown kind 'bogus'"),
        (["archive", "restore", "--kind", "scans", "--day", "yesterday"], "not a date"),
        (["archive", "restore", "--kind", "scans", "--day", "2020-01-01"], "no archive of scans"),
    ],
)
def test_bad_input_is_named(env: dict[str, str], args: list[str], message: str) -> None:
    done = run_cli(*args, env=env)
    assert done.returncode == 2
    assert message in done.stderr


def test_an_age_without_a_destination_stops_the_command(env: dict[str, str]) -> None:
    bare = {k: v for k, v in env.items() if k != "COMPLIANCEBOT_ARCHIVE__DIR"}
    done = run_cli("archive", "run", env=bare)
    assert done.returncode == 2
    assert "nowhere to archive to" in done.stderr
