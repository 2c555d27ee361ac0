"""PDF framework reports (the `pdf` extra): the HTML report laid out as PDF, its text read back
and compared with the ledger; a clear line when the extra is missing; nothing half-written."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from pypdf import PdfReader
from pypdf.generic import DictionaryObject
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import Result

from bot.reports.model import STATUSES, FrameworkReport
from bot.reports.pdf import INSTALL_HINT, to_pdf
from bot.reports.render import days
from tests.bot import test_report as known
from tests.bot.test_report import (
    ENCRYPTED,
    HOSTILE_ID,
    HOSTILE_NAME,
    HOSTILE_REASON,
    SSH,
    hostile_report,
    report_at,
)
from tests.conftest import FakeClock
from tests.hostile import hostile_text

# The ledger with a known history, and the CLI over it, of the framework report tests.
history = known.history
cli = known.cli


def pdf_text(pdf: bytes) -> str:
    """Every page's text, whitespace runs made one space (cells wrap lines anywhere)."""
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def squeezed(text: str) -> str:
    """`text` without any whitespace: a long id wrapped in a narrow cell still matches."""
    return "".join(text.split())


def assert_inert(pdf: bytes) -> None:
    """A PDF that opens nothing and fetches nothing: no link, action, script, embedded file or
    raster image (the charts are vectors drawn from our SVG)."""
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    for page in reader.pages:
        assert "/Annots" not in page
        resources = page["/Resources"].get_object()
        assert isinstance(resources, DictionaryObject)
        xobjects = resources.get("/XObject")
        found = {} if xobjects is None else xobjects.get_object()
        assert isinstance(found, dict)
        subtypes = [x.get_object().get("/Subtype") for x in found.values()]
        assert "/Image" not in subtypes
    for marker in (b"/URI", b"/JavaScript", b"/JS", b"/Launch", b"/EmbeddedFile", b"/OpenAction"):
        assert marker not in pdf, marker


def test_the_pdf_report_carries_the_ledgers_numbers(
    history: sessionmaker[Session], clock: FakeClock
) -> None:
    """The PDF of the known history shows its posture score, its two open findings, the
    controls per status, each severity's line, every control and the failing resources and
    accepted risk (names from AWS as plain text), with the trend charts' captions."""
    report = report_at(history, clock(), clock())
    assert report.open_findings == 2  # vol-1 and the hostile volume, in this account

    pdf = to_pdf(report)

    assert_inert(pdf)
    text = pdf_text(pdf)
    assert f"{report.score:g}% posture score" in text
    assert "2 open findings" in text
    for status, label in STATUSES.items():
        assert f"{report.count(status)} {label}" in text
    for s in report.severities:
        cells = (s.open, s.remediated, days(s.mean_days_to_remediate))
        sla = "-" if s.sla_days is None else s.sla_days
        line = " ".join(str(v) for v in (s.severity, *cells, sla, s.breaches_open))
        assert f"{line} {s.breaches_resolved}" in text
    flat = squeezed(text)
    for control in report.controls:
        assert squeezed(control.control) in flat
    for wanted in (HOSTILE_ID, HOSTILE_NAME, HOSTILE_REASON, "vol-1", ENCRYPTED, SSH):
        assert squeezed(wanted) in flat, wanted
    assert "vol-9" not in flat  # another account's finding
    assert "Posture score over time (%)" in text
    assert "Open findings by severity over time" in text


def test_report_format_pdf_writes_the_same_numbers_as_the_json(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    """`report --format pdf -o r.pdf` writes one PDF (and says where) whose score, open
    findings and control counts are the JSON report's."""
    doc = json.loads(cli("report", "--framework", "hipaa", "--format", "json").stdout)

    result = cli("report", "--framework", "hipaa", "--format", "pdf", "-o", "r.pdf")

    assert "r.pdf" in " ".join(result.output.split())
    pdf = (tmp_path / "r.pdf").read_bytes()
    assert_inert(pdf)
    text = pdf_text(pdf)
    assert f"{doc['summary']['score']:g}% posture score" in text
    assert f"{doc['summary']['open_findings']} open findings" in text
    failing = sum(1 for c in doc["controls"] if c["status"] == "failing")
    assert f"{failing} failing" in text
    assert sorted(p.name for p in tmp_path.iterdir() if "r.pdf" in p.name) == ["r.pdf"]


def test_without_the_pdf_extra_one_line_says_how_to_install_it(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """xhtml2pdf not installed: exit 2, one line naming `pip install 'compliancebot[pdf]'`,
    and no file (the check comes before any work)."""
    monkeypatch.setitem(sys.modules, "xhtml2pdf", None)  # `import xhtml2pdf` fails
    before = sorted(p.name for p in tmp_path.rglob("*"))

    result = cli("report", "--framework", "hipaa", "--format", "pdf", "-o", "r.pdf", code=2)

    (line,) = result.output.strip().splitlines()
    assert line == f"error: {INSTALL_HINT}"
    assert "pip install 'compliancebot[pdf]'" in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("where", ["missing/dir/r.pdf", "afile/r.pdf"])
def test_an_unwritable_pdf_path_leaves_nothing(
    cli: Callable[..., Result], tmp_path: Path, where: str
) -> None:
    """-o in a missing folder or under a file: exit 2 naming the path, nothing written."""
    (tmp_path / "afile").write_text("not a directory")
    before = sorted(p.name for p in tmp_path.rglob("*"))

    result = cli("report", "--framework", "hipaa", "--format", "pdf", "-o", where, code=2)

    assert f"cannot write {where!r}" in " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_failed_rename_keeps_last_months_pdf(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at the rename: the PDF already there is untouched, no temporary left."""
    target = tmp_path / "r.pdf"
    target.write_bytes(b"%PDF- last month")

    def full(self: Path, other: Path) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", full)
    result = cli("report", "--framework", "hipaa", "--format", "pdf", "-o", str(target), code=2)
    assert "No space left on device" in result.output
    assert target.read_bytes() == b"%PDF- last month"
    assert sorted(p.name for p in tmp_path.iterdir() if "r.pdf" in p.name) == ["r.pdf"]


def test_markup_naming_a_local_file_or_a_url_is_printed_not_followed() -> None:
    """A resource name holding an <img> of a local file and a link: the PDF shows the
    characters and embeds, links and fetches nothing."""
    value = '<img src="file:///etc/passwd"><a href="https://evil.example/x">click</a>'
    pdf = to_pdf(hostile_report(value))
    assert_inert(pdf)
    assert squeezed('src="file:///etc/passwd"') in squeezed(pdf_text(pdf))
    assert b"root:" not in pdf


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=hostile_text)
def test_hostile_values_never_make_the_pdf_fail_or_act(value: str) -> None:
    """Whatever a name or reason holds (markup of every medium, control characters, long
    strings), the PDF is made and stays inert."""
    report: FrameworkReport = hostile_report(value)
    assert_inert(to_pdf(report))
