"""structlog set-up: console lines for people, JSON lines for log pipelines; never secrets.

Every line goes through one stdlib handler and structlog's ProcessorFormatter: ours, and those
of uvicorn, APScheduler, Bolt, SQLAlchemy and the rest, so JSON mode is JSON on every line.
"""

from __future__ import annotations

import contextlib
import logging
import sys

import structlog

# Libraries whose info/debug lines are noise or carry payloads (API request and response
# bodies: people's text, Slack's answers): warnings and errors only, at any configured level.
QUIET = (
    "botocore",
    "boto3",
    "urllib3",
    "alembic",
    "slack_sdk",
    "slack_bolt",
    "httpx",  # its INFO line is the whole URL, query string included
    "httpcore",
)


class _CurrentStderr:
    """Whatever sys.stderr is at write time (test runners and daemons swap it)."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (ValueError, OSError):  # closed or broken stderr: a log line never stops work
            return 0

    def flush(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            sys.stderr.flush()


def configure(level: str = "info", fmt: str = "console") -> None:
    """Route structlog and stdlib logging to stderr at `level`, rendered the same way."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[structlog.typing.Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta
    ]
    if fmt == "json":
        # A traceback becomes the "exception" string of the same JSON object, not extra lines.
        rendering += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        rendering.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=rendering)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)  # warnings.warn() lines go through the same handler
    for name in QUIET:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    # uvicorn's access line prints the query string (?token=, ?secret=): never let it out.
    # bot.middleware.AccessLog logs each request without it; uvicorn skips its access line
    # when this logger has no handler to reach.
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
