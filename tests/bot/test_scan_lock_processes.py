"""Scans in separate processes, as cron, an operator and Slack start them: one at a time.

Each `compliancebot scan` is its own process against a moto server on 127.0.0.1 whose answers
wait behind a gate the test opens, so the first scan is mid-collection, holding the lock, for
exactly as long as the test needs (no sleeping).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from sqlalchemy import select, text
from werkzeug.serving import make_server

from ledger import db
from ledger.models import Scan, ScanStatus
from ledger.scanlock import LOCK_KEY
from tests.cli import cli_command, run_cli

RULE = "ec2_volume_encrypted"  # one rule: one service to list, a quick scan


class GatedMoto:
    """A moto server whose every answer waits until `opened` is set; `entered` is set by the
    first request, i.e. once a scan has taken the lock and started collecting."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        moto = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            self.entered.set()
            self.opened.wait(120)
            return moto(environ, start_response)  # type: ignore[no-any-return]

        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self.opened.set()
        self._server.shutdown()
        self._thread.join(30)


@pytest.fixture
def moto_server() -> Iterator[GatedMoto]:
    """A gated moto server on a free port of 127.0.0.1."""
    server = GatedMoto()
    yield server
    server.stop()


@dataclass
class Deployment:
    env: dict[str, str]
    url: str

    def scan(self) -> subprocess.CompletedProcess[str]:
        """`compliancebot scan --rule ...` run to its end."""
        return run_cli("scan", "--rule", RULE, env=self.env)

    def start_scan(self) -> subprocess.Popen[str]:
        """`compliancebot scan --rule ...` started in the background."""
        return subprocess.Popen(
            cli_command("scan", "--rule", RULE),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def scans(self) -> list[tuple[int, str, str | None]]:
        """(id, status, message) of every stored scan."""
        engine = db.make_engine(self.url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(Scan.id, Scan.status, Scan.message).order_by(Scan.id))
                return [(r.id, r.status, r.message) for r in rows]
        finally:
            engine.dispose()

    def wait_for_lock_free(self) -> None:
        """PostgreSQL: block until the server has let a killed process's lock go."""
        engine = db.make_engine(self.url)
        try:
            if engine.dialect.name == "postgresql":
                with engine.connect() as conn:
                    conn.execute(text("SET lock_timeout = '30s'"))
                    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
        finally:
            engine.dispose()


@pytest.fixture
def deployment(tmp_path: Path, db_url: str, moto_server: GatedMoto) -> Deployment:
    """A config scanning the gated moto server into a migrated database (SQLite, PostgreSQL)."""
    config = tmp_path / "compliancebot.yaml"
    config.write_text(
        "aws:\n  targets:\n    - name: sim\n      regions: [us-east-1]\n"
        f"      endpoint_url: {moto_server.url}\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")},
        "COMPLIANCEBOT_CONFIG": str(config),
        "COMPLIANCEBOT_DATABASE__URL": db_url,
        "COLUMNS": "200",
    }
    assert run_cli("db", "upgrade", env=env).returncode == 0
    return Deployment(env=env, url=db_url)


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes to kill at the end whatever happens."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(30)


def test_two_scans_at_once_one_scans_and_the_other_is_told(
    deployment: Deployment, moto_server: GatedMoto, background: list[subprocess.Popen[str]]
) -> None:
    """A second `compliancebot scan` while one runs exits 2 with one line naming the running
    scan, records nothing, and the first one finishes as if alone."""
    first = deployment.start_scan()
    background.append(first)
    assert moto_server.entered.wait(60), "the first scan never reached AWS"

    second = deployment.scan()
    moto_server.opened.set()
    out, err = first.communicate(timeout=120)

    assert second.returncode == 2, second.stdout + second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("error: a scan is already running (started by cli at ")
    assert lines[0].endswith(" UTC, scan #1)")
    assert first.returncode == 0, out + err
    assert "Scan #1 complete" in out
    assert deployment.scans() == [(1, ScanStatus.complete, None)]


def test_a_killed_scan_is_marked_failed_by_the_next_one(
    deployment: Deployment, moto_server: GatedMoto, background: list[subprocess.Popen[str]]
) -> None:
    """SIGKILL a scan mid-collection: the next `compliancebot scan` runs at once and the killed
    one reads as interrupted, not `running` for ever."""
    first = deployment.start_scan()
    background.append(first)
    assert moto_server.entered.wait(60), "the first scan never reached AWS"
    first.kill()
    first.wait(30)  # reaped: a zombie's pid still looks alive
    deployment.wait_for_lock_free()
    moto_server.opened.set()

    second = deployment.scan()

    assert second.returncode == 0, second.stdout + second.stderr
    assert "Scan #2 complete" in second.stdout
    (killed, killed_status, message), (_, status, _) = deployment.scans()
    assert (killed, killed_status, status) == (1, ScanStatus.failed, ScanStatus.complete)
    assert (message or "").startswith("interrupted: it never finished (its process")
