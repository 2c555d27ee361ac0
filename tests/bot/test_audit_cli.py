"""`compliancebot audit verify` / `audit export`, and the nightly chain check's Slack alert, as
an operator and a Slack channel see them."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bot.cli import app
from bot.server import build_services, scheduled_jobs
from bot.settings import Settings
from ledger import audit, db, services
from ledger.db import transaction
from ledger.models import OutboxItem
from rules.catalog import load_catalog
from tests.cli import run_cli
from tests.conftest import FakeClock
from tests.fakes.slack import FakeSlack
from tests.ledger.helpers import obs, scan

KEY = "a-chain-key-long-enough-for-the-minimum-0123456789"
CHANNEL = "C0AUDIT01"


@pytest.fixture
def ledger(db_url: str, clock: FakeClock) -> Iterator[sessionmaker[Session]]:
    """A migrated ledger (SQLite or PostgreSQL) with two scans' worth of audit entries."""
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    scan(sessions, clock, [obs("vol-1"), obs("vol-2")])
    clock.advance(days=2)
    scan(sessions, clock, [obs("vol-2")])
    yield sessions
    engine.dispose()


def env_for(sessions: sessionmaker[Session], **extra: str) -> dict[str, str]:
    """The environment of a CLI process on this ledger, without the caller's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
    url = sessions.kw["bind"].url.render_as_string(hide_password=False)
    env.update(COMPLIANCEBOT_DATABASE__URL=url, COLUMNS="250")
    env.update(extra)
    return env


def tamper(sessions: sessionmaker[Session], statement: str) -> None:
    """Raw SQL around the append-only triggers, as a database owner could."""
    engine = sessions.kw["bind"]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
        conn.execute(text(statement))


def count(sessions: sessionmaker[Session]) -> int:
    """How many audit entries there are."""
    with sessions() as session:
        return int(session.scalar(text("SELECT count(*) FROM audit_log")) or 0)


def test_verify_says_intact_in_one_line_and_exits_0(ledger: sessionmaker[Session]) -> None:
    """An untouched trail: exit 0 and "N entries, chain intact"."""
    done = run_cli("audit", "verify", env=env_for(ledger))

    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"{count(ledger)} entries, chain intact\n",
        "",
    )


def test_verify_names_the_edited_entry_and_exits_1(ledger: sessionmaker[Session]) -> None:
    """An entry rewritten in the database: exit 1, one line naming it on stderr."""
    tamper(ledger, "UPDATE audit_log SET actor = 'mallory' WHERE id = 3")

    done = run_cli("audit", "verify", env=env_for(ledger))

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "error: audit trail broken: audit entry 3 was changed: its content no longer matches "
        "its hash\n"
    )


def test_verify_all_lists_every_break(ledger: sessionmaker[Session]) -> None:
    """--all lists each break after the first: an edit and, later, a deletion."""
    tamper(ledger, "UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
    tamper(ledger, "DELETE FROM audit_log WHERE id = 5")

    done = CliRunner().invoke(app, ["audit", "verify", "--all"], env=env_for(ledger))

    assert done.exit_code == 1
    lines = done.output.splitlines()
    assert lines[0] == (
        "error: audit trail broken: audit entry 2 was changed: its content no longer matches "
        "its hash (and 1 more)"
    )
    assert lines[1] == "  entry before audit entry 6 removed (chain position 5 missing)"


def test_a_keyed_chain_needs_its_key_to_verify(db_url: str, clock: FakeClock) -> None:
    """Entries written by the CLI with COMPLIANCEBOT_AUDIT__HMAC_KEY verify with it; without
    it the message names the variable to set (and never the key)."""
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    audit.use_key(sessions, KEY)  # as a CLI or serve with the variable set writes them
    with transaction(sessions) as session:
        services.audit(
            session, now=clock(), actor="alice", action="x", object_type="t", object_id="1"
        )
    keyed = env_for(sessions, COMPLIANCEBOT_AUDIT__HMAC_KEY=KEY)
    bare = env_for(sessions)
    engine.dispose()

    good = run_cli("audit", "verify", env=keyed)
    without = run_cli("audit", "verify", env=bare)

    assert (good.returncode, good.stdout) == (0, "1 entry, chain intact\n")
    assert without.returncode == 1
    assert "audit.hmac_key is not set: set COMPLIANCEBOT_AUDIT__HMAC_KEY" in without.stderr
    assert KEY not in without.stderr + good.stdout


def test_the_key_is_a_secret_refused_in_the_config_file_and_when_short(
    tmp_path: Path, ledger: sessionmaker[Session]
) -> None:
    """audit.hmac_key in compliancebot.yaml, or shorter than 32 characters: exit 2 with one
    line naming the variable, never the value."""
    config = tmp_path / "compliancebot.yaml"
    config.write_text(f"audit:\n  hmac_key: {KEY}\n")

    in_file = run_cli("--config", str(config), "audit", "verify", env=env_for(ledger))
    short = run_cli(
        "audit", "verify", env=env_for(ledger, COMPLIANCEBOT_AUDIT__HMAC_KEY="tiny-k3y")
    )

    assert in_file.returncode == short.returncode == 2
    assert "audit.hmac_key: a secret does not belong in the config file; set " in in_file.stderr
    assert "COMPLIANCEBOT_AUDIT__HMAC_KEY" in in_file.stderr
    assert "COMPLIANCEBOT_AUDIT__HMAC_KEY" in short.stderr
    assert "32" in short.stderr
    assert KEY not in in_file.stderr
    assert "tiny-k3y" not in short.stderr


def test_export_writes_json_lines_with_linked_hashes(
    ledger: sessionmaker[Session], tmp_path: Path
) -> None:
    """Every entry one JSON object a line, each linked to the one before; --since keeps the
    entries from that day on."""
    path = tmp_path / "audit.jsonl"
    since = tmp_path / "since.jsonl"
    runner = CliRunner()

    everything = runner.invoke(app, ["audit", "export", "-o", str(path)], env=env_for(ledger))
    later = runner.invoke(
        app, ["audit", "export", "-o", str(since), "--since", "2026-11-03"], env=env_for(ledger)
    )
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    recent = [json.loads(line) for line in since.read_text().splitlines()]

    assert everything.exit_code == later.exit_code == 0
    assert everything.output == f"Wrote {len(entries)} audit entries to {path}.\n"
    assert len(entries) == count(ledger)
    assert entries[0]["prev_hash"] == audit.GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert set(entries[0]) == {
        "id",
        "chain_seq",
        "at",
        "actor",
        "action",
        "object_type",
        "object_id",
        "detail",
        "key_id",
        "prev_hash",
        "hash",
    }
    assert recent
    assert all(e["at"] >= "2026-11-03" for e in recent)
    assert len(recent) < len(entries)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("where", ["missing/dir/audit.jsonl", "a_directory"])
def test_export_to_an_unwritable_path_is_one_line_and_leaves_no_file(
    ledger: sessionmaker[Session], tmp_path: Path, where: str
) -> None:
    """A path in a missing directory, or one that is a directory: exit 2, one line naming the
    path, and nothing left behind (no partial file, no temporary file)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_directory").mkdir()
    target = out / where

    done = run_cli("audit", "export", "-o", str(target), env=env_for(ledger))

    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot write {str(target)!r}: ")
    assert done.stderr.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_directory"]
    assert list((out / "a_directory").iterdir()) == []


def test_export_bad_since_is_named(ledger: sessionmaker[Session], tmp_path: Path) -> None:
    """--since that is no date: exit 2 naming the option and the format; no file written."""
    done = run_cli(
        "audit",
        "export",
        "-o",
        str(tmp_path / "x.jsonl"),
        "--since",
        "yesterday",
        env=env_for(ledger),
    )

    assert done.returncode == 2
    assert "'yesterday' is not a date: write YYYY-MM-DD" in done.stderr
    assert not (tmp_path / "x.jsonl").exists()


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A fake Slack Web API on 127.0.0.1."""
    with FakeSlack() as fake:
        yield fake


def test_the_nightly_job_alerts_slack_once_for_a_broken_chain(
    ledger: sessionmaker[Session], clock: FakeClock, fake_slack: FakeSlack
) -> None:
    """`serve`'s nightly audit job: nothing for an intact chain; after an edit, one message in
    slack.channel naming the entry, and no second one the next night for the same break."""
    settings = Settings.model_validate(
        {
            "slack": {
                "enabled": True,
                "api_url": fake_slack.base_url,
                "bot_token": "xoxb-test",
                "signing_secret": "s" * 32,
                "channel": CHANNEL,
                "max_retries": 0,
            }
        }
    )
    services = build_services(
        settings=settings,
        catalog=load_catalog(),
        engine=ledger.kw["bind"],
        clock=clock,
    )
    job = scheduled_jobs(settings=settings, services=services, syncs=[])["audit"]

    job.run()
    services.delivery.run_once()
    quiet = list(fake_slack.messages.get(CHANNEL, []))
    tamper(ledger, "UPDATE audit_log SET action = 'finding.resolved' WHERE id = 4")
    job.run()
    services.delivery.run_once()
    clock.advance(days=1)
    job.run()
    services.delivery.run_once()

    assert quiet == []
    posted = fake_slack.messages[CHANNEL]
    assert [m["text"] for m in posted] == [
        ":rotating_light: audit trail broken: audit entry 4 was changed: its content no longer "
        "matches its hash"
    ]
    with ledger() as session:
        alerts = session.scalars(select(OutboxItem).where(OutboxItem.kind == "alert")).all()
    assert [(a.sink, a.status) for a in alerts] == [("slack", "delivered")]
