"""`compliancebot vulns import` and `vulns scan` as an operator runs them: real processes, a
config file naming the host's package sources, a real ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.cli import run_cli
from tests.scanners.test_vulns import ADVISORIES, EXPECTED, host_tree, osv, write_dpkg, write_osv


@pytest.fixture
def operator(db_url: str, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A migrated ledger and a config file whose `vulns` section points at a test host tree."""
    sources = host_tree(tmp_path / "host")
    config = tmp_path / "compliancebot.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "vulns": {
                    "host": "web-1",
                    "dpkg_status": str(sources.dpkg_status),
                    "rpm_command": None,
                    "os_ecosystem": "Debian:12",
                    "python_paths": [str(p) for p in sources.python_paths],
                    "npm_paths": [str(p) for p in sources.npm_paths],
                    "max_advisory_bytes": 64 * 1024,
                }
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCEBOT_")}
    env.update(COMPLIANCEBOT_DATABASE__URL=db_url, COMPLIANCEBOT_CONFIG=str(config), COLUMNS="250")
    done = run_cli("db", "upgrade", env=env)
    assert done.returncode == 0, done.stderr
    return env, tmp_path


def test_import_scan_then_upgrade_resolves(operator: tuple[dict[str, str], Path]) -> None:
    """Import a zip export and a directory, scan: the vulnerable packages are listed with their
    advisories; after openssl's upgrade the next `vulns scan` resolves its finding."""
    env, tmp = operator
    archive = tmp / "Debian.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for doc in ADVISORIES[:7]:
            z.writestr(f"{doc['id']}.json", json.dumps(doc))
    directory = write_osv(tmp / "osv", ADVISORIES[7:])
    done = run_cli("vulns", "import", str(archive), str(directory), env=env)
    assert done.returncode == 0, done.stderr
    assert f"Read {len(ADVISORIES)} advisories: {len(ADVISORIES)} new" in done.stdout

    scan = run_cli("vulns", "scan", env=env)
    assert scan.returncode == 0, scan.stderr
    assert (
        f"{len(EXPECTED)} vulnerable (package, advisory) pairs, {len(EXPECTED)} new" in scan.stdout
    )
    assert "openssl 3.0.11-1~deb12u1 has DSA-5532-1, CVE-2023-5678" in scan.stdout

    write_dpkg(tmp / "host" / "status", openssl="3.0.11-1~deb12u2")
    again = run_cli("vulns", "scan", "-o", "json", env=env)
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert document["scan"]["resolved"] == 1
    listed = {f["resource_id"] for f in document["findings"]}
    assert listed == EXPECTED - {"Debian:openssl@DSA-5532-1"}

    # The same files again change nothing.
    twice = run_cli("vulns", "import", str(archive), str(directory), env=env)
    assert f"0 new, 0 replaced, {len(ADVISORIES)} unchanged" in twice.stdout


def test_malformed_and_oversized_advisories_are_named(
    operator: tuple[dict[str, str], Path],
) -> None:
    """Each skipped advisory is printed with its file and the reason; the good ones import."""
    env, tmp = operator
    directory = write_osv(tmp / "osv", [osv("GHSA-good", "npm", "lodash", [{"introduced": "0"}])])
    (directory / "broken.json").write_text('{"id": "GHSA-broken", "modified": 7}')
    (directory / "huge.json").write_text(json.dumps({"id": "x", "pad": "a" * 100_000}))
    done = run_cli("vulns", "import", str(directory), env=env)
    assert done.returncode == 0, done.stderr
    assert "1 new" in done.stdout
    assert "2 skipped" in done.stdout
    assert f"skipped: {directory / 'broken.json'}: GHSA-broken: `modified`" in done.stderr
    assert f"skipped: {directory / 'huge.json'}: larger than 65536 bytes" in done.stderr


def test_nothing_importable_fails(operator: tuple[dict[str, str], Path]) -> None:
    """A path with no advisory at all is an error the exit status shows."""
    env, tmp = operator
    done = run_cli("vulns", "import", str(tmp / "missing"), env=env)
    assert done.returncode == 1
    assert "no such file or directory" in done.stderr
