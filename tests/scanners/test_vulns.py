"""Vulnerable installed packages: a host's inventory (dpkg, rpm, site-packages, npm lock files)
made by the tests, an OSV set made by the tests, imported into a real ledger and scanned."""

from __future__ import annotations

import json
import stat
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.scanning import run_scan
from ledger.advisories import LedgerAdvisories, Limits, import_advisories
from ledger.models import Advisory, AdvisoryPackage, Finding
from rules.catalog import load_catalog
from scanners.host.packages import (
    InventorySources,
    inventory,
    os_ecosystem,
    parse_dpkg_status,
    parse_package_lock,
    parse_rpm_query,
)
from scanners.host.vulns import PackageCollector
from tests.conftest import FakeClock

HOST = "web-1"
NOW = datetime(2026, 11, 1, tzinfo=UTC)
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
MEDIUM = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N"  # 5.4

DPKG_STATUS = """\
Package: libssl3
Status: install ok installed
Priority: optional
Architecture: amd64
Source: openssl
Version: {openssl}
Description: Secure Sockets Layer toolkit - shared libraries
 This package is part of the OpenSSL project's implementation.

Package: openssl
Status: install ok installed
Architecture: amd64
Version: {openssl}
Description: Secure Sockets Layer toolkit

Package: curl
Status: hold ok installed
Version: 7.88.1-10+deb12u4
Description: held at this version, still installed

Package: oldpkg
Status: deinstall ok config-files
Version: 1.0-1
Description: removed, configuration left behind

Package: epochy
Status: install ok installed
Version: 1:1.0-1

Package: bsdutils
Status: install ok installed
Source: util-linux (2.38.1-5)
Version: 1:2.38.1-5+b1
"""

RPM_OUTPUT = (
    "openssl\t1\t3.0.7\t16.el9\tx86_64\n"
    "openssl\t1\t3.0.7\t16.el9\ti686\n"
    "gpg-pubkey\t0\t3abb34f8\t5ffd890e\t(none)\n"
    "bash\t0\t5.1.8\t6.el9_1\tx86_64\n"
    "sudo\t0\t1.9.5p2\t9.el9\tx86_64\n"
    "garbage line without tabs\n"
)

LOCK_V1 = {
    "name": "app1",
    "lockfileVersion": 1,
    "dependencies": {
        "lodash": {"version": "4.17.20"},
        "mkdirp": {
            "version": "0.5.5",
            "dependencies": {"minimist": {"version": "1.2.5"}},
        },
        "local": {"version": "file:../local"},
    },
}
LOCK_V2 = {
    "name": "app2",
    "lockfileVersion": 2,
    "packages": {
        "": {"name": "app2", "version": "1.0.0"},
        "node_modules/lodash": {"version": "4.17.21"},
        "node_modules/a/node_modules/minimist": {"version": "1.2.0"},
        "node_modules/linked": {"resolved": "../x", "link": True},
    },
    "dependencies": {"lodash": {"version": "4.17.21"}},
}
LOCK_V3 = {
    "name": "app3",
    "lockfileVersion": 3,
    "packages": {"": {"name": "app3"}, "node_modules/semver": {"version": "7.5.1"}},
}


def osv(
    advisory_id: str,
    ecosystem: str,
    name: str,
    events: list[dict[str, str]],
    *,
    modified: str = "2026-01-01T00:00:00Z",
    aliases: Iterable[str] = (),
    vector: str | None = None,
    range_type: str = "ECOSYSTEM",
    versions: Iterable[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """One OSV advisory affecting one package."""
    doc: dict[str, Any] = {
        "schema_version": "1.6.0",
        "id": advisory_id,
        "modified": modified,
        "published": "2025-12-01T00:00:00Z",
        "aliases": list(aliases),
        "summary": f"{name}: a flaw",
        "affected": [
            {
                "package": {"ecosystem": ecosystem, "name": name},
                "ranges": [{"type": range_type, "events": events}],
                "versions": list(versions),
            }
        ],
        **extra,
    }
    if vector:
        doc["severity"] = [{"type": "CVSS_V3", "score": vector}]
    return doc


def fixed(version: str, introduced: str = "0") -> list[dict[str, str]]:
    return [{"introduced": introduced}, {"fixed": version}]


ADVISORIES = [
    # Debian: a tilde in the fixed version; a release the host does not run; epochs.
    osv("DSA-5532-1", "Debian:12", "openssl", fixed("3.0.11-1~deb12u2"), aliases=["CVE-2023-5678"]),
    osv("DSA-5000-1", "Debian:11", "openssl", fixed("3.0.99-1")),
    osv("DSA-5100-1", "Debian:12", "curl", fixed("7.88.1-10+deb12u5"), vector=CRITICAL),
    osv("DSA-5200-1", "Debian:12", "oldpkg", fixed("2.0-1")),
    osv("DSA-5300-1", "Debian:12", "epochy", fixed("2.0-1")),  # 1:1.0-1 is past 2.0-1
    osv("DSA-5301-1", "Debian:12", "epochy", fixed("1:1.1-1")),
    osv("DSA-5400-1", "Debian:12", "util-linux", fixed("2.38.1-5+deb12u1")),
    # RPM: epoch, release suffixes, a "p" in the version.
    osv("ALSA-2023:1", "AlmaLinux:9", "openssl", fixed("1:3.0.7-17.el9"), vector=MEDIUM),
    osv("ALSA-2023:2", "AlmaLinux:9", "bash", fixed("5.1.8-6.el9_1")),
    osv("ALSA-2023:3", "AlmaLinux:9", "sudo", fixed("1.9.5p2-10.el9")),
    # PyPI: pre-releases, normalized names.
    osv("GHSA-h5c8-rqwp-cp95", "PyPI", "Jinja2", fixed("3.1.3"), vector=MEDIUM),
    osv("PYSEC-2023-74", "PyPI", "requests", fixed("2.31.0", "2.3.0")),
    osv("PYSEC-2026-1", "PyPI", "my_pkg", fixed("2.0")),
    # npm: SEMVER ranges.
    osv("GHSA-35jh-r3h4-6jhm", "npm", "lodash", fixed("4.17.21"), range_type="SEMVER"),
    osv("GHSA-xvch-5gv4-984h", "npm", "minimist", fixed("1.2.6"), range_type="SEMVER"),
    osv("GHSA-c2qf-rxjj-qqgw", "npm", "semver", fixed("7.5.2"), vector=CRITICAL),
    # Withdrawn: never matches.
    osv("GHSA-withdrawn", "npm", "lodash", fixed("9.9.9"), withdrawn="2026-02-01T00:00:00Z"),
]

EXPECTED = {
    "Debian:openssl@DSA-5532-1",
    "Debian:curl@DSA-5100-1",
    "Debian:epochy@DSA-5301-1",
    "Debian:util-linux@DSA-5400-1",
    "PyPI:jinja2@GHSA-h5c8-rqwp-cp95",
    "PyPI:my-pkg@PYSEC-2026-1",
    "npm:lodash@GHSA-35jh-r3h4-6jhm",
    "npm:minimist@GHSA-xvch-5gv4-984h",
    "npm:semver@GHSA-c2qf-rxjj-qqgw",
}
EXPECTED_RPM = {"AlmaLinux:openssl@ALSA-2023:1", "AlmaLinux:sudo@ALSA-2023:3"}


def write_osv(directory: Path, docs: Iterable[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        (directory / f"{doc['id'].replace(':', '_')}.json").write_text(json.dumps(doc))
    return directory


def dist_info(site: Path, name: str, version: str) -> None:
    """A real installed distribution's metadata directory, as pip leaves it."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: x\n\nlong text\n"
    )
    (info / "RECORD").write_text("")


def write_dpkg(path: Path, openssl: str = "3.0.11-1~deb12u1") -> Path:
    path.write_text(DPKG_STATUS.format(openssl=openssl))
    return path


def host_tree(root: Path) -> InventorySources:
    """A Debian 12 host with a site-packages tree and three npm projects."""
    root.mkdir(parents=True, exist_ok=True)
    write_dpkg(root / "status")
    site = root / "venv" / "lib" / "python3.11" / "site-packages"
    dist_info(site, "Jinja2", "3.1.2")
    dist_info(site, "requests", "2.31.0")
    dist_info(site, "my.pkg", "2.0rc1")
    for n, lock in enumerate([LOCK_V1, LOCK_V2, LOCK_V3], start=1):
        project = root / "srv" / f"app{n}"
        project.mkdir(parents=True)
        (project / "package-lock.json").write_text(json.dumps(lock))
    (root / "srv" / "app2" / "node_modules" / "x").mkdir(parents=True)
    (root / "srv" / "app2" / "node_modules" / "x" / "package-lock.json").write_text("{}")
    return InventorySources(
        dpkg_status=root / "status",
        rpm_command=None,
        os_ecosystem="Debian:12",
        python_paths=(site,),
        npm_paths=(root / "srv",),
    )


def collector(sources: InventorySources, sessions: sessionmaker[Session]) -> PackageCollector:
    return PackageCollector(host=HOST, sources=sources, advisories=LedgerAdvisories(sessions))


# ---- inventory -------------------------------------------------------------------------------


def test_dpkg_inventory_lists_installed_source_packages() -> None:
    """Installed and held packages count, removed ones do not; binaries group by source."""
    found = parse_dpkg_status(
        DPKG_STATUS.format(openssl="3.0.11-1~deb12u1"), ecosystem="Debian:12", location="s"
    )
    by_name = {p.name: p for p in found}
    assert set(by_name) == {"openssl", "curl", "epochy", "util-linux"}
    assert by_name["openssl"].installed == ("libssl3", "openssl")
    assert by_name["util-linux"].version == "2.38.1-5"  # the source's version, for Debian's OSV
    assert by_name["epochy"].version == "1:1.0-1"


def test_rpm_query_output_is_parsed() -> None:
    """Each package once (arches merged), with its epoch; the key ring and junk lines skipped."""
    found = {(p.name, p.version) for p in parse_rpm_query(RPM_OUTPUT, ecosystem="AlmaLinux:9")}
    assert found == {
        ("openssl", "1:3.0.7-16.el9"),
        ("bash", "5.1.8-6.el9_1"),
        ("sudo", "1.9.5p2-9.el9"),
    }


@pytest.mark.parametrize("lock", [LOCK_V1, LOCK_V2, LOCK_V3])
def test_package_locks_of_every_version(lock: dict[str, Any]) -> None:
    """lockfileVersion 1, 2 and 3 all list their installed packages, nested ones too."""
    found = {
        (p.name, p.version) for p in parse_package_lock(json.dumps(lock).encode(), location="l")
    }
    expected = {
        1: {("lodash", "4.17.20"), ("mkdirp", "0.5.5"), ("minimist", "1.2.5")},
        2: {("lodash", "4.17.21"), ("minimist", "1.2.0")},
        3: {("semver", "7.5.1")},
    }
    assert found == expected[lock["lockfileVersion"]]


def test_os_release_names_the_ecosystem(tmp_path: Path) -> None:
    """/etc/os-release tells which distribution's advisories apply."""
    release = tmp_path / "os-release"
    release.write_text('ID=debian\nVERSION_ID="12"\n')
    assert os_ecosystem(release, "x") == "Debian:12"
    release.write_text('ID="almalinux"\nVERSION_ID="9.3"\n')
    assert os_ecosystem(release, "x") == "AlmaLinux:9"
    assert os_ecosystem(tmp_path / "missing", "Debian") == "Debian"


def test_hostile_inventory_files_are_errors_not_crashes(tmp_path: Path) -> None:
    """A huge status file, a FIFO, a lock file that is no JSON or nests without end, and a
    dist-info without metadata are each reported by name; the rest is still read."""
    import os

    status = tmp_path / "status"
    status.write_text("Package: a\n" * 5000)
    site = tmp_path / "site"
    dist_info(site, "fine", "1.0")
    (site / "broken-1.0.dist-info").mkdir()
    srv = tmp_path / "srv"
    (srv / "a").mkdir(parents=True)
    (srv / "a" / "package-lock.json").write_text("{not json")
    (srv / "b").mkdir()
    (srv / "b" / "package-lock.json").write_text("[" * 100_000 + "]" * 100_000)
    (srv / "c").mkdir()
    os.mkfifo(srv / "c" / "package-lock.json")
    (srv / "d").mkdir()
    deep: dict[str, Any] = {"version": "1.0.0"}
    for _ in range(100):
        deep = {"version": "1.0.0", "dependencies": {"x": deep}}
    (srv / "d" / "package-lock.json").write_text(
        json.dumps({"lockfileVersion": 1, "dependencies": {"x": deep}})
    )
    (srv / "loop").symlink_to(srv)  # a symlink loop is not followed
    found = inventory(
        InventorySources(
            dpkg_status=status,
            rpm_command=None,
            os_ecosystem="Debian:12",
            python_paths=(site, tmp_path / "nowhere"),
            npm_paths=(srv,),
            max_file_bytes=16 * 1024,
        )
    )
    where = {
        (e.source, Path(e.location).name if e.source != "npm" else e.location) for e in found.errors
    }
    assert ("dpkg", "status") in where
    assert ("python", "broken-1.0.dist-info") in where
    assert ("python", "nowhere") in where
    npm = {Path(e.location).parent.name: e.message for e in found.errors if e.source == "npm"}
    assert set(npm) == {"a", "b", "c", "d"}
    assert "not a regular file" in npm["c"]
    assert [(p.name, p.version) for p in found.packages] == [("fine", "1.0")]


def test_rpm_database_through_the_rpm_tool(tmp_path: Path) -> None:
    """Where an rpm tool exists its query output is the inventory (a recorded output here)."""
    tool = tmp_path / "rpm"
    tool.write_text("#!/bin/sh\nexit 1\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    seen: list[list[str]] = []

    def recorded(argv: list[str]) -> bytes:
        seen.append(argv)
        return RPM_OUTPUT.encode()

    found = inventory(
        InventorySources(dpkg_status=None, rpm_command=str(tool), os_ecosystem="AlmaLinux:9"),
        run=recorded,
    )
    assert seen
    assert seen[0][1:3] == ["-qa", "--queryformat"]
    assert {p.name for p in found.packages} == {"openssl", "bash", "sudo"}
    assert not found.errors


# ---- the advisory store --------------------------------------------------------------------


def test_import_then_match_every_ecosystem(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """Each ecosystem's version rules decide; one finding per (package, advisory)."""
    report = import_advisories(
        sessions=sessions, paths=[write_osv(tmp_path / "osv", ADVISORIES)], now=NOW
    )
    assert (report.read, report.imported, report.skipped) == (len(ADVISORIES), len(ADVISORIES), 0)
    result = collector(host_tree(tmp_path / "host"), sessions).collect(needs=None)
    assert {r.id for r in result.resources} == EXPECTED
    assert ("host.package", HOST, "host") in result.listed
    by_id = {r.id: r for r in result.resources}
    openssl = by_id["Debian:openssl@DSA-5532-1"]
    assert openssl.data["fixed"] == "3.0.11-1~deb12u2"
    assert openssl.data["aliases"] == ["CVE-2023-5678"]
    assert openssl.data["packages"] == ["libssl3", "openssl"]
    assert by_id["npm:semver@GHSA-c2qf-rxjj-qqgw"].severity == "critical"
    assert by_id["PyPI:jinja2@GHSA-h5c8-rqwp-cp95"].severity == "medium"
    assert by_id["Debian:util-linux@DSA-5400-1"].severity is None  # no CVSS: the rule's


def test_rpm_host_matches(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """On an RPM host, epochs and releases decide."""
    import_advisories(sessions=sessions, paths=[write_osv(tmp_path / "osv", ADVISORIES)], now=NOW)
    tool = tmp_path / "rpm"
    tool.write_text("")
    tool.chmod(0o755)
    sources = InventorySources(dpkg_status=None, rpm_command=str(tool), os_ecosystem="AlmaLinux:9")
    found = PackageCollector(
        host=HOST,
        sources=sources,
        advisories=LedgerAdvisories(sessions),
        read_inventory=lambda s: inventory(s, run=lambda _argv: RPM_OUTPUT.encode()),
    ).collect()
    assert {r.id for r in found.resources} == EXPECTED_RPM


def test_reimport_replaces_only_when_modified_is_newer(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """The same file twice changes nothing; a newer `modified` replaces; an older one does not."""
    first = [osv("GHSA-1", "PyPI", "jinja2", fixed("3.1.3"))]
    import_advisories(sessions=sessions, paths=[write_osv(tmp_path / "a", first)], now=NOW)
    again = import_advisories(sessions=sessions, paths=[write_osv(tmp_path / "a", first)], now=NOW)
    assert (again.imported, again.replaced, again.unchanged) == (0, 0, 1)
    newer = [osv("GHSA-1", "PyPI", "jinja2", fixed("3.1.4"), modified="2026-03-01T00:00:00Z")]
    done = import_advisories(sessions=sessions, paths=[write_osv(tmp_path / "b", newer)], now=NOW)
    assert done.replaced == 1
    older = [osv("GHSA-1", "PyPI", "jinja2", fixed("9.0"), modified="2025-01-01T00:00:00Z")]
    late = import_advisories(sessions=sessions, paths=[write_osv(tmp_path / "c", older)], now=NOW)
    assert late.unchanged == 1
    with sessions() as session:
        rows = session.execute(select(AdvisoryPackage.ranges)).scalars().all()
        assert rows == [[{"type": "ECOSYSTEM", "events": fixed("3.1.4")}]]
        assert session.get(Advisory, "GHSA-1") is not None


def test_malformed_advisories_are_skipped_with_file_and_reason(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """A bad advisory is named with its file and why; the good ones around it are imported."""
    directory = write_osv(tmp_path / "osv", [osv("GHSA-good", "npm", "lodash", fixed("4.17.21"))])
    (directory / "not-json.json").write_text("{oops")
    (directory / "no-id.json").write_text(json.dumps({"modified": "2026-01-01T00:00:00Z"}))
    (directory / "bad-time.json").write_text(
        json.dumps(osv("GHSA-badtime", "npm", "x", fixed("1.0.0"), modified="yesterday"))
    )
    (directory / "bad-event.json").write_text(
        json.dumps(osv("GHSA-badevent", "npm", "x", [{"introduced": "0", "fixed": "1"}]))
    )
    (directory / "no-name.json").write_text(
        json.dumps(osv("GHSA-noname", "npm", "", fixed("1.0.0")))
    )
    (directory / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (directory / "readme.txt").write_text("not an advisory: ignored")
    report = import_advisories(sessions=sessions, paths=[directory], now=NOW)
    assert report.imported == 1
    reasons = {Path(s.source).name: s.reason for s in report.skipped_examples}
    assert set(reasons) == {
        "not-json.json",
        "no-id.json",
        "bad-time.json",
        "bad-event.json",
        "no-name.json",
        "deep.json",
    }
    assert "not JSON" in reasons["not-json.json"]
    assert "`id`" in reasons["no-id.json"]
    assert reasons["bad-time.json"].startswith("GHSA-badtime: `modified`")
    assert (
        "affected[0].ranges[0].events[1]" in reasons["bad-event.json"]
        or "events[0]" in reasons["bad-event.json"]
    )
    assert "package.name" in reasons["no-name.json"]


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_zip_export_is_read_member_by_member(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """OSV's per-ecosystem all.zip imports like the files it holds."""
    archive = _zip(
        tmp_path / "all.zip",
        {f"{a['id'].replace(':', '_')}.json": json.dumps(a).encode() for a in ADVISORIES[:5]},
    )
    report = import_advisories(sessions=sessions, paths=[archive], now=NOW)
    assert (report.imported, report.skipped) == (5, 0)


def test_zip_bomb_members_are_refused(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """A member inflating past the cap is refused, also when its header lies about its size;
    the honest members beside it are imported."""
    good = osv("GHSA-good", "npm", "lodash", fixed("4.17.21"))
    bomb = b'{"id": "GHSA-bomb", "pad": "' + b" " * (4 * 1024 * 1024) + b'"}'
    archive = _zip(
        tmp_path / "all.zip",
        {"good.json": json.dumps(good).encode(), "bomb.json": bomb, "liar.json": bomb},
    )
    # Forge the central directory: liar.json now claims 100 bytes.
    raw = bytearray(archive.read_bytes())
    at = raw.rfind(b"PK\x01\x02")
    assert raw[at + 46 : at + 46 + 9] == b"liar.json"
    raw[at + 24 : at + 28] = (100).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))
    limits = Limits(max_file_bytes=1024 * 1024)
    report = import_advisories(sessions=sessions, paths=[archive], now=NOW, limits=limits)
    assert report.imported == 1
    skipped = {s.source.rsplit(":", 1)[1]: s.reason for s in report.skipped_examples}
    assert set(skipped) == {"bomb.json", "liar.json"}
    assert "refused" in skipped["bomb.json"]


def test_batches_stream_and_stay_idempotent(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Advisories are written batch by batch (a small batch here), the same id across batches
    keeps the newest."""
    docs = [osv(f"GHSA-{i:04d}", "npm", f"pkg{i % 7}", fixed("1.0.0")) for i in range(23)]
    docs.append(osv("GHSA-0001", "npm", "pkg1", fixed("2.0.0"), modified="2026-06-01T00:00:00Z"))
    seen: list[int] = []
    report = import_advisories(
        sessions=sessions,
        paths=[write_osv(tmp_path / "a", docs[:23]), write_osv(tmp_path / "b", docs[23:])],
        now=NOW,
        batch_size=5,
        progress=lambda r: seen.append(r.imported),
    )
    assert report.imported == 23
    assert report.replaced == 1
    assert seen == sorted(seen)
    assert len(seen) >= 4
    with sessions() as session:
        assert session.execute(
            select(AdvisoryPackage.ranges).where(AdvisoryPackage.advisory_id == "GHSA-0001")
        ).scalar_one() == [{"type": "ECOSYSTEM", "events": fixed("2.0.0")}]


# ---- through the scan: findings, severity, resolution ---------------------------------------


def test_upgrade_past_the_fix_resolves_the_finding_on_the_next_scan(
    sessions: sessionmaker[Session], tmp_path: Path, clock: FakeClock
) -> None:
    """Each match is a finding with the advisory, the fix and the CVSS severity; upgrading
    openssl past the fixed version resolves its finding, the others stay open."""
    catalog = load_catalog()
    import_advisories(sessions=sessions, paths=[write_osv(tmp_path / "osv", ADVISORIES)], now=NOW)
    sources = host_tree(tmp_path / "host")
    first = run_scan(
        catalog=catalog,
        collector=collector(sources, sessions),
        sessions=sessions,
        clock=clock,
        trigger="vulns",
    )
    assert first.counts.new == len(EXPECTED)
    with sessions() as session:
        findings = {f.resource_id: f for f in session.execute(select(Finding)).scalars()}
    assert set(findings) == EXPECTED
    openssl = findings["Debian:openssl@DSA-5532-1"]
    assert (openssl.rule_id, openssl.account, openssl.region) == (
        "host_package_vulnerable",
        HOST,
        "host",
    )
    assert openssl.detail == (
        "openssl 3.0.11-1~deb12u1 has DSA-5532-1, CVE-2023-5678 (fixed in 3.0.11-1~deb12u2)"
    )
    assert openssl.severity == "high"  # no CVSS in the advisory: the rule's severity
    assert findings["Debian:curl@DSA-5100-1"].severity == "critical"  # CVSS 9.8
    assert findings["PyPI:jinja2@GHSA-h5c8-rqwp-cp95"].severity == "medium"  # CVSS 5.4

    clock.advance(days=1)
    write_dpkg(tmp_path / "host" / "status", openssl="3.0.11-1~deb12u2")
    second = run_scan(
        catalog=catalog,
        collector=collector(sources, sessions),
        sessions=sessions,
        clock=clock,
        trigger="vulns",
    )
    assert (second.counts.resolved, second.counts.new) == (1, 0)
    with sessions() as session:
        status = {f.resource_id: f.status for f in session.execute(select(Finding)).scalars()}
    assert status.pop("Debian:openssl@DSA-5532-1") == "resolved"
    assert set(status.values()) == {"open"}


def test_an_incomplete_inventory_resolves_nothing(
    sessions: sessionmaker[Session], tmp_path: Path, clock: FakeClock
) -> None:
    """If the status file becomes unreadable, its packages are not taken as upgraded."""
    catalog = load_catalog()
    import_advisories(sessions=sessions, paths=[write_osv(tmp_path / "osv", ADVISORIES)], now=NOW)
    sources = host_tree(tmp_path / "host")
    run_scan(
        catalog=catalog, collector=collector(sources, sessions), sessions=sessions, clock=clock
    )
    (tmp_path / "host" / "status").unlink()
    (tmp_path / "host" / "status").mkdir()  # now a directory: unreadable as a file
    clock.advance(days=1)
    again = run_scan(
        catalog=catalog, collector=collector(sources, sessions), sessions=sessions, clock=clock
    )
    assert (again.counts.resolved, again.counts.still_failing) == (0, len(EXPECTED) - 4)
    assert again.scan.status == "partial"
    with sessions() as session:
        statuses = [f.status for f in session.execute(select(Finding)).scalars()]
    assert statuses == ["open"] * len(EXPECTED)  # the four Debian ones too
    assert any(e.service == "dpkg" for e in again.collection.errors)


def test_severity_from_cvss_then_the_advisorys_word() -> None:
    """The CVSS vector's base score decides (v3 before v4 before v2); an invalid vector is
    ignored, not fatal; without a score, the advisory's own word (GHSA's MODERATE: medium)."""
    from ledger.advisories import parse_advisory

    def severity(**extra: Any) -> tuple[str | None, float | None]:
        parsed = parse_advisory(
            osv("GHSA-s", "npm", "x", fixed("1.0.0"), **extra), source="f", now=NOW
        )
        return parsed.row["severity"], parsed.row["cvss_score"]

    assert severity(severity=[{"type": "CVSS_V3", "score": CRITICAL}]) == ("critical", 9.8)
    v4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N"
    assert severity(severity=[{"type": "CVSS_V4", "score": v4}])[0] == "medium"
    assert severity(severity=[{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}]) == (
        "high",
        7.5,
    )
    broken = [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:X/nonsense"}]
    assert severity(severity=broken, database_specific={"severity": "MODERATE"}) == ("medium", None)
    assert severity(severity="not a list") == (None, None)


def test_oversized_advisory_parts_are_refused() -> None:
    """Counts an attacker could inflate (versions, ranges, events) are bounded per advisory."""
    from ledger.advisories import MalformedAdvisoryError, parse_advisory

    huge = osv("GHSA-big", "PyPI", "x", fixed("1.0"), versions=[str(i) for i in range(20_001)])
    with pytest.raises(MalformedAdvisoryError, match=r"affected\[0\]\.versions"):
        parse_advisory(huge, source="f", now=NOW)
    many = osv("GHSA-ev", "PyPI", "x", [{"introduced": "0"}] * 1001)
    with pytest.raises(MalformedAdvisoryError, match="events must be a list of 1 to 1000"):
        parse_advisory(many, source="f", now=NOW)
    long_id = osv("G" * 129, "PyPI", "x", fixed("1.0"))
    with pytest.raises(MalformedAdvisoryError, match="`id`"):
        parse_advisory(long_id, source="f", now=NOW)
