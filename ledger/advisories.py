"""The offline advisory store: OSV advisories imported from files, looked up for matching.

The only writer of the `advisories` and `advisory_packages` tables. An import streams its
sources (JSON files, directories of them, OSV's per-ecosystem zip exports, each zip member read
with a size cap) and writes in batches, so its memory does not grow with the number of
advisories; it replaces an advisory only when the file's `modified` is newer, and skips a
malformed advisory with its file and the reason, never aborting.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from ledger.db import transaction
from ledger.models import Advisory, AdvisoryPackage
from scanners.host.versions import MAX_VERSION, ecosystem_base, normalize_name
from scanners.host.vulns import AdvisoryEntry, severity_of

BATCH = 500  # advisories per transaction
LOOKUP_BATCH = 500  # names per lookup query
MAX_ID = 128
MAX_ALIASES = 50
MAX_SUMMARY = 500
MAX_AFFECTED = 2000  # packages per advisory
MAX_RANGES = 100  # per affected package
MAX_EVENTS = 1000  # per range
MAX_VERSIONS = 20000  # explicit versions per affected package
MAX_SKIPPED_KEPT = 1000  # skipped advisories kept for the report (all are counted)

_CVSS_PREFERENCE = ("CVSS_V3", "CVSS_V4", "CVSS_V2")
_WORDS = {"critical": "critical", "high": "high", "moderate": "medium", "medium": "medium"}
_WORDS |= {"low": "low", "important": "high"}
ADVISORIES = cast(Table, Advisory.__table__)
PACKAGES = cast(Table, AdvisoryPackage.__table__)
_EVENT_KINDS = frozenset({"introduced", "fixed", "last_affected", "limit"})


class MalformedAdvisoryError(ValueError):
    """An advisory that cannot be stored; the message says why."""


@dataclass(frozen=True)
class Skipped:
    source: str  # the file, or "archive.zip:member.json"
    reason: str


@dataclass
class ImportReport:
    """What one import did."""

    read: int = 0  # advisories read
    imported: int = 0  # new
    replaced: int = 0  # stored before, replaced by a newer `modified`
    unchanged: int = 0  # stored before with the same or a newer `modified`
    skipped: int = 0  # malformed or unreadable
    skipped_examples: list[Skipped] = field(default_factory=list)

    def skip(self, source: str, reason: str) -> None:
        """Count one skipped advisory (or file), keeping the first ones for the report."""
        self.skipped += 1
        if len(self.skipped_examples) < MAX_SKIPPED_KEPT:
            self.skipped_examples.append(Skipped(source, reason))


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 8 * 1024 * 1024  # one JSON file, or one zip member


@dataclass(frozen=True)
class ParsedAdvisory:
    row: dict[str, Any]
    packages: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return str(self.row["id"])

    @property
    def modified(self) -> datetime:
        modified: datetime = self.row["modified"]
        return modified


# ---- reading sources -------------------------------------------------------------------------

Document = tuple[str, bytes]  # (where, raw JSON)


def _read_file(path: Path, cap: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MalformedAdvisoryError("not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(cap + 1)
    finally:
        os.close(fd)
    if len(data) > cap:
        raise MalformedAdvisoryError(f"larger than {cap} bytes: refused")
    return data


def _zip_members(path: Path, limits: Limits, report: ImportReport) -> Iterator[Document]:
    """Each .json member, read streamed and refused past the cap whatever its header claims
    (a zip bomb's declared size lies; its inflated bytes are what is counted)."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        report.skip(str(path), f"not a readable zip: {exc}")
        return
    with archive:
        for info in archive.infolist():
            where = f"{path}:{info.filename}"
            if info.is_dir() or not info.filename.lower().endswith(".json"):
                continue
            if info.file_size > limits.max_file_bytes:
                report.skip(where, f"member larger than {limits.max_file_bytes} bytes: refused")
                continue
            try:
                with archive.open(info) as member:
                    data = member.read(limits.max_file_bytes + 1)
            except (OSError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as exc:
                # CRC mismatch, encrypted member, unsupported compression, truncated archive.
                report.skip(where, f"unreadable member: {exc}")
                continue
            if len(data) > limits.max_file_bytes:
                report.skip(where, f"member inflates past {limits.max_file_bytes} bytes: refused")
                continue
            yield where, data


def documents(paths: Iterable[Path], limits: Limits, report: ImportReport) -> Iterator[Document]:
    """The raw JSON of every advisory file under `paths`, one at a time (symlinks not
    followed into directories); unreadable files are counted as skipped."""
    for root in paths:
        if root.is_dir():
            for directory, subdirs, files in os.walk(root, followlinks=False):
                subdirs.sort()
                for name in sorted(files):
                    yield from _one(Path(directory) / name, limits, report, listed=False)
        elif root.exists():
            yield from _one(root, limits, report, listed=True)
        else:
            report.skip(str(root), "no such file or directory")


def _one(path: Path, limits: Limits, report: ImportReport, *, listed: bool) -> Iterator[Document]:
    lower = path.name.lower()
    if lower.endswith(".zip"):
        yield from _zip_members(path, limits, report)
    elif lower.endswith(".json") or listed:
        try:
            yield str(path), _read_file(path, limits.max_file_bytes)
        except OSError as exc:
            report.skip(str(path), exc.strerror or str(exc))
        except MalformedAdvisoryError as exc:
            report.skip(str(path), str(exc))


# ---- parsing one advisory --------------------------------------------------------------------


def _time(doc: dict[str, Any], key: str, *, required: bool) -> datetime | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 64:
        raise MalformedAdvisoryError(f"`{key}` must be an RFC 3339 timestamp")
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise MalformedAdvisoryError(f"`{key}` is not an RFC 3339 timestamp: {value!r}") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _text(value: Any, cap: int) -> str:
    return value.strip()[:cap] if isinstance(value, str) else ""


@lru_cache(maxsize=8192)
def _base_score(kind: str, vector: str) -> float | None:
    """The vector's base score (None when invalid); vectors repeat across advisories."""
    import cvss  # type: ignore[import-untyped]  # no type information shipped

    makers = {"CVSS_V3": cvss.CVSS3, "CVSS_V4": cvss.CVSS4, "CVSS_V2": cvss.CVSS2}
    try:
        return float(makers[kind](vector).base_score)
    except Exception:  # noqa: BLE001 - the cvss library raises several kinds: invalid is None
        return None


def _cvss(entries: Any) -> tuple[float | None, str | None]:
    """The base score of the preferred CVSS vector given ((None, None) without a valid one)."""
    if not isinstance(entries, list):
        return None, None
    by_type = {
        e.get("type"): e.get("score")
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("score"), str) and len(e["score"]) <= 256
    }
    for kind in _CVSS_PREFERENCE:
        vector = by_type.get(kind)
        if vector is not None:
            score = _base_score(kind, vector)
            if score is not None:
                return score, vector
    return None, None


def _severity(doc: dict[str, Any]) -> tuple[str | None, float | None, str | None]:
    score, vector = _cvss(doc.get("severity"))
    if score is not None:
        return severity_of(score), score, vector
    specific = doc.get("database_specific")
    word = specific.get("severity") if isinstance(specific, dict) else None
    level = _WORDS.get(word.lower()) if isinstance(word, str) else None
    return level, None, None


def _ranges(raw: Any, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_RANGES:
        raise MalformedAdvisoryError(f"{where}.ranges must be a list of at most {MAX_RANGES}")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise MalformedAdvisoryError(f"{where}.ranges[{i}] needs a `type`")
        events = entry.get("events")
        if not isinstance(events, list) or not events or len(events) > MAX_EVENTS:
            raise MalformedAdvisoryError(
                f"{where}.ranges[{i}].events must be a list of 1 to {MAX_EVENTS} events"
            )
        for j, event in enumerate(events):
            if (
                not isinstance(event, dict)
                or len(event) != 1
                or not _EVENT_KINDS.issuperset(event)
                or not all(isinstance(v, str) and 0 < len(v) <= MAX_VERSION for v in event.values())
            ):
                raise MalformedAdvisoryError(
                    f"{where}.ranges[{i}].events[{j}] must be one of introduced, fixed, "
                    "last_affected, limit with a version string"
                )
        if entry["type"] == "GIT":
            continue  # commits, not versions: nothing to match installed packages against
        out.append({"type": entry["type"], "events": events})
    return out


def _affected(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_AFFECTED:
        raise MalformedAdvisoryError(f"`affected` must be a list of at most {MAX_AFFECTED}")
    out = []
    for i, entry in enumerate(raw):
        where = f"affected[{i}]"
        if not isinstance(entry, dict):
            raise MalformedAdvisoryError(f"{where} must be an object")
        package = entry.get("package")
        if package is None:
            continue  # OSV allows an entry naming ranges of a repository only
        ecosystem = package.get("ecosystem") if isinstance(package, dict) else None
        name = package.get("name") if isinstance(package, dict) else None
        if not isinstance(ecosystem, str) or not ecosystem or len(ecosystem) > 64:
            raise MalformedAdvisoryError(f"{where}.package.ecosystem is missing or invalid")
        if not isinstance(name, str) or not name or len(name) > 256:
            raise MalformedAdvisoryError(f"{where}.package.name is missing or invalid")
        versions = entry.get("versions") or []
        if (
            not isinstance(versions, list)
            or len(versions) > MAX_VERSIONS
            or not all(isinstance(v, str) and len(v) <= MAX_VERSION for v in versions)
        ):
            raise MalformedAdvisoryError(f"{where}.versions must be a list of version strings")
        ranges = _ranges(entry.get("ranges"), where)
        if not ranges and not versions:
            continue
        out.append(
            {
                "ecosystem": ecosystem,
                "ecosystem_base": ecosystem_base(ecosystem)[:32],
                "name": normalize_name(ecosystem, name),
                "ranges": ranges,
                "versions": versions,
            }
        )
    return out


def parse_advisory(doc: Any, *, source: str, now: datetime) -> ParsedAdvisory:
    """One OSV advisory as rows to store, or MalformedAdvisoryError saying what is wrong."""
    if not isinstance(doc, dict):
        raise MalformedAdvisoryError("an advisory is a JSON object")
    advisory_id = doc.get("id")
    if (
        not isinstance(advisory_id, str)
        or not advisory_id
        or len(advisory_id) > MAX_ID
        or not advisory_id.isprintable()
        or any(c.isspace() for c in advisory_id)
    ):
        raise MalformedAdvisoryError(f"`id` must be a string of 1 to {MAX_ID} visible characters")
    try:
        modified = _time(doc, "modified", required=True)
        aliases = doc.get("aliases") or []
        if not isinstance(aliases, list):
            raise MalformedAdvisoryError("`aliases` must be a list")
        severity, score, vector = _severity(doc)
        row = {
            "id": advisory_id,
            "aliases": [a[:MAX_ID] for a in aliases if isinstance(a, str)][:MAX_ALIASES],
            "summary": _text(doc.get("summary"), MAX_SUMMARY)
            or _text(doc.get("details"), MAX_SUMMARY).split("\n", 1)[0],
            "severity": severity,
            "cvss_score": score,
            "cvss_vector": vector,
            "modified": modified,
            "published": _time(doc, "published", required=False),
            "withdrawn": _time(doc, "withdrawn", required=False),
            "source": source[:1000],
            "imported_at": now,
        }
        packages = _affected(doc.get("affected"))
    except MalformedAdvisoryError as exc:
        raise MalformedAdvisoryError(f"{advisory_id}: {exc}") from None
    for package in packages:
        package["advisory_id"] = advisory_id
    return ParsedAdvisory(row=row, packages=packages)


def parsed(
    docs: Iterable[Document], report: ImportReport, now: datetime
) -> Iterator[ParsedAdvisory]:
    """Each document's advisories (a file may hold one object or a list of them)."""
    for where, raw in docs:
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            report.skip(where, f"not JSON: {str(exc)[:200]}")
            continue
        items = doc if isinstance(doc, list) else [doc]
        for item in items:
            report.read += 1
            try:
                yield parse_advisory(item, source=where, now=now)
            except MalformedAdvisoryError as exc:
                report.skip(where, str(exc))


# ---- writing ---------------------------------------------------------------------------------


def _write(session: Session, batch: Sequence[ParsedAdvisory], report: ImportReport) -> None:
    newest: dict[str, ParsedAdvisory] = {}
    for advisory in batch:  # the same id twice in one batch: the newer one counts
        held = newest.get(advisory.id)
        if held is not None:
            report.unchanged += 1
        if held is None or advisory.modified > held.modified:
            newest[advisory.id] = advisory
    query = select(Advisory.id, Advisory.modified).where(Advisory.id.in_(list(newest)))
    stored: dict[str, datetime] = {row[0]: row[1] for row in session.execute(query)}
    todo = []
    for advisory in newest.values():
        before = stored.get(advisory.id)
        if before is not None and advisory.modified <= before:
            report.unchanged += 1
            continue
        todo.append(advisory)
        if before is None:
            report.imported += 1
        else:
            report.replaced += 1
    replaced = [a.id for a in todo if a.id in stored]
    if replaced:
        session.execute(delete(AdvisoryPackage).where(AdvisoryPackage.advisory_id.in_(replaced)))
        session.execute(delete(Advisory).where(Advisory.id.in_(replaced)))
    if todo:
        # Core executemany: the ORM's bulk insert fetches each new primary key row by row.
        connection = session.connection()
        connection.execute(insert(ADVISORIES), [a.row for a in todo])
        rows = [p for a in todo for p in a.packages]
        if rows:
            connection.execute(insert(PACKAGES), rows)


def import_advisories(
    *,
    sessions: sessionmaker[Session],
    paths: Sequence[Path],
    now: datetime,
    limits: Limits = Limits(),
    batch_size: int = BATCH,
    progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import every advisory under `paths`, `batch_size` per transaction."""
    report = ImportReport()
    batch: list[ParsedAdvisory] = []
    for advisory in parsed(documents(paths, limits, report), report, now):
        batch.append(advisory)
        if len(batch) >= batch_size:
            with transaction(sessions) as session:
                _write(session, batch, report)
            batch.clear()
            if progress is not None:
                progress(report)
    if batch:
        with transaction(sessions) as session:
            _write(session, batch, report)
    return report


# ---- reading for matching --------------------------------------------------------------------


class LedgerAdvisories:
    """The store as the package collector's AdvisorySource."""

    def __init__(self, sessions: sessionmaker[Session], *, batch: int = LOOKUP_BATCH) -> None:
        self.sessions = sessions
        self.batch = batch

    def lookup(self, keys: Iterable[tuple[str, str]]) -> Iterator[AdvisoryEntry]:
        """Every non-withdrawn advisory entry for the (ecosystem base, name) pairs."""
        by_base: dict[str, list[str]] = {}
        for base, name in keys:
            by_base.setdefault(base, []).append(name)
        with self.sessions() as session:
            for base, names in sorted(by_base.items()):
                for start in range(0, len(names), self.batch):
                    chunk = names[start : start + self.batch]
                    rows = session.execute(
                        select(
                            AdvisoryPackage.advisory_id,
                            AdvisoryPackage.ecosystem,
                            AdvisoryPackage.name,
                            AdvisoryPackage.ranges,
                            AdvisoryPackage.versions,
                            Advisory.aliases,
                            Advisory.summary,
                            Advisory.severity,
                            Advisory.cvss_score,
                        )
                        .join(Advisory, Advisory.id == AdvisoryPackage.advisory_id)
                        .where(
                            AdvisoryPackage.ecosystem_base == base,
                            AdvisoryPackage.name.in_(chunk),
                            Advisory.withdrawn.is_(None),
                        )
                    )
                    for row in rows:
                        yield AdvisoryEntry(*row)


def count(*, session: Session) -> int:
    """How many advisories are stored."""
    from sqlalchemy import func

    return int(session.execute(select(func.count()).select_from(Advisory)).scalar_one())
