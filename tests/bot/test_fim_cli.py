"""`compliancebot fim baseline|scan|accept` on a temporary tree, as an operator sees it, on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.slack.blocks import finding_blocks
from bot.slack.render import finding_view
from ledger import db
from ledger.models import AuditEntry, FimBaseline, Finding, Scan
from rules.catalog import load_catalog
from tests.cli import run_cli

HOST = "web-1"


@dataclass
class Fim:
    """A watched tree, its config file and its ledger."""

    tree: Path
    config: Path
    sessions: sessionmaker[Session]
    url: str

    def run(self, *args: str) -> Result:
        """The command in this process (typer's runner), its output captured."""
        return CliRunner().invoke(app, ["-c", str(self.config), *args], catch_exceptions=False)

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        return result.output

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
        env["COLUMNS"] = "250"
        return env

    def findings(self) -> dict[str, Finding]:
        with self.sessions() as session:
            rows = session.scalars(select(Finding).where(Finding.account == HOST)).all()
            return {f"{f.rule_id} {f.resource_id}": f for f in rows}

    def open_findings(self) -> set[str]:
        return {k for k, f in self.findings().items() if f.status in ("open", "reopened")}


@pytest.fixture
def fim(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fim]:
    """A tree (sshd_config, a key, a cron dir) watched by a config, on a migrated ledger."""
    monkeypatch.setenv("COLUMNS", "250")
    for name in list(os.environ):
        if name.startswith("COMPLIANCEBOT_"):
            monkeypatch.delenv(name)
    tree = tmp_path / "w"
    (tree / "cron.d").mkdir(parents=True)
    (tree / "sshd_config").write_text("PermitRootLogin no\n")
    (tree / "key").write_text("k\n")
    (tree / "cron.d" / "backup").write_text("0 3 * * * root /bin/backup\n")
    (tree / "key").chmod(0o600)
    config = tmp_path / "compliancebot.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": {"url": db_url},
                "fim": {
                    "host": HOST,
                    "watch": [f"{tree}/**"],
                    "severity": {f"{tree}/key": "critical"},
                },
            }
        )
    )
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    yield Fim(tree, config, db.session_factory(engine), db_url)
    engine.dispose()


def audit_entries(fim: Fim, action: str) -> list[AuditEntry]:
    with fim.sessions() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )


def test_change_becomes_a_finding_and_accept_resolves_it_with_an_audit_entry(fim: Fim) -> None:
    """Edit sshd_config: `fim scan` prints the change and opens a finding saying old -> new;
    `fim accept` records who and why in the audit trail; the next scan resolves it."""
    assert "3 files" in fim.ok("fim", "baseline")
    (fim.tree / "sshd_config").write_text("PermitRootLogin yes\n")

    scanned = fim.ok("fim", "scan")

    assert f"modified    {fim.tree}/sshd_config  (sha256, size, mtime)" in scanned
    assert "1 new, 0 reopened, 0 resolved" in scanned
    finding = fim.findings()[f"host_file_modified {fim.tree}/sshd_config"]
    assert (finding.status, finding.severity, finding.region) == ("open", "high", "host")
    assert finding.detail is not None
    assert "size 19 -> 20" in finding.detail

    accepted = fim.ok(
        "fim", "accept", str(fim.tree / "sshd_config"), "--user", "alice", "--reason", "CHG-42"
    )

    assert f"accepted: {fim.tree}/sshd_config" in accepted
    (entry,) = audit_entries(fim, "fim.accept")
    assert (entry.actor, entry.object_id) == ("alice", f"{HOST}:{fim.tree}/sshd_config")
    assert entry.detail["reason"] == "CHG-42"
    assert entry.detail["old"]["size"] == 19
    assert entry.detail["new"]["size"] == 20
    with fim.sessions() as session:
        path = f"{fim.tree}/sshd_config"
        row = session.scalars(select(FimBaseline).where(FimBaseline.path == path)).one()
        assert (row.accepted_by, row.reason, row.size) == ("alice", "CHG-42", 20)
    rescanned = fim.ok("fim", "scan")
    assert "0 new, 0 reopened, 1 resolved" in rescanned
    assert fim.findings()[f"host_file_modified {fim.tree}/sshd_config"].status == "resolved"
    with fim.sessions() as session:
        triggers = session.scalars(select(Scan.trigger)).all()
    assert set(triggers) == {"fim"}


def test_accept_a_directory_accepts_every_change_under_it(fim: Fim) -> None:
    """Added, modified and deleted files under a directory are all accepted at once (a deleted
    one leaves the baseline), each with its audit entry; the next scan is clean."""
    fim.ok("fim", "baseline")
    (fim.tree / "cron.d" / "backup").unlink()
    (fim.tree / "cron.d" / "new-job").write_text("* * * * * root /bin/true\n")
    (fim.tree / "key").chmod(0o644)
    fim.ok("fim", "scan")
    assert fim.open_findings() == {
        f"host_file_deleted {fim.tree}/cron.d/backup",
        f"host_file_added {fim.tree}/cron.d/new-job",
        f"host_file_permissions_changed {fim.tree}/key",
    }
    assert fim.findings()[f"host_file_permissions_changed {fim.tree}/key"].severity == "critical"

    out = fim.ok("fim", "accept", str(fim.tree / "cron.d"), "--user", "bob", "--reason", "new job")

    assert f"removed from the baseline: {fim.tree}/cron.d/backup" in out
    assert f"accepted: {fim.tree}/cron.d/new-job" in out
    assert len(audit_entries(fim, "fim.accept")) == 2
    fim.ok("fim", "scan")
    assert fim.open_findings() == {f"host_file_permissions_changed {fim.tree}/key"}
    fim.ok("fim", "accept", f"{fim.tree}/k*", "--user", "bob", "--reason", "wider key mode ok")
    fim.ok("fim", "scan")
    assert fim.open_findings() == set()


def test_baseline_is_not_replaced_without_force(fim: Fim) -> None:
    """A second `fim baseline` exits 2 and says how to replace it; --force replaces it."""
    first = run_cli("-c", str(fim.config), "fim", "baseline", "--user", "ops", env=fim.env())
    assert first.returncode == 0, first.stderr
    (fim.tree / "extra").write_text("x")

    again = run_cli("-c", str(fim.config), "fim", "baseline", env=fim.env())

    assert again.returncode == 2
    assert "already has a baseline of 3 files" in again.stderr
    assert "--force replaces" in again.stderr
    forced = run_cli(
        "-c", str(fim.config), "fim", "baseline", "--force", "--user", "ops", env=fim.env()
    )
    assert forced.returncode == 0, forced.stderr
    assert f"Baseline of {HOST}: 4 files" in forced.stdout
    entries = audit_entries(fim, "fim.baseline")
    assert [(e.actor, e.detail["files"], e.detail["replaced"]) for e in entries] == [
        ("ops", 3, 0),
        ("ops", 4, 3),
    ]


def test_scan_without_baseline_and_accept_outside_the_watch_are_refused(fim: Fim) -> None:
    """Without a baseline a scan would report every file as added: it exits 2 saying what to do.
    Accepting a path no glob watches exits 2 too, and changes nothing."""
    scan = run_cli("-c", str(fim.config), "fim", "scan", env=fim.env())
    assert (scan.returncode, scan.stdout) == (2, "")
    assert "no baseline yet: run `compliancebot fim baseline` first" in scan.stderr
    fim.ok("fim", "baseline")

    outside = run_cli(
        "-c", str(fim.config), "fim", "accept", "/etc/hostname", "--user", "eve",
        "--reason", "x", env=fim.env(),
    )  # fmt: skip

    assert outside.returncode == 2
    assert "/etc/hostname: no watched file there" in outside.stderr
    assert audit_entries(fim, "fim.accept") == []


def test_accept_needs_who_and_why(fim: Fim) -> None:
    """`fim accept` without --user or with an empty or control-character reason is refused."""
    fim.ok("fim", "baseline")
    path = str(fim.tree / "key")
    assert fim.run("fim", "accept", path, "--reason", "r").exit_code == 2
    assert fim.run("fim", "accept", path, "--user", "u", "--reason", "  ").exit_code == 2
    forged = fim.run("fim", "accept", path, "--user", "u", "--reason", "ok\n[audit] forged")
    assert forged.exit_code == 2
    assert fim.run("fim", "accept", path, "--user", "x" * 129, "--reason", "r").exit_code == 2
    assert audit_entries(fim, "fim.accept") == []


def test_verify_catches_what_the_incremental_scan_cannot(fim: Fim) -> None:
    """A same-size edit with the mtime put back passes a quick scan; `fim scan --verify` reads
    the file and reports it."""
    fim.ok("fim", "baseline")
    target = fim.tree / "sshd_config"
    before = target.stat()
    with target.open("r+b") as f:
        f.write(b"#")
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert "0 changed" in fim.ok("fim", "scan")
    verified = fim.ok("fim", "scan", "--verify")

    assert "1 changed" in verified
    assert "3 hashed" in verified
    assert fim.open_findings() == {f"host_file_modified {fim.tree}/sshd_config"}


def test_unreadable_path_is_a_scan_error_and_keeps_its_finding(fim: Fim) -> None:
    """A modified file later swapped for a FIFO: the scan is partial, prints the error, and the
    finding stays open (neither resolved nor turned into a deletion)."""
    fim.ok("fim", "baseline")
    target = fim.tree / "sshd_config"
    target.write_text("changed\n")
    fim.ok("fim", "scan")
    target.unlink()
    os.mkfifo(target)

    result = fim.run("fim", "scan")

    assert result.exit_code == 0
    assert f"SpecialFile: {target}: a FIFO" in result.output
    assert "partial" in result.output
    assert fim.open_findings() == {f"host_file_modified {target}"}


def test_hostile_file_name_is_escaped_in_the_detail_and_in_slack(fim: Fim) -> None:
    """A file named to forge Slack text (newline, mention, markup) shows escaped: one line in
    the detail, no live mention in the Slack message, and accept takes the shown form."""
    fim.ok("fim", "baseline")
    name = "-rf\n<!channel> *resolved*"
    (fim.tree / "cron.d" / name).write_text("x")

    fim.ok("fim", "scan")

    shown = f"{fim.tree}/cron.d/-rf\\n<!channel> *resolved*"
    finding = fim.findings()[f"host_file_added {shown}"]
    assert finding.detail is not None
    assert finding.detail.startswith(f"{shown} added: file")
    assert "\n" not in finding.detail
    blocks = json.dumps(finding_blocks(finding_view(finding, load_catalog(), datetime.now(UTC))))
    assert "<!channel>" not in blocks
    assert "&lt;!channel&gt;" in blocks
    fim.ok("fim", "accept", shown, "--user", "alice", "--reason", "test file")
    fim.ok("fim", "scan")
    assert fim.open_findings() == set()


def test_bad_fim_settings_name_the_file_line_and_key(fim: Fim, tmp_path: Path) -> None:
    """A relative glob, a host name with shell characters and an unknown severity are refused
    before anything runs, each with its file:line and key."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        'fim:\n  host: "web 1; rm -rf /"\n  watch: ["etc/passwd"]\n  severity: {"/etc/x": urgent}\n'
    )

    done = run_cli("-c", str(bad), "fim", "scan", env=fim.env())

    assert done.returncode == 2
    assert f"{bad}:2: fim.host: String should match pattern" in done.stderr
    assert f"{bad}:3: fim.watch[0]: 'etc/passwd' is not an absolute path glob" in done.stderr
    assert f"{bad}:4: fim.severity./etc/x: Input should be 'critical'" in done.stderr


def test_recheck_of_a_file_finding_through_the_fim_collector(fim: Fim) -> None:
    """A person resolving a file finding: the re-check looks at that one path against the
    stored baseline; fail while it differs, pass once it is back as accepted."""
    from bot.fim_cli import fim_collector
    from bot.scanning import recheck
    from bot.settings import load_settings

    fim.ok("fim", "baseline")
    target = fim.tree / "key"
    target.chmod(0o644)
    settings = load_settings(fim.config)

    def check() -> str:
        collector = fim_collector(settings=settings, sessions=fim.sessions)
        return recheck(
            catalog=load_catalog(),
            collector=collector,
            rule_id="host_file_permissions_changed",
            account=HOST,
            region="host",
            resource_id=str(target),
        ).verdict

    assert check() == "fail"
    target.chmod(0o600)
    assert check() == "pass"


def test_path_longer_than_a_resource_id_is_stored_shortened(fim: Fim) -> None:
    """A file 1,500 characters deep is a finding whose id is the path cut with its key, and
    accepting the real path resolves it."""
    fim.ok("fim", "baseline")
    deep = fim.tree / "cron.d"
    for i in range(7):
        deep = deep / (f"{i}" * 200)
    deep.mkdir(parents=True)
    (deep / "job").write_text("x")
    real = str(deep / "job")
    assert len(real) > 1400

    fim.ok("fim", "scan")

    (key,) = fim.open_findings()
    resource_id = key.removeprefix("host_file_added ")
    assert len(resource_id) == 1000
    assert resource_id.startswith(str(fim.tree))
    assert "…#" in resource_id
    fim.ok("fim", "accept", real, "--user", "alice", "--reason", "deep job")
    fim.ok("fim", "scan")
    assert fim.open_findings() == set()
