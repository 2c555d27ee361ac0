"""`compliancebot serve` with logging.format json: every line it writes is JSON, with no secret."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx

from tests.cli import cli_command, wait_until_listening
from tests.fakes.asgi import free_port
from tests.fakes.jira import FakeJira
from tests.fakes.slack import FakeSlack

SIGNING = "0123456789abcdef0123456789abcdef"
FEED = "SECRETFEED-0123456789abcdef0123456789"
HOOK = "SECRETHOOK-0123456789abcdef0123456789"


def test_serve_writes_only_json_lines_and_never_a_query_string_secret(tmp_path: Path) -> None:
    """A log pipeline gets JSON from serve, uvicorn and APScheduler; no token, no secret."""
    port = free_port()
    with FakeSlack() as slack, FakeJira() as jira:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
        env.update(
            COMPLIANCEBOT_DATABASE__URL=f"sqlite:///{tmp_path / 'serve.db'}",
            COMPLIANCEBOT_LOGGING__FORMAT="json",
            COMPLIANCEBOT_LOGGING__LEVEL="debug",
            COMPLIANCEBOT_SERVER__PORT=str(port),
            COMPLIANCEBOT_SLACK__ENABLED="true",
            COMPLIANCEBOT_SLACK__API_URL=slack.base_url,
            COMPLIANCEBOT_SLACK__BOT_TOKEN="xoxb-test",
            COMPLIANCEBOT_SLACK__SIGNING_SECRET=SIGNING,
            COMPLIANCEBOT_SLACK__CHANNEL="C0COMPLY",
            COMPLIANCEBOT_SLACK__MAX_RETRIES="0",
            COMPLIANCEBOT_CALENDAR__ENABLED="true",
            COMPLIANCEBOT_CALENDAR__FEED_TOKEN=FEED,
            COMPLIANCEBOT_CALENDAR__OWNERS=json.dumps(
                {"security": "U0SEC", "it": "U0IT", "compliance": "U0CMP", "hr": "U0HR"}
            ),
            COMPLIANCEBOT_TICKETS__JIRA__ENABLED="true",
            COMPLIANCEBOT_TICKETS__JIRA__URL=jira.url,
            COMPLIANCEBOT_TICKETS__JIRA__TOKEN="pat",
            COMPLIANCEBOT_TICKETS__JIRA__WEBHOOK_SECRET=HOOK,
        )
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
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(trust_env=False, timeout=10) as http:
                assert http.get(f"{base}/calendar.ics?token={FEED}").status_code == 200
                assert http.get(f"{base}/calendar.ics?user=U1&token=SECRETX{FEED}").status_code
                assert http.post(f"{base}/jira/webhook?secret={HOOK}", json={}).status_code == 200
                forged = http.post(
                    f"{base}/slack/events?token=SECRETQ",
                    content=b'payload={"x": "SECRETBODY\n{\\"level\\": \\"critical\\"}"}',
                    headers={"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=x"},
                )
                assert forged.status_code == 401
                assert http.get(f"{base}/readyz").status_code == 200
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()

    lines = [line for line in output.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses as JSON
    assert all(isinstance(r, dict) and "event" in r and "level" in r for r in records), lines
    assert "SECRET" not in output
    loggers = {r.get("logger", "") for r in records}
    assert "uvicorn.error" in loggers  # uvicorn's own lines ("Started server process")
    assert any(name.startswith("apscheduler") for name in loggers)
    paths = [(r["path"], r["status"]) for r in records if r["event"] == "http.request"]
    assert ("/calendar.ics", 200) in paths
    assert ("/jira/webhook", 200) in paths
    assert ("/slack/events", 401) in paths
    assert any(r["event"] == "serve.stopped" for r in records)
