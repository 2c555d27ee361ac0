"""`compliancebot serve` as an operator runs it: a real process, started and stopped by signal."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli import cli_command, wait_until_listening
from tests.fakes.asgi import free_port
from tests.fakes.slack import FakeSlack


def _env(
    tmp_path: Path,
    fake: FakeSlack,
    port: int,
    token: str = "xoxb-test",  # noqa: S107 - the fake's token
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
    env.update(
        COMPLIANCEBOT_DATABASE__URL=f"sqlite:///{tmp_path / 'serve.db'}",
        COMPLIANCEBOT_SLACK__ENABLED="true",
        COMPLIANCEBOT_SLACK__API_URL=fake.base_url,
        COMPLIANCEBOT_SLACK__BOT_TOKEN=token,
        COMPLIANCEBOT_SLACK__SIGNING_SECRET="0123456789abcdef0123456789abcdef",  # Slack's 32
        COMPLIANCEBOT_SLACK__CHANNEL="C0COMPLY",
        COMPLIANCEBOT_SERVER__PORT=str(port),
        COMPLIANCEBOT_SLACK__MAX_RETRIES="0",
    )
    return env


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A fake Slack Web API."""
    with FakeSlack() as fake:
        yield fake


def test_serve_refuses_an_unmigrated_database(tmp_path: Path, slack: FakeSlack) -> None:
    """On an empty database, serve exits 2 saying which command fixes it."""
    result = subprocess.run(
        cli_command("serve"),
        env=_env(tmp_path, slack, free_port()),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "run `compliancebot db upgrade`" in result.stderr


def test_serve_without_secrets_names_every_variable_it_needs(tmp_path: Path) -> None:
    """Slack and Jira on without their secrets: serve exits 2 naming each variable to set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
    env.update(
        COMPLIANCEBOT_DATABASE__URL=f"sqlite:///{tmp_path / 'serve.db'}",
        COMPLIANCEBOT_SLACK__ENABLED="true",
        COMPLIANCEBOT_SLACK__MODE="socket",
        COMPLIANCEBOT_SLACK__CHANNEL="C0COMPLY",
        COMPLIANCEBOT_SLACK__BOT_TOKEN="xoxb-test",
        COMPLIANCEBOT_TICKETS__JIRA__ENABLED="true",
        COMPLIANCEBOT_TICKETS__JIRA__URL="http://127.0.0.1:9",
    )

    result = subprocess.run(
        cli_command("serve"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: secrets are missing:",
        "  slack.app_token is not set, and Slack in socket mode needs it: set "
        "COMPLIANCEBOT_SLACK__APP_TOKEN or put it in the secrets file (COMPLIANCEBOT_SECRETS_FILE)",
        "  tickets.jira is enabled but has no credentials: set tickets.jira.email and "
        "COMPLIANCEBOT_TICKETS__JIRA__API_TOKEN (Cloud), or COMPLIANCEBOT_TICKETS__JIRA__TOKEN "
        "(Server / Data Center), in the environment or the secrets file",
    ]


def test_serve_refuses_a_token_slack_rejects(tmp_path: Path, slack: FakeSlack) -> None:
    """A wrong bot token stops serve at start-up with the setting to fix, not a traceback."""
    env = _env(tmp_path, slack, free_port(), token="xoxb-wrong")
    subprocess.run(
        cli_command("db", "upgrade"),
        env=env,
        check=True,
        timeout=60,
        cwd=tmp_path,
        capture_output=True,
    )
    result = subprocess.run(
        cli_command("serve"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "Slack did not accept the bot token" in result.stderr
    assert "COMPLIANCEBOT_SLACK__BOT_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_answers_health_and_stops_cleanly_on_sigterm(
    tmp_path: Path, slack: FakeSlack, stop: signal.Signals
) -> None:
    """serve answers /healthz and /readyz, and SIGTERM (or Ctrl-C) ends it after draining with
    status 0, which a supervisor reads as a clean stop, not a crash."""
    port = free_port()
    env = _env(tmp_path, slack, port)
    subprocess.run(
        cli_command("db", "upgrade"),
        env=env,
        check=True,
        timeout=60,
        cwd=tmp_path,
        capture_output=True,
    )
    proc = subprocess.Popen(
        cli_command("serve"),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_listening(port, proc)
        with httpx.Client(trust_env=False, timeout=5) as http:
            assert http.get(f"http://127.0.0.1:{port}/readyz").json() == {"status": "ready"}
            assert http.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        proc.send_signal(stop)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "serve.stopped" in output
    assert "Traceback" not in output
    assert "Application shutdown complete" in output
    assert slack.calls_to("auth.test")
