"""The installed-package inventory of a host: dpkg, RPM, Python environments, npm lock files.

Every source is read with a size cap and parsed defensively: a file that cannot be read or
parsed is an inventory error naming it, never a crash, and makes the inventory incomplete (so
the findings of packages it would have listed are not resolved on a guess).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PathDistribution
from pathlib import Path
from typing import Any

from scanners.host.versions import normalize_name

MAX_RPM_OUTPUT = 64 * 1024 * 1024  # bytes of `rpm -qa` output read
RPM_TIMEOUT = 120.0  # seconds `rpm -qa` may take
MAX_METADATA = 1024 * 1024  # bytes of one distribution's METADATA / PKG-INFO
MAX_LOCK_DEPTH = 64  # nesting of a lockfileVersion 1 "dependencies" tree
# Separated by tabs; a name or version never holds one.
RPM_QUERYFORMAT = r"%{NAME}\t%{EPOCHNUM}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n"


@dataclass(frozen=True)
class Package:
    """One installed package as advisories name it."""

    ecosystem: str  # OSV ecosystem: "Debian:12", "AlmaLinux:9", "PyPI", "npm"
    name: str  # the name advisories use (Debian: the source package), normalized
    version: str  # the version advisories compare (Debian: the source version)
    location: str  # the dpkg status file, "rpm", a site-packages directory, a lock file
    installed: tuple[str, ...] = ()  # Debian: the binary packages built from that source


@dataclass(frozen=True)
class InventoryError:
    """A source that could not be read completely."""

    source: str  # dpkg, rpm, python, npm
    location: str
    message: str


@dataclass
class Inventory:
    packages: list[Package] = field(default_factory=list)
    errors: list[InventoryError] = field(default_factory=list)


@dataclass(frozen=True)
class InventorySources:
    """Where to look; built from the `vulns` settings by the composition root."""

    dpkg_status: Path | None = Path("/var/lib/dpkg/status")
    rpm_command: str | None = "rpm"
    os_ecosystem: str | None = None
    os_release: Path = Path("/etc/os-release")
    python_paths: Sequence[Path] = ()
    npm_paths: Sequence[Path] = ()
    npm_max_depth: int = 8
    max_file_bytes: int = 256 * 1024 * 1024


class SourceError(Exception):
    """One source (or one file of it) could not be read."""


def _read_capped(path: Path, cap: int) -> bytes:
    """The file's bytes, refused past `cap` before it is read whole; special files refused
    (opened non-blocking: a FIFO planted under a scanned path never hangs the scan)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise SourceError(exc.strerror or str(exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceError("not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(cap + 1)
    except OSError as exc:
        raise SourceError(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if len(data) > cap:
        raise SourceError(f"larger than {cap} bytes: refused")
    return data


# ---- OS identity -----------------------------------------------------------------------------

# os-release ID -> (OSV ecosystem, keep the release's major version only)
_OS_IDS: dict[str, tuple[str, bool | None]] = {
    "debian": ("Debian", False),
    "ubuntu": ("Ubuntu", False),
    "almalinux": ("AlmaLinux", True),
    "rocky": ("Rocky Linux", True),
    "rhel": ("Red Hat", None),
    "centos": ("Red Hat", None),
    "opensuse-leap": ("openSUSE", None),
    "opensuse-tumbleweed": ("openSUSE", None),
    "sles": ("SUSE", None),
    "mageia": ("Mageia", False),
    "openEuler": ("openEuler", None),
}


def os_ecosystem(os_release: Path, fallback: str) -> str:
    """The OSV ecosystem of the OS packages from os-release ("Debian:12"), else `fallback`."""
    try:
        text = _read_capped(os_release, 64 * 1024).decode("utf-8", "replace")
    except SourceError:
        return fallback
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("\"'")
    known = _OS_IDS.get(values.get("ID", ""))
    if known is None:
        return fallback
    name, major = known
    release = values.get("VERSION_ID", "")
    if major is None or not release:
        return name
    return f"{name}:{release.split('.')[0] if major else release}"


# ---- dpkg ------------------------------------------------------------------------------------


def _paragraphs(text: str) -> Iterator[dict[str, str]]:
    """The status file's stanzas as {field: first-line value}; continuation lines skipped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields = {}
        elif line[0] in " \t":
            continue
        else:
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
    if fields:
        yield fields


def parse_dpkg_status(text: str, *, ecosystem: str, location: str) -> list[Package]:
    """Installed packages of a dpkg status file, one per source package and source version.

    Installed means the status's state is `installed` (wanted `install` or `hold`); packages
    removed with their configuration left (`deinstall ok config-files`) are not.
    """
    by_source: dict[tuple[str, str], list[str]] = {}
    for stanza in _paragraphs(text):
        status = stanza.get("Status", "").split()
        if len(status) != 3 or status[1] != "ok" or status[2] != "installed":
            continue
        name, version = stanza.get("Package", ""), stanza.get("Version", "")
        if not name or not version:
            continue
        source, source_version = name, version
        if stanza.get("Source"):
            # "Source: openssl" or "Source: openssl (3.0.2-0ubuntu1)" when the versions differ.
            src, _, rest = stanza["Source"].partition(" ")
            source = src or name
            rest = rest.strip()
            if rest.startswith("(") and rest.endswith(")") and len(rest) > 2:
                source_version = rest[1:-1].strip()
        binaries = by_source.setdefault((normalize_name(ecosystem, source), source_version), [])
        binaries.append(name)
    return [
        Package(
            ecosystem=ecosystem,
            name=source,
            version=version,
            location=location,
            installed=tuple(sorted(set(binaries))),
        )
        for (source, version), binaries in sorted(by_source.items())
    ]


# ---- rpm -------------------------------------------------------------------------------------


def parse_rpm_query(text: str, *, ecosystem: str) -> list[Package]:
    """Packages from the output of `rpm -qa --queryformat RPM_QUERYFORMAT`."""
    seen: dict[tuple[str, str], Package] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 5:
            continue
        name, epoch, version, release, _arch = (p.strip() for p in parts)
        if not name or not version or name == "gpg-pubkey":
            continue
        if epoch in ("", "(none)"):
            epoch = "0"
        full = f"{version}-{release}" if release else version
        if epoch != "0":
            full = f"{epoch}:{full}"
        seen.setdefault(
            (name, full), Package(ecosystem=ecosystem, name=name, version=full, location="rpm")
        )
    return list(seen.values())


Runner = Callable[[list[str]], bytes]


def run_rpm(argv: list[str]) -> bytes:
    """Run the rpm query with a timeout and an output cap (the real runner)."""
    try:
        done = subprocess.run(  # noqa: S603 - argv of our own, no shell
            argv, capture_output=True, timeout=RPM_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SourceError(f"{argv[0]}: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()[:300]
        raise SourceError(f"{argv[0]} exited with {done.returncode}: {message}")
    if len(done.stdout) > MAX_RPM_OUTPUT:
        raise SourceError(f"more than {MAX_RPM_OUTPUT} bytes of output: refused")
    return done.stdout


# ---- Python ----------------------------------------------------------------------------------


def python_packages(site: Path) -> tuple[list[Package], list[InventoryError]]:
    """Distributions installed in one site-packages directory (their dist-info / egg-info)."""
    packages: list[Package] = []
    errors: list[InventoryError] = []
    try:
        entries = sorted(site.iterdir())
    except OSError as exc:
        return [], [InventoryError("python", str(site), exc.strerror or str(exc))]
    for entry in entries:
        if entry.suffix not in (".dist-info", ".egg-info") or not entry.is_dir():
            continue
        meta = entry / ("METADATA" if entry.suffix == ".dist-info" else "PKG-INFO")
        try:
            _read_capped(meta, MAX_METADATA)  # refuse a huge file before importlib reads it
            dist = PathDistribution(entry)
            name, version = dist.metadata["Name"], dist.version
        except (SourceError, OSError, UnicodeDecodeError, KeyError) as exc:
            errors.append(InventoryError("python", str(entry), str(exc) or type(exc).__name__))
            continue
        if not isinstance(name, str) or not name or not isinstance(version, str) or not version:
            errors.append(InventoryError("python", str(entry), "no Name or Version in metadata"))
            continue
        packages.append(
            Package(
                ecosystem="PyPI",
                name=normalize_name("PyPI", name),
                version=version,
                location=str(site),
            )
        )
    return packages, errors


# ---- npm -------------------------------------------------------------------------------------


def lock_files(root: Path, max_depth: int) -> Iterator[Path]:
    """package-lock.json files under `root`, symlinks and node_modules not followed."""
    if root.is_file():
        yield root
        return
    base = len(root.parts)
    for directory, subdirs, files in os.walk(root, followlinks=False):
        depth = len(Path(directory).parts) - base
        subdirs[:] = sorted(d for d in subdirs if d != "node_modules" and depth < max_depth)
        if "package-lock.json" in files:
            yield Path(directory) / "package-lock.json"


def _lock_name(path: str, entry: dict[str, Any]) -> str | None:
    if isinstance(entry.get("name"), str) and entry["name"]:
        return str(entry["name"])
    marker = "node_modules/"
    at = path.rfind(marker)
    return path[at + len(marker) :] if at >= 0 else None


def _lock_packages(packages: dict[str, Any], found: set[tuple[str, str]]) -> None:
    """lockfileVersion 2 and 3: {"node_modules/a/node_modules/b": {"version": ...}}."""
    for path, entry in packages.items():
        if not path or not isinstance(entry, dict) or entry.get("link"):
            continue  # "" is the project itself; a link points at another entry
        name, version = _lock_name(str(path), entry), entry.get("version")
        if name and isinstance(version, str) and version:
            found.add((name, version))


def _lock_dependencies(dependencies: dict[str, Any], found: set[tuple[str, str]]) -> None:
    """lockfileVersion 1: {"a": {"version": ..., "dependencies": {...}}}, nested."""
    stack: list[tuple[dict[str, Any], int]] = [(dependencies, 0)]
    while stack:
        deps, depth = stack.pop()
        if depth > MAX_LOCK_DEPTH:
            raise SourceError(f"dependencies nested deeper than {MAX_LOCK_DEPTH}")
        for name, entry in deps.items():
            if not isinstance(entry, dict):
                continue
            version = entry.get("version")
            # A version that is a URL or a path is no registry release: nothing to match.
            if isinstance(version, str) and version and ":" not in version:
                found.add((str(name), version))
            if isinstance(entry.get("dependencies"), dict):
                stack.append((entry["dependencies"], depth + 1))


def parse_package_lock(data: bytes, *, location: str) -> list[Package]:
    """Packages of an npm package-lock.json (lockfileVersion 1, 2 or 3)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise SourceError(f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise SourceError("not a package-lock (the top level is not an object)")
    found: set[tuple[str, str]] = set()
    if isinstance(doc.get("packages"), dict):  # lockfileVersion 2 and 3
        _lock_packages(doc["packages"], found)
    elif isinstance(doc.get("dependencies"), dict):  # lockfileVersion 1
        _lock_dependencies(doc["dependencies"], found)
    else:
        raise SourceError("neither `packages` (v2, v3) nor `dependencies` (v1) is there")
    return [
        Package(ecosystem="npm", name=name, version=version, location=location)
        for name, version in sorted(found)
    ]


# ---- all of them -----------------------------------------------------------------------------


def inventory(sources: InventorySources, *, run: Runner = run_rpm) -> Inventory:
    """Every installed package the configured sources list; each failure is an error."""
    out = Inventory()
    has_dpkg = sources.dpkg_status is not None and sources.dpkg_status.exists()
    rpm_path = shutil.which(sources.rpm_command) if sources.rpm_command else None
    fallback = "Debian" if has_dpkg else "Red Hat"
    eco = sources.os_ecosystem or os_ecosystem(sources.os_release, fallback)
    if sources.dpkg_status is not None and has_dpkg:
        where = str(sources.dpkg_status)
        try:
            text = _read_capped(sources.dpkg_status, sources.max_file_bytes)
            out.packages += parse_dpkg_status(
                text.decode("utf-8", "replace"), ecosystem=eco, location=where
            )
        except SourceError as exc:
            out.errors.append(InventoryError("dpkg", where, str(exc)))
    if rpm_path is not None:
        try:
            raw = run([rpm_path, "-qa", "--queryformat", RPM_QUERYFORMAT])
            out.packages += parse_rpm_query(raw.decode("utf-8", "replace"), ecosystem=eco)
        except SourceError as exc:
            out.errors.append(InventoryError("rpm", rpm_path, str(exc)))
    for site in sources.python_paths:
        found, problems = python_packages(site)
        out.packages += found
        out.errors += problems
    for root in sources.npm_paths:
        if not root.exists():
            out.errors.append(InventoryError("npm", str(root), "no such file or directory"))
            continue
        try:
            locks = list(lock_files(root, sources.npm_max_depth))
        except OSError as exc:
            out.errors.append(InventoryError("npm", str(root), exc.strerror or str(exc)))
            continue
        for lock in locks:
            try:
                data = _read_capped(lock, sources.max_file_bytes)
                out.packages += parse_package_lock(data, location=str(lock))
            except SourceError as exc:
                out.errors.append(InventoryError("npm", str(lock), str(exc)))
    return out
