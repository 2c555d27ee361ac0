"""The command line with hostile data in the ledger and in the config, and forged ids."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bot.cli import app, main
from bot.output import terminal_safe
from ledger import db
from ledger.models import MAX_ID, Finding
from tests.hostile import hostile_text, long_hostile_text
from tests.ledger.helpers import obs, scan

ACROSS_EXAMPLES = settings(
    max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sessionmaker[Session]]:
    """A migrated SQLite ledger the CLI is pointed at, on a terminal too wide to wrap."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("COMPLIANCEBOT_DATABASE__URL", url)
    monkeypatch.setenv("COLUMNS", "20000")
    monkeypatch.chdir(tmp_path)
    engine = db.make_engine(url)
    db.upgrade(engine)
    yield db.session_factory(engine)
    engine.dispose()


def words(text: str) -> str:
    return " ".join(text.split())


def shown(value: str) -> list[str]:
    """What a terminal should show of a value, line by line, as words."""
    return [words(line) for line in terminal_safe(value).split("\n") if line.strip()]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def record(sessions: sessionmaker[Session], clock: Clock, title: str, resource: str) -> int:
    """A finding with an attacker-chosen title and resource id; its id."""
    scan(sessions, clock, [obs(resource, title=title)])
    with sessions() as session:
        found = session.scalar(
            select(Finding).where(Finding.resource_id == resource).order_by(Finding.id.desc())
        )
        assert found is not None
        return found.id


@ACROSS_EXAMPLES
@given(title=hostile_text, resource=long_hostile_text)
def test_findings_show_and_list_print_hostile_values_literally(
    ledger: sessionmaker[Session], title: str, resource: str
) -> None:
    """`[/]`, `[bold`, `:emoji:` or an ESC sequence in a title or resource prints as is."""
    finding_id = record(ledger, Clock(), title, resource[:1000])
    runner = CliRunner()

    show = runner.invoke(app, ["findings", "show", str(finding_id)], catch_exceptions=False)
    listed = runner.invoke(app, ["findings", "list"], catch_exceptions=False)

    assert show.exit_code == 0, show.output
    assert listed.exit_code == 0, listed.output
    for line in shown(title) + shown(resource[:1000]):
        assert line in words(show.stdout)
    for line in shown(resource[:1000]):
        assert line in words(listed.stdout)
    for out in (show.stdout, listed.stdout):
        assert "\x1b" not in out  # no colour on a pipe, and no escape from the data either


def test_markup_in_a_title_is_not_styled_or_linked(ledger: sessionmaker[Session]) -> None:
    """A title `[link=https://evil]x[/link] [/]` prints those characters, not a link."""
    title = "[link=https://evil]x[/link] [/] :red_circle: \x1b]0;owned\x07"
    finding_id = record(ledger, Clock(), title, "vol-[bold]1")
    show = CliRunner().invoke(app, ["findings", "show", str(finding_id)], catch_exceptions=False)

    assert show.exit_code == 0, show.output
    assert "[link=https://evil]x[/link] [/] :red_circle: \\x1b]0;owned\\x07" in show.stdout
    assert "vol-[bold]1" in show.stdout


@pytest.mark.usefixtures("moto_world")
def test_a_scan_table_prints_a_markup_tag_literally(ledger: sessionmaker[Session]) -> None:
    """An EBS volume tagged Name=`[/][bold]x` is listed by `scan` under that very name."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    ec2.create_tags(Resources=[volume], Tags=[{"Key": "Name", "Value": "[/][bold]x <!channel>"}])

    result = CliRunner().invoke(
        app, ["scan", "--rule", "ec2_volume_encrypted"], catch_exceptions=False
    )

    assert result.exit_code == 0, result.output
    assert "[/][bold]x <!channel>" in result.stdout


def run_main(*args: str) -> tuple[int, str]:
    """The installed entry point in process: (exit code, what it wrote to stderr)."""
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(stderr):
        patch.setattr(sys, "argv", ["compliancebot", *args])
        with pytest.raises(SystemExit) as exited:
            main()
    return int(exited.value.code or 0), stderr.getvalue()


@settings(max_examples=30)
@given(value=hostile_text)
def test_config_check_quotes_a_hostile_value_in_one_clear_error(value: str) -> None:
    """A config value like `[/]` is quoted back in the error, exit 2, never a traceback."""
    with pytest.MonkeyPatch.context() as patch, contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(_tmpdir()))
        (folder / "compliancebot.yaml").write_text(
            yaml.safe_dump({"slack": {"channel": "C" + value}})
        )
        patch.chdir(folder)
        patch.setenv("COLUMNS", "20000")
        code, stderr = run_main("config", "check")

    assert code == 2
    assert stderr.startswith("error: ")
    assert "slack.channel" in stderr


def test_config_check_shows_a_markup_value_literally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`slack.channel: "[/]<!channel>"` is named in the error as written."""
    (tmp_path / "compliancebot.yaml").write_text('slack:\n  channel: "[/]<!channel>"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "20000")

    code, stderr = run_main("config", "check")

    assert code == 2
    assert "slack.channel: '[/]<!channel>' is not a Slack channel ID" in stderr


@contextlib.contextmanager
def _tmpdir() -> Iterator[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        yield folder


# ---- ids -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["findings", "show", str(10**30)],
        ["findings", "show", str(MAX_ID + 1)],
        ["findings", "claim", str(10**30), "--user", "alice"],
        ["findings", "resolve", "0", "--user", "alice"],
        ["findings", "accept", "1e3", "--user", "a", "--reason", "r", "--until", "2027-01-01"],
        ["findings", "reopen", "9" * 5000, "--user", "alice"],
        ["tasks", "done", str(10**30), "--by", "alice"],
    ],
)
def test_an_id_past_the_database_range_is_a_usage_error(
    ledger: sessionmaker[Session], args: list[str]
) -> None:
    """`findings show 10^30` (and every id argument) says what an id is and exits 2."""
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"is not an id: a whole number from 1 to {MAX_ID}" in result.output
    assert result.output.count("\n") <= 5  # usage, hint, and the error in its box


def test_the_largest_id_is_looked_up_normally(ledger: sessionmaker[Session]) -> None:
    """The top of the range is a normal "no such finding", exit 2 with one error line."""
    result = CliRunner().invoke(app, ["findings", "show", str(MAX_ID)])

    assert result.exit_code != 0
    assert "no finding with id" in str(result.exception)
