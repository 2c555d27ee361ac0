"""Framework reports: each control's state at an instant, the summary's numbers, the same in
Markdown, JSON, CSV and HTML, and names from files or AWS shown as text in each medium."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.report import framework_report
from bot.reports import RENDERERS, FrameworkReport, build_report
from bot.reports.model import (
    AcceptedRisk,
    ControlReport,
    FailingResource,
    SeverityStats,
    TaskEvidence,
)
from bot.reports.render import CSV_COLUMNS
from integrations.markup import one_line
from ledger import history as ledger_history
from ledger import services
from ledger import tasks as ledger_tasks
from ledger.db import transaction
from ledger.models import Finding, TaskOccurrence
from ledger.services import Observation
from rules.catalog import Catalog, Control, Framework, load_catalog
from rules.tasks import load_tasks
from tests.conftest import FakeClock
from tests.hostile import hostile_text
from tests.integrations.rendered import markdown_shown
from tests.ledger.helpers import ACCOUNT, REGION, obs

NOW = datetime(2026, 11, 1, tzinfo=UTC)
# The report's own markup: a heading per section, and bullet lists of controls in bold.
OURS = {
    "heading_open",
    "heading_close",
    "bullet_list_open",
    "bullet_list_close",
    "list_item_open",
    "list_item_close",
    "strong_open",
    "strong_close",
}


def catalog_of(name: str, version: str, control: str, title: str) -> Catalog:
    """A catalog holding one user-supplied framework, with no rule covering it."""
    framework = Framework(
        id="custom",
        name=name,
        version=version,
        controls={control: Control(title=title, section="S")},
        source="custom.yaml",
    )
    return Catalog(frameworks={"custom": framework})


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_text, version=hostile_text, control=hostile_text, title=hostile_text)
def test_a_hostile_framework_file_renders_as_text_in_the_report(
    sessions: sessionmaker[Session], name: str, version: str, control: str, title: str
) -> None:
    """Links, images, HTML or headings in a framework file's names show as their characters."""
    with sessions() as session:
        report = framework_report(
            session=session,
            catalog=catalog_of(name, version, control, title := "T" + title),
            framework="custom",
            now=NOW,
        )

    shown, kinds = markdown_shown(report)
    assert kinds <= OURS
    headings = [line for line in report.splitlines() if line.startswith("#")]
    assert len(headings) == 7  # the title and six sections, whatever the names hold
    for value in (name, version, control, title):
        assert one_line(value, 1000) in " ".join(shown.split())


def test_a_link_in_a_control_title_is_not_a_link(sessions: sessionmaker[Session]) -> None:
    """A control titled `[click](https://evil)` shows those characters, no link."""
    with sessions() as session:
        report = framework_report(
            session=session,
            catalog=catalog_of("Evil <b>", "1.0", "C-1", "[click](https://evil) ![x](y)"),
            framework="custom",
            now=NOW,
        )

    shown, kinds = markdown_shown(report)
    assert "link_open" not in kinds
    assert "image" not in kinds
    assert "[click](https://evil) ![x](y)" in shown
    assert "Evil <b> compliance report" in shown


# ---- framework reports from a ledger with a known history -------------------------------------

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday: access_review_weekly falls due
HOSTILE_ID = '=HYPERLINK("http://evil")<script>alert(1)</script>'
HOSTILE_NAME = "+cmd|' /C calc'!A0 <img src=x onerror=alert(1)> [x](http://evil)"
HOSTILE_REASON = "-2+3 <b>vendor</b> fix ## due"
ENCRYPTED = "164.312(a)(2)(iv)"  # cites ec2_volume_encrypted
SSH = "164.312(e)(1)"  # cites ec2_sg_ssh_open_to_world
FULL_CATALOG = load_catalog()
TASKS = load_tasks(frameworks=FULL_CATALOG.frameworks).tasks
SLA = {"critical": 7, "high": 30, "medium": 90, "low": 180}


def _scan(sessions: sessionmaker[Session], now: datetime, observations: list[Observation]) -> None:
    rules = {"ec2_volume_encrypted", "ec2_sg_ssh_open_to_world"}
    with transaction(sessions) as session:
        started = services.start_scan(session=session, now=now, trigger="schedule", scope={})
        counts = services.upsert_from_scan(
            session=session,
            scan=started,
            observations=observations,
            covered={(r, ACCOUNT, REGION) for r in rules},
            rule_ids=rules,
            accounts={ACCOUNT, OTHER},
            now=now,
        )
        services.finish_scan(
            session=session,
            scan=started,
            now=now,
            counts=counts,
            api_calls={"ec2": 1},
            resources=len(observations),
            errors=[],
        )


def _id(sessions: sessionmaker[Session], resource_id: str) -> int:
    with sessions() as session:
        found = session.scalar(select(Finding.id).where(Finding.resource_id == resource_id))
    assert found is not None
    return found


OTHER = "999988887777"


@pytest.fixture
def history(sessions: sessionmaker[Session], clock: FakeClock) -> sessionmaker[Session]:
    """Day 0: three volumes fail (one critical, with a hostile id and name), an SSH group is open,
    and a volume in another account fails; day 2: vol-2 resolved by hand; day 10: a scan
    again; day 12: the SSH group's risk accepted until day 40. Access reviews: the day-0 one
    done late, the day-7 one early, the day-14 one not at all. Now: day 20."""
    clock.now = START
    _scan(
        sessions,
        clock(),
        [
            obs("vol-1"),
            obs("vol-2"),
            Observation(
                rule_id="ec2_volume_encrypted",
                account=ACCOUNT,
                region=REGION,
                resource_type="aws.ec2.volume",
                resource_id=HOSTILE_ID,
                resource_name=HOSTILE_NAME,
                title="EBS volumes are encrypted at rest",
                severity="critical",
                verdict="fail",
            ),
            obs("sg-1", rule_id="ec2_sg_ssh_open_to_world"),
            obs("vol-9", account=OTHER),
        ],
    )
    task = TASKS["access_review_weekly"]
    with transaction(sessions) as session:
        ledger_tasks.materialize(
            session=session,
            tasks=[task],
            clock=ledger_tasks.CalendarClock(),
            now=clock(),
            horizon=timedelta(days=30),
        )
    due = {}
    with sessions() as session:
        for o in session.scalars(select(TaskOccurrence)):
            due[o.due_on] = o.id

    def done(day: date, at: datetime) -> None:
        with transaction(sessions) as session:
            ledger_tasks.complete(
                session=session,
                occurrence_id=due[day],
                task=task,
                user="UREVIEW",
                now=at,
                note="reviewed",
            )

    done(date(2026, 11, 2), START + timedelta(hours=1))  # an hour late
    clock.advance(days=2)
    with transaction(sessions) as session:
        services.resolve(session=session, finding_id=_id(sessions, "vol-2"), user="U1", now=clock())
    done(date(2026, 11, 9), START + timedelta(days=6))  # a day early
    clock.advance(days=8)
    _scan(
        sessions,
        clock(),
        [
            obs("vol-1"),
            obs(HOSTILE_ID, severity="critical"),
            obs("vol-2", verdict="pass"),
            obs("sg-1", rule_id="ec2_sg_ssh_open_to_world"),
            obs("vol-9", account=OTHER),
        ],
    )
    clock.advance(days=2)
    with transaction(sessions) as session:
        services.accept_risk(
            session=session,
            finding_id=_id(sessions, "sg-1"),
            user="UCISO",
            reason=HOSTILE_REASON,
            until=datetime.combine(date(2026, 12, 12), time.max, tzinfo=UTC),
            now=clock(),
        )
    clock.advance(days=8)
    return sessions


def report_at(
    sessions: sessionmaker[Session], at: datetime, now: datetime, account: str | None = ACCOUNT
) -> FrameworkReport:
    """The HIPAA report of the history at `at`."""
    with sessions() as session:
        return build_report(
            session=session,
            catalog=FULL_CATALOG,
            framework="hipaa",
            at=at,
            now=now,
            account=account,
            tasks=[TASKS["access_review_weekly"]],
            sla_days=SLA,
            trend_points=4,
            trend_from=START,
        )


def control_of(report: FrameworkReport, control: str) -> ControlReport:
    """One control of a report."""
    return next(c for c in report.controls if c.control == control)


def stats(report: FrameworkReport, severity: str) -> SeverityStats:
    """One severity's line of the summary."""
    return next(s for s in report.severities if s.severity == severity)


def test_the_report_now_shows_failing_accepted_and_remediated_findings(
    history: sessionmaker[Session], clock: FakeClock
) -> None:
    """Now: the encryption control fails on vol-1 and the hostile volume (past its 7-day SLA),
    the SSH controls are an accepted risk with who, why and until; vol-2 was fixed in 2 days;
    the access review shows its last completion (on time) and one review overdue."""
    report = report_at(history, clock(), clock())

    encrypted = control_of(report, ENCRYPTED)
    assert encrypted.status == "failing"
    assert [x.resource_id for x in encrypted.failing] == [HOSTILE_ID, "vol-1"]  # worst first
    assert [x.sla_breached for x in encrypted.failing] == [True, False]
    assert encrypted.failing_since == START
    ssh = control_of(report, SSH)
    assert ssh.status == "accepted"
    (accepted,) = ssh.accepted
    assert (accepted.accepted_by, accepted.reason) == ("UCISO", HOSTILE_REASON)
    assert accepted.until == datetime.combine(date(2026, 12, 12), time.max, tzinfo=UTC)

    assert (stats(report, "critical").open, stats(report, "high").open) == (1, 1)
    assert stats(report, "critical").breaches_open == 1
    assert stats(report, "high").remediated == 1
    assert stats(report, "high").mean_days_to_remediate == 2.0
    assert report.open_findings == 2  # vol-9 is another account's

    review = control_of(report, "164.308(a)(4)(ii)(B)").tasks[0]
    assert (review.completed_at, review.on_time, review.overdue) == (
        START + timedelta(days=6),
        True,
        1,
    )
    failing = report.count("failing")
    automated = failing + report.count("accepted") + report.count("passing")
    assert report.score == round(100 * (automated - failing) / automated, 1)
    assert report.trend[-1].score == report.score
    assert len(report.trend) == 4
    rules = {r.id for r in FULL_CATALOG.rules.values() if r.frameworks.get("hipaa")}
    for point in report.trend:  # each point is the state rebuilt at its instant
        with history() as session:
            found = ledger_history.findings_at(
                session=session, at=point.at, rule_ids=rules, account=ACCOUNT
            )
        then = Counter(f.severity for f in found if f.is_failing(point.at))
        assert dict(point.open_by_severity) == dict(then), point


def test_the_report_at_a_past_date_is_the_state_then(
    history: sessionmaker[Session], clock: FakeClock
) -> None:
    """As of day 5: vol-1, vol-2's fix and the hostile volume as they were (no SLA passed yet),
    the SSH group failing (not yet accepted), the access review last done late."""
    at = START + timedelta(days=5)
    report = report_at(history, at, clock())

    assert [x.resource_id for x in control_of(report, ENCRYPTED).failing] == [HOSTILE_ID, "vol-1"]
    assert control_of(report, SSH).status == "failing"
    assert stats(report, "critical").breaches_open == 0
    assert stats(report, "high").open == 2
    review = control_of(report, "164.308(a)(4)(ii)(B)").tasks[0]
    assert (review.completed_at, review.on_time, review.overdue) == (
        START + timedelta(hours=1),
        False,
        0,
    )
    assert report.last_scan is not None
    assert report.last_scan.finished_at == START


def test_the_markdown_json_csv_and_html_agree_with_the_ledger(
    history: sessionmaker[Session], clock: FakeClock
) -> None:
    """Every format carries the same numbers: the JSON document's structure, the CSV read back
    row by row, and the HTML parsed, its numbers compared with the report's."""
    report = report_at(history, clock(), clock())

    document = json.loads(RENDERERS["json"](report))
    assert_document(document)
    assert document["summary"]["open_findings"] == 2
    assert document["summary"]["score"] == report.score
    by_control = {c["control"]: c for c in document["controls"]}
    assert by_control[SSH]["accepted"][0]["reason"] == HOSTILE_REASON
    assert [x["resource_id"] for x in by_control[ENCRYPTED]["failing"]] == [HOSTILE_ID, "vol-1"]

    rows = list(csv.DictReader(io.StringIO(RENDERERS["csv"](report))))
    assert len({r["control"] for r in rows}) == len(report.controls)
    failing = [r for r in rows if r["row"] == "failing"]
    assert sorted((r["control"], r["resource_id"]) for r in failing) == sorted(
        (c.control, "'" + x.resource_id if x.resource_id[0] in "=+-@" else x.resource_id)
        for c in report.controls
        for x in c.failing
    )
    hostile = next(
        r for r in failing if r["control"] == ENCRYPTED and "HYPERLINK" in r["resource_id"]
    )
    assert hostile["resource_id"] == "'" + HOSTILE_ID
    assert hostile["resource_name"] == "'" + HOSTILE_NAME
    accepted = next(r for r in rows if r["row"] == "accepted" and r["control"] == SSH)
    assert accepted["accepted_reason"] == "'" + HOSTILE_REASON
    for row in rows:  # no cell a spreadsheet would run
        assert not any(v.startswith(("=", "+", "-", "@")) for v in row.values()), row

    page = parse_html(RENDERERS["html"](report))
    assert page.metrics["score"] == f"{report.score:g}%"
    assert page.metrics["open_findings"] == "2"
    for s in report.severities:
        assert page.metrics[f"{s.severity}.open"] == str(s.open)
        assert page.metrics[f"{s.severity}.breaches_open"] == str(s.breaches_open)
    assert page.statuses == {c.control: c.status for c in report.controls}
    assert page.tags <= SAFE_TAGS
    assert not page.urls
    assert HOSTILE_ID in page.text
    assert HOSTILE_NAME in page.text
    assert HOSTILE_REASON in page.text

    shown, kinds = markdown_shown(RENDERERS["md"](report))
    assert "link_open" not in kinds
    assert "image" not in kinds
    assert HOSTILE_NAME in " ".join(shown.split())
    assert HOSTILE_REASON in " ".join(shown.split())


def assert_document(doc: dict[str, Any]) -> None:
    """The JSON document has the shape docs/report-schema.md describes."""
    assert doc["schema_version"] == "1"
    assert set(doc) == {
        "schema_version",
        "framework",
        "at",
        "generated_at",
        "account",
        "last_scan",
        "summary",
        "trend",
        "controls",
    }
    assert set(doc["framework"]) == {"id", "name", "version"}
    assert set(doc["summary"]) == {"score", "controls", "open_findings", "severities"}
    assert set(doc["summary"]["controls"]) == {
        "failing",
        "accepted",
        "passing",
        "task",
        "not_covered",
    }
    for s in doc["summary"]["severities"]:
        assert set(s) == {
            "severity",
            "open",
            "remediated",
            "mean_days_to_remediate",
            "sla_days",
            "breaches_open",
            "breaches_resolved",
        }
    for c in doc["controls"]:
        assert set(c) == {
            "control",
            "title",
            "section",
            "status",
            "rules",
            "failing_rules",
            "failing_since",
            "failing",
            "accepted",
            "tasks",
        }
        assert c["status"] in doc["summary"]["controls"]
        for x in c["failing"]:
            assert isinstance(x["finding_id"], int)
            assert x["first_seen"].endswith("Z")
    for p in doc["trend"]:
        assert set(p) == {"at", "score", "failing_controls", "open_by_severity"}


SAFE_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "h1",
    "h2",
    "p",
    "div",
    "b",
    "time",
    "table",
    "tr",
    "th",
    "td",
    "details",
    "summary",
    "ul",
    "li",
    "code",
    "strong",
    "figure",
    "figcaption",
    "span",
    "svg",
    "line",
    "text",
    "polyline",
    "circle",
    "rect",
}


class Page(HTMLParser):
    """What a browser would make of the HTML report: tags, numbers, statuses, text, URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.metrics: dict[str, str] = {}
        self.statuses: dict[str, str] = {}
        self.urls: list[str] = []
        self.text = ""
        self._metric: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        values = dict(attrs)
        if "data-metric" in values:
            self._metric = values["data-metric"]
        if "data-control" in values:
            self.statuses[values["data-control"] or ""] = values.get("data-status") or ""
        for name, value in attrs:
            if name in ("href", "src", "xlink:href", "action") or "url(" in (value or ""):
                self.urls.append(value or "")
            assert not name.startswith("on"), (tag, name)

    def handle_data(self, data: str) -> None:
        self.text += data
        if self._metric is not None:
            self.metrics[self._metric] = self.metrics.get(self._metric, "") + data

    def handle_endtag(self, tag: str) -> None:
        self._metric = None


def parse_html(text: str) -> Page:
    """The page, parsed with the standard library's parser."""
    page = Page()
    page.feed(text)
    page.close()
    return page


# ---- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli(
    history: sessionmaker[Session],
    db_url: str,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Result]:
    """`compliancebot ARGS` over the history's database, the CLI's clock at day 20."""
    monkeypatch.setenv("COMPLIANCEBOT_DATABASE__URL", db_url)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("bot.cli.utcnow", clock)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, (result.output, result.exception)
        return result

    return run


def test_report_prints_markdown_json_and_csv_and_writes_html(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    """`report --framework hipaa` prints Markdown; --format json/csv print documents; html and
    -o write one file and say where."""
    md_text = cli("report", "--framework", "hipaa").stdout
    assert md_text.startswith("# HIPAA")
    assert "164.312(a)(2)(iv)" in md_text
    assert "vol-9" not in cli("report", "--framework", "hipaa", "--account", ACCOUNT).stdout
    assert "vol-9" in md_text  # every account without --account

    doc = json.loads(cli("report", "--framework", "hipaa", "--format", "json").stdout)
    assert_document(doc)
    assert len(doc["trend"]) == 12
    past = json.loads(
        cli("report", "--framework", "hipaa", "--format", "json", "--at", "2026-11-07").stdout
    )
    assert past["at"] == "2026-11-07T23:59:59.999999Z"
    ssh = next(c for c in past["controls"] if c["control"] == SSH)
    assert ssh["status"] == "failing"

    rows = list(
        csv.DictReader(io.StringIO(cli("report", "--framework", "hipaa", "-f", "csv").stdout))
    )
    assert {r["framework"] for r in rows} == {"hipaa"}

    target = tmp_path / "out" / "hipaa.html"
    target.parent.mkdir()
    result = cli("report", "--framework", "hipaa", "--format", "html", "-o", str(target))
    assert str(target) in " ".join(result.output.split())
    page = parse_html(target.read_text())
    assert page.statuses[SSH] == "accepted"
    assert sorted(p.name for p in target.parent.iterdir()) == ["hipaa.html"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--framework", "nope"], "unknown framework 'nope'; known: cis_aws, hipaa"),
        (["--framework", "hipaa", "--at", "2026-11-23"], "is in the future"),
        (["--framework", "hipaa", "--at", "2026-11-22T09:01Z"], "is in the future"),
        (["--framework", "hipaa", "--at", "2026-11-01"], "before the first scan (2026-11-02 09:00"),
        (["--framework", "hipaa", "--at", "yesterday"], "is not a date"),
        (["--framework", "hipaa", "--format", "html"], "name it with -o FILE"),
        (["--framework", "hipaa", "--format", "pdf"], "name it with -o FILE"),
        (["--framework", "hipaa", "-o", "missing/dir/r.md"], "cannot write 'missing/dir/r.md'"),
        (["--framework", "hipaa", "-o", "afile/r.md"], "cannot write 'afile/r.md'"),
    ],
)
def test_bad_input_is_one_error_naming_it_and_leaves_no_file(
    cli: Callable[..., Result], tmp_path: Path, args: list[str], says: str
) -> None:
    """An unknown framework, a date in the future or before the first scan, an HTML report
    without a file, PDF, or an output path that cannot be written: exit 2, a message naming
    the problem, and nothing written."""
    (tmp_path / "afile").write_text("not a directory")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = cli("report", *args, code=2)
    assert says in " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_failed_write_keeps_the_previous_report(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When writing fails midway, the file already there is untouched and no temporary file is
    left beside it."""
    target = tmp_path / "r.md"
    target.write_text("yesterday's report")

    def broken(self: Path, other: Path) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", broken)
    result = cli("report", "--framework", "hipaa", "-o", str(target), code=2)
    assert "No space left on device" in result.output
    assert target.read_text() == "yesterday's report"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".r.md")) == []


# ---- hostile values in every medium ----------------------------------------------------------


def hostile_report(value: str) -> FrameworkReport:
    """A report whose every name, id, reason and title from data is `value`."""
    at = START
    failing = FailingResource(
        finding_id=1,
        rule_id=value,
        severity="high",
        account=value,
        region=value,
        resource_type=value,
        resource_id=value,
        resource_name=value,
        status="open",
        first_seen=at,
        open_since=at,
        sla_breached=True,
    )
    accepted = AcceptedRisk(
        finding_id=2,
        rule_id=value,
        severity="low",
        account=value,
        region=value,
        resource_id=value,
        resource_name=value,
        accepted_by=value,
        reason=value,
        until=at,
    )
    task = TaskEvidence(value, value, at, value, at.date(), False, 1)
    control = ControlReport(
        control=value,
        title=value,
        section=value,
        status="failing",
        rules=(value,),
        failing_rules=(value,),
        failing_since=at,
        failing=(failing,),
        accepted=(accepted,),
        tasks=(task,),
    )
    return FrameworkReport(
        framework="hipaa",
        name=value,
        version=value,
        at=at,
        generated_at=at,
        account=value,
        last_scan=None,
        score=50.0,
        controls=(control,),
        severities=(),
        trend=(),
    )


@settings(max_examples=100)
@given(value=hostile_text)
def test_hostile_values_are_text_in_every_format(value: str) -> None:
    """A resource name, reason or title holding markup, formulas or control characters shows as
    its characters: no tag, attribute, script or URL in the HTML, no formula in the CSV, no
    link or HTML in the Markdown; the JSON carries it unchanged."""
    report = hostile_report(value)

    page = parse_html(RENDERERS["html"](report))
    assert page.tags <= SAFE_TAGS
    assert not page.urls
    assert set(page.statuses) == {value}

    rows = list(csv.reader(io.StringIO(RENDERERS["csv"](report), newline="")))
    for cells in rows[1:]:
        assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells), cells
    assert rows[1][CSV_COLUMNS.index("resource_id")] in (value, "'" + value)

    shown, kinds = markdown_shown(RENDERERS["md"](report))
    assert kinds <= OURS
    assert one_line(value, 1000) in " ".join(shown.split())

    doc = json.loads(RENDERERS["json"](report))
    assert doc["controls"][0]["failing"][0]["resource_name"] == value
