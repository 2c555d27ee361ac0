"""`compliancebot trends`: the score and open findings per day from the daily snapshots, as a
table with sparklines or as JSON, back-filled from the history the first time."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.server import build_services, scheduled_jobs
from bot.settings import Settings
from bot.trends import sparkline
from ledger.models import PostureSnapshot
from rules.catalog import load_catalog
from tests.bot.test_scheduler import engine_of
from tests.conftest import FakeClock
from tests.ledger.test_snapshots import DAY1, RULES, live_day

CATALOG = load_catalog()
# The story of tests/ledger/test_snapshots.live_day, days Nov 1 to Nov 5, shown on Nov 6 with
# --days 7 (from Oct 31, before the first scan): findings open each day, by severity.
OPEN = [None, 4, 3, 2, 4, 3, 3]
DAYS = [f"2026-10-{31}", *(f"2026-11-0{d}" for d in range(1, 7))]


def hipaa_score() -> float:
    """HIPAA's score on each day of the story: every control citing either rule fails."""
    fw = CATALOG.frameworks["hipaa"]
    cited = {c for r in CATALOG.rules.values() for c in r.frameworks.get("hipaa", ())}
    failing = {c for r in RULES for c in CATALOG.rules[r].frameworks.get("hipaa", ())}
    automated = [c for c in fw.controls if c in cited]
    return round(100 * (len(automated) - len(failing)) / len(automated), 1)


@pytest.fixture
def cli(
    sessions: sessionmaker[Session],
    db_url: str,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Result]:
    """`compliancebot ARGS` over a ledger with five days of history, the clock on Nov 6."""
    for day in range(5):
        live_day(sessions, clock, day)
    clock.now = datetime.combine(DAY1 + timedelta(days=5), time(10), tzinfo=UTC)
    monkeypatch.setenv("COMPLIANCEBOT_DATABASE__URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("bot.cli.utcnow", clock)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, (result.output, result.exception)
        return result

    return run


def test_sparkline_scales_values_to_eight_blocks() -> None:
    """0, 50 and 100 of 100 are the lowest, a middle and the highest block; a day without a
    snapshot is a blank; a flat line of zeros stays at the bottom."""
    assert sparkline([0, 50, 100, None], high=100) == "▁▅█ "
    assert sparkline([4, 3, 2, 0]) == "█▆▅▁"
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([None, None]) == "  "


def test_trends_backfills_once_then_prints_the_days(cli: Callable[..., Result]) -> None:
    """The first run says it back-fills and shows each day's score and open findings by
    severity with sparklines; the second reads the snapshots and says nothing of it."""
    first = cli("trends", "--framework", "hipaa", "--days", "7")
    again = cli("trends", "--framework", "hipaa", "--days", "7")

    assert first.stderr.strip() == (
        "No snapshots yet: back-filling the last 7 days from the finding history "
        "(the scheduler's snapshot job keeps them from now on)."
    )
    assert again.stderr == ""
    assert again.stdout == first.stdout
    lines = first.stdout.splitlines()
    assert lines[0] == f"{CATALOG.frameworks['hipaa'].name} (hipaa)"
    score = f"{hipaa_score():g}%"
    flat = sparkline([hipaa_score()], high=100) * 6
    assert lines[1] == f"  score      {flat}  {score} -> {score}"
    assert lines[2] == "  open       █▆▅█▆▆  4 -> 3"
    cells = [line.replace("│", " ").split() for line in lines]
    rows = {c[0]: c[1:] for c in cells if c and c[0][:4] == "2026"}
    assert list(rows) == DAYS
    # Day, score, failing controls, critical, high, medium, low, info, accepted findings.
    assert rows["2026-10-31"] == ["-"] * 8
    assert rows["2026-11-03"][0] == score
    assert rows["2026-11-03"][2:] == ["1", "1", "0", "0", "0", "1"]
    assert rows["2026-11-04"][2:4] == ["1", "3"]
    assert [int(r[2]) + int(r[3]) for r in list(rows.values())[1:]] == OPEN[1:]


def test_trends_json_has_each_day_of_each_framework(cli: Callable[..., Result]) -> None:
    """`-o json` lists every framework asked for with one entry per day that has a snapshot."""
    doc = json.loads(cli("trends", "--days", "7", "-o", "json").stdout)

    assert (doc["from"], doc["to"]) == ("2026-10-31", "2026-11-06")
    assert [fw["id"] for fw in doc["frameworks"]] == sorted(CATALOG.frameworks)
    hipaa = next(fw for fw in doc["frameworks"] if fw["id"] == "hipaa")
    assert [d["day"] for d in hipaa["days"]] == DAYS[1:]
    assert [d["open"] for d in hipaa["days"]] == OPEN[1:]
    assert {d["score"] for d in hipaa["days"]} == {hipaa_score()}
    assert hipaa["days"][2]["open_by_severity"] == {
        "critical": 1,
        "high": 1,
        "medium": 0,
        "low": 0,
        "info": 0,
    }
    assert hipaa["days"][2]["accepted_findings"] == 1
    controls = hipaa["days"][0]["controls"]
    assert sum(controls.values()) == len(CATALOG.frameworks["hipaa"].controls)


def test_an_unknown_framework_names_the_known_ones(cli: Callable[..., Result]) -> None:
    """`--framework nope` exits 2 with one line naming every known framework, nothing else."""
    result = cli("trends", "--framework", "nope", code=2)

    assert result.stderr == (
        "error: --framework: unknown framework 'nope'; "
        "known: cis_aws, hipaa, hitrust, pci_dss, soc2\n"
    )
    assert result.stdout == ""


def test_the_scheduler_job_backfills_in_the_schedule_time_zone(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """`serve`'s "snapshot" job runs daily at 00:05 in schedule.timezone and, on its first
    run, fills every day since the first scan and takes today's."""
    for day in range(3):
        live_day(sessions, clock, day)
    clock.now = datetime(2026, 11, 4, 5, 30, tzinfo=UTC)  # 00:30 on Nov 4 in New York
    settings = Settings.model_validate({"schedule": {"timezone": "America/New_York"}})
    services = build_services(
        settings=settings, catalog=CATALOG, engine=engine_of(sessions), clock=clock
    )
    job = scheduled_jobs(settings=settings, services=services, syncs=[])["snapshot"]

    assert job.run() == {"backfilled": 3}
    nxt = job.trigger.get_next_fire_time(None, clock())
    assert nxt is not None
    assert nxt.isoformat() == "2026-11-05T00:05:00-05:00"
    with sessions() as session:
        days = sorted(set(session.scalars(select(PostureSnapshot.day))))
    assert [str(d) for d in days] == ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
