"""Agents over real HTTP: `serve`'s /agent/v1/results with valid, wrong, revoked and replayed
tokens, hostile bodies, the "host silent" finding, and `agent run` as its own process."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.agent import PATH, agent_routes, check_silent
from bot.server import build_asgi, build_services
from bot.settings import Settings
from ledger import agents
from ledger.db import transaction
from ledger.models import AuditEntry, Finding
from rules.catalog import load_catalog
from tests.cli import run_cli
from tests.conftest import FakeClock
from tests.fakes.asgi import running

CATALOG = load_catalog()
LIMIT = 256 * 1024


@dataclass
class Served:
    url: str
    token: str
    sessions: sessionmaker[Session]
    clock: FakeClock

    def post(self, document: Any, *, token: str | None = None, raw: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        bearer = self.token if token is None else token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        body = raw if raw is not None else json.dumps(document).encode()
        return httpx.post(self.url + PATH, content=body, headers=headers, timeout=30)

    def findings(self) -> dict[str, Finding]:
        with self.sessions() as session:
            return {f.resource_id: f for f in session.scalars(select(Finding))}


@pytest.fixture
def served(sessions: sessionmaker[Session], clock: FakeClock) -> Iterator[Served]:
    """serve's HTTP face with the agent route, and one enrolled agent "web-1"."""
    settings = Settings.model_validate({"server": {"max_body_bytes": LIMIT}})
    engine = sessions.kw["bind"]
    services = build_services(settings=settings, catalog=CATALOG, engine=engine, clock=clock)
    with transaction(sessions) as session:
        token = agents.enroll(session=session, name="web-1", by="alice", now=clock())
    asgi = build_asgi(
        app=None,
        services=services,
        engine=engine,
        executor=ThreadPoolExecutor(max_workers=1),
        extra_routes=agent_routes(catalog=CATALOG, sessions=services.sessions, clock=clock),
    )
    with running(asgi) as url:
        yield Served(url=url, token=token, sessions=sessions, clock=clock)


def changed_file(path: str = "/etc/ssh/sshd_config") -> dict[str, Any]:
    return {
        "type": "host.file",
        "id": path,
        "name": path,
        # An agent may claim anything about account and region: they are not even in the shape.
        "data": {
            "path": path,
            "change": "modified",
            "changed": ["sha256", "size"],
            "old": {"sha256": "a" * 64, "size": 10},
            "new": {"sha256": "b" * 64, "size": 12},
            "diff": None,
        },
        "severity": "critical",
    }


def results(served: Served, *resources: dict[str, Any], complete: bool = True) -> dict[str, Any]:
    return {
        "version": 1,
        "sent_at": served.clock().isoformat(),
        "collections": [
            {"types": ["host.file"], "complete": complete, "resources": list(resources)}
        ],
    }


def test_a_result_is_stored_as_the_agents_own_findings(served: Served) -> None:
    answer = served.post(results(served, changed_file()))
    assert answer.status_code == 200, answer.text
    assert answer.json()["agent"] == "web-1"
    finding = served.findings()["/etc/ssh/sshd_config"]
    assert (finding.account, finding.region) == ("web-1", "host")
    assert finding.rule_id == "host_file_modified"
    assert finding.severity == "critical"  # the path's severity, as the agent's config says

    # The next complete result without the change: the file is back, the finding resolved.
    served.clock.advance(minutes=10)
    answer = served.post(results(served))
    assert answer.status_code == 200, answer.text
    assert served.findings()["/etc/ssh/sshd_config"].status == "resolved"


@pytest.mark.parametrize(
    ("token", "status", "message"),
    [
        ("", 401, "no token"),
        ("cba_wrong-token", 401, "unknown token"),
    ],
)
def test_a_wrong_or_missing_token_stores_nothing(
    served: Served, token: str, status: int, message: str
) -> None:
    answer = served.post(results(served, changed_file()), token=token)
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert served.findings() == {}


def test_a_revoked_agent_is_refused(served: Served) -> None:
    with transaction(served.sessions) as session:
        agents.revoke(session=session, name="web-1", by="alice", now=served.clock())
    answer = served.post(results(served, changed_file()))
    assert answer.status_code == 403
    assert "revoked" in answer.json()["error"]
    assert served.findings() == {}
    with served.sessions() as session:
        actions = [a.action for a in session.scalars(select(AuditEntry))]
    assert actions == ["agent.enrolled", "agent.revoked"]


def test_a_replayed_or_stale_result_is_refused(served: Served) -> None:
    document = results(served, changed_file())
    assert served.post(document).status_code == 200
    again = served.post(document)
    assert again.status_code == 409
    assert "replay" in again.json()["error"]
    served.clock.advance(hours=2)
    stale = served.post(document)
    assert stale.status_code == 409
    assert "over an hour old" in stale.json()["error"]


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.update(version=2), "version"),
        (lambda d: d["collections"][0].update(types=["aws.ec2.instance"]), "types"),
        (lambda d: d["collections"][0]["resources"][0].update(account="other-host"), "account"),
        (lambda d: d["collections"][0]["resources"][0].update(severity="urgent"), "severity"),
        (lambda d: d["collections"][0].update(resources=[changed_file()] * 20_001), None),
        (lambda d: d.pop("sent_at"), "sent_at"),
    ],
)
def test_a_malformed_result_is_refused_naming_what_is_wrong(
    served: Served, mutate: Any, where: str | None
) -> None:
    document = results(served, changed_file())
    mutate(document)
    answer = served.post(document)
    assert answer.status_code in (400, 413)
    if answer.status_code == 400 and where:
        assert where in answer.json()["error"]
    assert served.findings() == {}


def test_a_body_that_is_not_json_or_too_big_is_refused(served: Served) -> None:
    assert served.post(None, raw=b"{not json").status_code == 400
    assert served.post(None, raw=b"[" + b"1," * LIMIT + b"1]").status_code == 413
    assert served.findings() == {}


def test_an_agent_gone_quiet_is_a_finding_until_it_reports(served: Served) -> None:
    assert served.post(results(served)).status_code == 200
    served.clock.advance(minutes=121)
    check_silent(catalog=CATALOG, sessions=served.sessions, clock=served.clock, after_minutes=120)
    silent = served.findings()["web-1"]
    assert (silent.rule_id, silent.status) == ("host_agent_silent", "open")
    assert silent.detail is not None
    assert silent.detail.startswith("no results for 121 minutes")
    assert served.post(results(served)).status_code == 200
    check_silent(catalog=CATALOG, sessions=served.sessions, clock=served.clock, after_minutes=120)
    assert served.findings()["web-1"].status == "resolved"


def test_agent_run_sends_this_hosts_file_changes(served: Served, tmp_path: Path) -> None:
    """`agent run --once` as its own process: its own baseline (its own database), a changed
    watched file, the finding stored by serve under the agent's name."""
    watched = tmp_path / "etc" / "app.conf"
    watched.parent.mkdir()
    watched.write_text("port 22\n")
    status = tmp_path / "dpkg-status"
    status.write_text("")
    config = tmp_path / "agent.yaml"
    config.write_text(
        json.dumps(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'agent.db'}"},
                "fim": {"host": "web-1", "watch": [str(tmp_path / "etc" / "*")]},
                "vulns": {"host": "web-1", "dpkg_status": str(status), "os_ecosystem": "Debian:12"},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
    assert run_cli("-c", str(config), "db", "upgrade", env=env).returncode == 0
    base = run_cli("-c", str(config), "fim", "baseline", "--user", "ops", env=env)
    assert base.returncode == 0, base.stderr
    watched.write_text("port 2222\n")

    served.clock.now = datetime.now(UTC)  # the agent stamps its result with the real time
    no_token = run_cli("-c", str(config), "agent", "run", "--server", served.url, "--once", env=env)
    assert no_token.returncode == 2
    assert "COMPLIANCEBOT_AGENT_TOKEN" in no_token.stderr

    sent = run_cli(
        "-c",
        str(config),
        "agent",
        "run",
        "--server",
        served.url,
        "--once",
        env={**env, "COMPLIANCEBOT_AGENT_TOKEN": served.token},
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "2 scans stored" in sent.stdout
    finding = served.findings()[str(watched)]
    assert (finding.account, finding.rule_id) == ("web-1", "host_file_modified")


def test_enroll_prints_the_token_once_and_list_shows_the_agent(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
    env["COMPLIANCEBOT_DATABASE__URL"] = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert run_cli("db", "upgrade", env=env).returncode == 0
    enrolled = run_cli("agent", "enroll", "db-7", "--user", "alice", env=env)
    assert enrolled.returncode == 0, enrolled.stderr
    token = enrolled.stdout.strip().splitlines()[-1]
    assert token.startswith("cba_")
    listed = run_cli("agent", "list", env=env)
    assert "db-7  enrolled  last result never" in listed.stdout
    assert token not in listed.stdout
    twice = run_cli("agent", "enroll", "db-7", "--user", "alice", env=env)
    assert twice.returncode == 2
    assert "revoke it first" in twice.stderr
    bad = run_cli("agent", "enroll", "../etc", "--user", "alice", env=env)
    assert bad.returncode == 2
    _ = timedelta
