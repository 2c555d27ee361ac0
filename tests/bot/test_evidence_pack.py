"""Evidence packs: the zip an auditor is handed holds the report, the task completions with their
evidence files, the finding history and the audit trail of the period, each listed in a signed
manifest with its SHA-256; `evidence verify` names any file changed, removed or added, a wrong
or missing key, and refuses hostile zips without extracting them."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import struct
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.evidence import verify_pack
from ledger import services
from ledger import tasks as ledger_tasks
from ledger.db import transaction
from ledger.models import Finding, TaskOccurrence
from rules.catalog import load_catalog
from rules.tasks import load_tasks
from tests.conftest import FakeClock
from tests.ledger.helpers import obs, scan

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday: access_review_weekly falls due
KEY = "k" * 40
OTHER_KEY = "o" * 40
EVIDENCE = b"%PDF-1.4 access review signed by the CISO\n" * 50
TASKS = load_tasks(frameworks=load_catalog().frameworks).tasks


@pytest.fixture
def ledger(
    sessions: sessionmaker[Session], clock: FakeClock, tmp_path: Path
) -> sessionmaker[Session]:
    """Day 0: vol-1, vol-2 and an open SSH group fail; the day-0 access review is done an hour
    late with a file kept in the evidence folder; day 2: vol-2 resolved by hand; day 10: a scan
    again; now: day 20."""
    clock.now = START
    rules = {"ec2_volume_encrypted", "ec2_sg_ssh_open_to_world"}
    scan(
        sessions,
        clock,
        [obs("vol-1"), obs("vol-2"), obs("sg-1", rule_id="ec2_sg_ssh_open_to_world")],
        rule_ids=rules,
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
    with sessions() as session:
        first = session.scalars(select(TaskOccurrence).order_by(TaskOccurrence.due_at)).first()
        assert first is not None
        occurrence = first.id
    kept = ledger_tasks.store_evidence_file(tmp_path / "evidence", "review.pdf", [EVIDENCE])
    with transaction(sessions) as session:
        ledger_tasks.complete(
            session=session,
            occurrence_id=occurrence,
            task=task,
            user="UREVIEW",
            now=START + timedelta(hours=1),
            note="reviewed",
            file=kept,
        )
    clock.advance(days=2)
    with sessions() as session:
        vol2 = session.scalar(select(Finding.id).where(Finding.resource_id == "vol-2"))
    assert vol2 is not None
    with transaction(sessions) as session:
        services.resolve(session=session, finding_id=vol2, user="U1", now=clock())
    clock.advance(days=8)
    scan(
        sessions,
        clock,
        [
            obs("vol-1"),
            obs("vol-2", verdict="pass"),
            obs("sg-1", rule_id="ec2_sg_ssh_open_to_world"),
        ],
        rule_ids=rules,
    )
    clock.advance(days=10)
    return sessions


@pytest.fixture
def cli(
    ledger: sessionmaker[Session],
    db_url: str,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Result]:
    """`compliancebot ARGS` over the ledger's database, the calendar on, the CLI's clock at
    day 20, the HMAC key set (a test may unset or change it)."""
    monkeypatch.setenv("COMPLIANCEBOT_DATABASE__URL", db_url)
    monkeypatch.setenv("COMPLIANCEBOT_CALENDAR__ENABLED", "true")
    monkeypatch.setenv("COMPLIANCEBOT_CALENDAR__EVIDENCE_DIR", str(tmp_path / "evidence"))
    monkeypatch.setenv("COMPLIANCEBOT_AUDIT__HMAC_KEY", KEY)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("bot.cli.utcnow", clock)

    def run(*args: str, code: int = 0) -> Result:
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == code, (result.output, result.exception)
        return result

    return run


PERIOD = ("--framework", "hipaa", "--from", "2026-11-01", "--to", "2026-11-21")


@pytest.fixture
def pack(cli: Callable[..., Result], tmp_path: Path) -> Path:
    """A pack of HIPAA for November 1-21, signed."""
    target = tmp_path / "pack.zip"
    result = cli("evidence", "pack", *PERIOD, "-o", str(target))
    assert "signed (key id" in result.output
    return target


def members(path: Path) -> dict[str, bytes]:
    """Every member of a zip, by name (test packs are small)."""
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def rewrite(path: Path, change: Callable[[dict[str, bytes]], dict[str, bytes]]) -> None:
    """Write the zip again with its members changed by `change` (CRCs recomputed)."""
    content = change(members(path))
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in content.items():
            archive.writestr(name, data)


def one_line_each(result: Result) -> list[str]:
    """The problem lines of a failed verify."""
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def test_a_pack_holds_the_report_completions_history_and_audit_trail(pack: Path) -> None:
    """Unzipped: the manifest lists every file with its right SHA-256 and size, the framework,
    the period, when and by which version it was made; the report shows the failing volume,
    the completion carries its evidence file byte for byte, the finding history has the
    period's events, and the audit lines chain."""
    files = members(pack)
    manifest = json.loads(files["manifest.json"])
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(files) - {"manifest.json", "manifest.sig"}
    for name, entry in listed.items():
        assert entry["sha256"] == hashlib.sha256(files[name]).hexdigest(), name
        assert entry["size"] == len(files[name])
    assert manifest["framework"]["id"] == "hipaa"
    assert manifest["period"] == {
        "from": "2026-11-01T00:00:00Z",
        "to": "2026-11-21T23:59:59.999999Z",
    }
    assert manifest["generated_at"] == "2026-11-22T09:00:00Z"
    assert manifest["tool"]["name"] == "compliancebot"
    assert manifest["tool"]["version"]
    assert manifest["signature"]["algorithm"] == "HMAC-SHA256"
    assert manifest["missing_evidence"] == []

    html = files["report/hipaa.html"].decode()
    assert "HIPAA" in html
    assert "vol-1" in html
    assert "vol-2" not in html  # resolved on day 2, before the report's instant
    rows = list(csv.DictReader(io.StringIO(files["report/hipaa.csv"].decode())))
    assert {r["resource_id"] for r in rows if r["row"] == "failing"} >= {"vol-1", "sg-1"}

    (done,) = json.loads(files["tasks/completions.json"])
    assert (done["task_id"], done["completed_by"], done["on_time"]) == (
        "access_review_weekly",
        "UREVIEW",
        False,
    )
    evidence = done["evidence_file"]
    assert evidence["matches_record"] is True
    assert files[evidence["path"]] == EVIDENCE
    assert evidence["sha256"] == hashlib.sha256(EVIDENCE).hexdigest()

    events = list(csv.DictReader(io.StringIO(files["findings/events.csv"].decode())))
    kinds = [(e["resource_id"], e["kind"]) for e in events]
    assert ("vol-2", "resolved") in kinds
    assert ("vol-1", "created") in kinds

    lines = [json.loads(line) for line in files["audit/audit.jsonl"].decode().splitlines()]
    assert any(entry["action"] == "task.completed" for entry in lines)
    for before, after in itertools.pairwise(lines):
        assert after["prev_hash"] == before["hash"]


def test_verify_passes_on_a_fresh_pack(cli: Callable[..., Result], pack: Path) -> None:
    """`evidence verify` on the pack as made: exit 0 and one line saying the files match and
    the signature is good."""
    result = cli("evidence", "verify", str(pack))
    (line,) = result.output.splitlines()
    assert "6 files match the manifest" in line
    assert "signature good" in line


def test_one_changed_byte_is_named(cli: Callable[..., Result], pack: Path) -> None:
    """One byte of the evidence file changed (the zip rewritten whole): verify fails naming
    that file and no other."""

    def flip(files: dict[str, bytes]) -> dict[str, bytes]:
        name = next(n for n in files if n.startswith("evidence/"))
        data = bytearray(files[name])
        data[10] ^= 1
        files[name] = bytes(data)
        return files

    rewrite(pack, flip)
    result = cli("evidence", "verify", str(pack), code=1)
    (line,) = one_line_each(result)
    assert line.startswith("error: evidence/")
    assert "review.pdf: changed" in line


def test_a_removed_and_an_added_file_are_named(cli: Callable[..., Result], pack: Path) -> None:
    """The audit trail taken out and a file slipped in: verify names both."""

    def swap(files: dict[str, bytes]) -> dict[str, bytes]:
        del files["audit/audit.jsonl"]
        files["audit/extra.jsonl"] = b"{}\n"
        return files

    rewrite(pack, swap)
    lines = one_line_each(cli("evidence", "verify", str(pack), code=1))
    assert lines == [
        "error: audit/audit.jsonl: missing: listed in the manifest, not in the pack",
        "error: audit/extra.jsonl: extra: in the pack, not in the manifest",
    ]


def test_a_wrong_or_missing_key_is_said(
    cli: Callable[..., Result], pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verified with another key: the signature is refused naming both key ids; without a key:
    it says the pack is signed and which variable to set; exit 1 each time."""
    monkeypatch.setenv("COMPLIANCEBOT_AUDIT__HMAC_KEY", OTHER_KEY)
    (line,) = one_line_each(cli("evidence", "verify", str(pack), code=1))
    assert "manifest.sig: signed with another key" in line
    monkeypatch.delenv("COMPLIANCEBOT_AUDIT__HMAC_KEY")
    (line,) = one_line_each(cli("evidence", "verify", str(pack), code=1))
    assert "the pack is signed" in line
    assert "COMPLIANCEBOT_AUDIT__HMAC_KEY" in line


def test_a_manifest_rewritten_to_match_a_changed_file_breaks_the_signature(
    cli: Callable[..., Result], pack: Path
) -> None:
    """Someone changes a file and fixes its hash in the manifest: the hashes agree, the
    signature does not."""

    def forge(files: dict[str, bytes]) -> dict[str, bytes]:
        files["findings/events.csv"] += b"999,2026-11-03T00:00:00Z\r\n"
        manifest = json.loads(files["manifest.json"])
        for entry in manifest["files"]:
            if entry["path"] == "findings/events.csv":
                entry["sha256"] = hashlib.sha256(files["findings/events.csv"]).hexdigest()
                entry["size"] = len(files["findings/events.csv"])
        files["manifest.json"] = json.dumps(manifest).encode()
        return files

    rewrite(pack, forge)
    (line,) = one_line_each(cli("evidence", "verify", str(pack), code=1))
    assert "manifest.json was changed after signing" in line


def test_an_unsigned_pack_verifies_without_a_key_and_fails_with_one(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without audit.hmac_key the pack is unsigned and verify says so (exit 0); with the key
    set, an unsigned pack is a problem (it could have been re-made without it)."""
    monkeypatch.delenv("COMPLIANCEBOT_AUDIT__HMAC_KEY")
    target = tmp_path / "unsigned.zip"
    assert "unsigned" in cli("evidence", "pack", *PERIOD, "-o", str(target)).output
    assert "manifest.sig" not in members(target)
    assert "unsigned" in cli("evidence", "verify", str(target)).output
    monkeypatch.setenv("COMPLIANCEBOT_AUDIT__HMAC_KEY", KEY)
    (line,) = one_line_each(cli("evidence", "verify", str(target), code=1))
    assert "manifest.sig: missing" in line


def hostile_zip(path: Path, names: list[str]) -> Path:
    """A zip with these member names (zipfile writes them as given; only extracting cleans)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, b"x")
    return path


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("../../etc/cron.d/x", "a '..' in its path"),
        ("/etc/passwd", "an absolute path"),
        ("C:/windows/x", "an absolute path"),
        ("a\\..\\b", "a backslash"),
    ],
)
def test_a_path_leaving_the_pack_is_refused(
    cli: Callable[..., Result], tmp_path: Path, name: str, says: str
) -> None:
    """A member named ../ or / or C: is refused by name, nothing is written anywhere."""
    target = hostile_zip(tmp_path / "evil.zip", [name, "manifest.json"])
    # Other tests' directories sit beside this one: only what appears during this one counts.
    before = set(tmp_path.parent.rglob("*"))
    (line,) = one_line_each(cli("evidence", "verify", str(target), code=1))
    assert says in line
    written = {p.name for p in set(tmp_path.parent.rglob("*")) - before}
    assert not written & {"etc", "cron.d", "passwd", "windows", "C:", "a\\..\\b"}


def test_a_huge_declared_size_and_too_many_entries_are_refused_unread(tmp_path: Path) -> None:
    """A member declaring more bytes than a pack may hold, or more entries than allowed, is
    refused from the zip's directory alone, before any content is inflated."""
    target = tmp_path / "bomb.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", b"{}")
        archive.writestr("evidence/1/bomb.bin", b"\0" * 1000)
    data = bytearray(target.read_bytes())
    # The central directory's uncompressed size of the second member: 4 GB.
    central = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 0xFFFF_FFF0)
    target.write_bytes(bytes(data))
    result = verify_pack(target, key=None, max_member_bytes=1024 * 1024)
    (line,) = result.problems
    assert line.startswith("evidence/1/bomb.bin: refused: declares 4294967280 bytes")

    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as archive:
        for i in range(11):
            archive.writestr(f"f{i}", b"")
    (line,) = verify_pack(many, key=None, max_entries=10).problems
    assert "refused: 11 entries, more than the 10 a pack holds" in line


def test_a_file_that_is_not_a_zip_is_one_line(cli: Callable[..., Result], tmp_path: Path) -> None:
    """Not a zip: exit 1 and one line; no such file: exit 2 naming it."""
    (tmp_path / "notes.zip").write_text("hello")
    (line,) = one_line_each(cli("evidence", "verify", "notes.zip", code=1))
    assert "not a zip archive" in line
    result = cli("evidence", "verify", "nowhere.zip", code=2)
    assert result.output.strip() == "error: no such file: 'nowhere.zip'"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["--framework", "nope", "--from", "2026-11-01", "--to", "2026-11-02"],
            "unknown framework 'nope'; known: cis_aws, hipaa",
        ),
        (
            ["--framework", "hipaa", "--from", "2026-11-10", "--to", "2026-11-02"],
            "--from 2026-11-10 is after --to 2026-11-02",
        ),
        (
            ["--framework", "hipaa", "--from", "2026-11-10", "--to", "2026-11-23"],
            "--to 2026-11-23 is in the future",
        ),
        (
            ["--framework", "hipaa", "--from", "2026-10-01", "--to", "2026-11-01"],
            "--to 2026-11-01: no scan had finished by then",
        ),
        (["--framework", "hipaa", "--from", "2026-11-01", "--to", "11/02"], "is not a date"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_file(
    cli: Callable[..., Result], tmp_path: Path, args: list[str], says: str
) -> None:
    """An unknown framework (the known ones named), --from after --to, a day in the future, a
    period before any scan: exit 2, the problem named, no file left."""
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = cli("evidence", "pack", *args, "-o", "p.zip", code=2)
    assert says in " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("where", ["missing/dir/p.zip", "afile/p.zip"])
def test_an_unwritable_output_is_one_line_and_no_partial_file(
    cli: Callable[..., Result], tmp_path: Path, where: str
) -> None:
    """-o in a folder that does not exist, or under a file: one line naming it, exit 2."""
    (tmp_path / "afile").write_text("not a directory")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = cli("evidence", "pack", *PERIOD, "-o", where, code=2)
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: -o: cannot write '{where}'")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_failure_midway_leaves_the_previous_pack(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the rename fails (a full disk), the pack already there is untouched and no
    temporary file is left."""
    target = tmp_path / "p.zip"
    target.write_bytes(b"last month's pack")

    def broken(self: Path, other: Path) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", broken)
    result = cli("evidence", "pack", *PERIOD, "-o", str(target), code=2)
    assert "No space left on device" in result.output
    assert target.read_bytes() == b"last month's pack"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".p.zip")] == []


@pytest.fixture
def s3_bucket(moto_world: None) -> Any:
    """An S3 bucket in the simulated account, holding one evidence file."""
    import boto3

    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="acme-evidence")
    return client


def test_evidence_in_s3_is_copied_and_an_unreachable_one_is_listed_missing(
    cli: Callable[..., Result],
    ledger: sessionmaker[Session],
    s3_bucket: Any,
    tmp_path: Path,
) -> None:
    """A completion whose file is in S3 is copied into the pack; one whose object is gone, and
    one whose recorded path lies outside the evidence folder (a row edited to point at any file
    the bot can read), are listed in the manifest as missing with the reason; verify passes."""
    kept = ledger_tasks.store_evidence_s3(s3_bucket, "acme-evidence", "c", "scan.png", [b"png"])
    secret = tmp_path / "secret.txt"
    secret.write_text("not evidence")
    with transaction(ledger) as session:
        task = TASKS["access_review_weekly"]
        todo = list(
            session.scalars(
                select(TaskOccurrence)
                .where(TaskOccurrence.status != "done")
                .order_by(TaskOccurrence.due_at)
            )
        )[:3]
        for occurrence, location in zip(
            todo,
            [kept.location, "s3://acme-evidence/c/gone/x.png", str(secret)],
            strict=True,
        ):
            ledger_tasks.complete(
                session=session,
                occurrence_id=occurrence.id,
                task=task,
                user="U2",
                now=START + timedelta(days=3),
                note="done",
            )
            session.execute(
                update(TaskOccurrence)
                .where(TaskOccurrence.id == occurrence.id)
                .values(evidence_file=location, evidence_sha256=kept.sha256)
            )
    target = tmp_path / "p.zip"
    result = cli("evidence", "pack", *PERIOD, "-o", str(target))
    assert "4 task completions (2 evidence files, 2 with a problem)" in " ".join(
        result.output.split()
    )
    files = members(target)
    manifest = json.loads(files["manifest.json"])
    reasons = {m["location"]: m["reason"] for m in manifest["missing_evidence"]}
    assert set(reasons) == {"s3://acme-evidence/c/gone/x.png", str(secret)}
    assert "could not be fetched from S3" in reasons["s3://acme-evidence/c/gone/x.png"]
    assert "outside calendar.evidence_dir" in reasons[str(secret)]
    copied = [n for n in files if n.endswith("scan.png")]
    assert [files[n] for n in copied] == [b"png"]
    assert "signature good" in cli("evidence", "verify", str(target)).output
