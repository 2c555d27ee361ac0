"""Capture what `serve`'s logging writes to stderr, configured as an operator configures it."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import structlog

from bot.logging import QUIET, configure


class Captured:
    """The stderr text written while capturing."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[str]:
        """Every non-empty line."""
        return [line for line in self.text.splitlines() if line.strip()]

    def records(self) -> list[dict[str, Any]]:
        """Every line parsed as JSON (fails the test on a line that is not a JSON object)."""
        out = []
        for line in self.lines():
            record = json.loads(line)
            assert isinstance(record, dict), line
            out.append(record)
        return out


@contextlib.contextmanager
def captured_logs(level: str = "debug", fmt: str = "json") -> Iterator[Captured]:
    """bot.logging.configure(level, fmt) with stderr captured; the previous set-up restored."""
    root = logging.getLogger()
    access = logging.getLogger("uvicorn.access")
    saved_root = (list(root.handlers), root.level)
    saved_access = (list(access.handlers), access.propagate)
    saved_levels = {name: logging.getLogger(name).level for name in QUIET}
    captured = Captured()
    try:
        with contextlib.redirect_stderr(captured.stream):
            configure(level, fmt)
            yield captured
    finally:
        root.handlers[:] = saved_root[0]
        root.setLevel(saved_root[1])
        access.handlers[:] = saved_access[0]
        access.propagate = saved_access[1]
        for name, value in saved_levels.items():
            logging.getLogger(name).setLevel(value)
        logging.captureWarnings(False)
        structlog.reset_defaults()
