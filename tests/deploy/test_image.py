"""What the container image installs and how it tells Docker it is healthy."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.fakes.loopback import LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([a-z0-9][a-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)
# Test and demo tooling that has no business in a production image.
DEV_ONLY = {"moto", "flask", "werkzeug", "pytest", "mypy", "hypothesis", "ruff", "websockets"}


def pins(lock: str) -> dict[str, str]:
    """name -> version of every pinned package in a lock file."""
    return dict(PIN.findall((ROOT / lock).read_text()))


def test_runtime_lock_has_no_dev_or_demo_packages() -> None:
    """The image's lock holds no test or demo tools, at the same versions the tests ran with."""
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {"slack-bolt", "sqlalchemy", "boto3", "jira", "py-trello"} <= runtime.keys()
    assert not DEV_ONLY & runtime.keys()
    assert DEV_ONLY - {"websockets"} <= dev.keys()
    assert {name: dev.get(name) for name in runtime} == runtime


def test_dockerfile_installs_the_runtime_lock_and_checks_health() -> None:
    """The image installs requirements.lock only; its HEALTHCHECK runs `compliancebot health`."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-r requirements.lock" in dockerfile
    assert "requirements-dev.lock" not in dockerfile
    assert 'CMD ["compliancebot", "health"]' in dockerfile


def test_compose_sets_no_empty_aws_profile() -> None:
    """The compose file leaves AWS_PROFILE alone (an empty profile made scans find nothing)."""
    assert "AWS_PROFILE" not in (ROOT / "docker-compose.yml").read_text()


class Ready:
    """A stand-in for a running `serve` whose /readyz answers `status`."""

    def __init__(self) -> None:
        self.status = 200
        self.server = LoopbackServer(self.handle)

    def handle(self, request: BaseHTTPRequestHandler, _method: str) -> None:
        code = self.status if request.path == "/readyz" else 404
        request.send_response(code)
        request.send_header("Content-Length", "0")
        request.end_headers()

    @property
    def port(self) -> int:
        return int(self.server.url.rsplit(":", 1)[1])


@pytest.fixture
def ready() -> Iterator[Ready]:
    """A loopback /readyz whose answer the test sets."""
    server = Ready()
    yield server
    server.server.stop()


def health(tmp_path: Path, *args: str, port: int) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "COMPLIANCEBOT_DATABASE__URL": f"sqlite:///{tmp_path / 'health.db'}",
        "COMPLIANCEBOT_SERVER__PORT": str(port),
        "COLUMNS": "200",
    }
    return run_cli(*args, env=env, cwd=tmp_path)


def test_health_fails_on_outdated_schema_and_when_serve_is_not_ready(
    tmp_path: Path, ready: Ready
) -> None:
    """`compliancebot health` fails before `db upgrade` and while /readyz is not ready."""
    before = health(tmp_path, "health", port=ready.port)
    assert before.returncode == 2
    assert "db upgrade" in before.stderr

    assert health(tmp_path, "db", "upgrade", port=ready.port).returncode == 0
    ok = health(tmp_path, "health", port=ready.port)
    assert ok.returncode == 0, ok.stderr
    assert "ready" in ok.stdout

    ready.status = 503
    down = health(tmp_path, "health", port=ready.port)
    assert down.returncode == 2
    assert "not ready" in down.stderr


def test_health_without_serve_checks_the_schema_only(tmp_path: Path, ready: Ready) -> None:
    """With nothing listening on server.port (a `scan` container) a current schema is healthy."""
    port = ready.port
    ready.server.stop()
    assert health(tmp_path, "db", "upgrade", port=port).returncode == 0
    result = health(tmp_path, "health", port=port)
    assert result.returncode == 0, result.stderr
    assert "serve is not listening" in result.stdout
