"""The compliancebot command line as its own process, as an operator or a container runs it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def cli_command(*args: str) -> list[str]:
    """The argv running `compliancebot ARGS` with this interpreter (no installed script needed)."""
    return [sys.executable, "-c", "from bot.cli import main; main()", *args]


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None, **options: Any
) -> subprocess.CompletedProcess[str]:
    """Run one command to its end, its output captured as text (at most two minutes)."""
    return subprocess.run(
        cli_command(*args),
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
        timeout=120,
        **options,
    )


def wait_until_listening(port: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Block until the server process accepts connections (it must bind first), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"serve exited with {proc.returncode}: {output}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # polling for the bind, not waiting for time to pass
    raise AssertionError("serve did not start listening")
