"""The evidence pack: one zip an auditor is handed for a framework and a period (the report, the
task completions with their evidence files, the finding history, the audit trail, a manifest of
SHA-256 hashes signed with HMAC-SHA256), and its verification, which treats the zip as hostile.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.orm import Session

from bot.files import replacing
from bot.reports import make_report
from bot.reports.render import cell, iso
from bot.settings import Settings
from ledger import audit, history
from ledger.tasks import Completion, safe_name
from rules.catalog import Catalog
from rules.errors import CompliancebotError
from rules.tasks import Task

FORMAT = "compliancebot-evidence-pack"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
# The pack's signing key is derived from audit.hmac_key, never the key itself: a pack's
# signature can never pass for an audit entry's hash, and the derived key alone could be
# handed to whoever verifies packs without letting them forge the audit chain.
_KEY_LABEL = b"compliancebot evidence pack key"
_CHUNK = 1024 * 1024
# What `verify` accepts before reading a byte of content (a zip is hostile until checked).
MAX_ENTRIES = 20_000
MAX_MEMBER_BYTES = 6 * 1024**3  # an evidence file may be 5120 MB (calendar.max_evidence_mb)
MAX_TOTAL_BYTES = 64 * 1024**3
MAX_MANIFEST_BYTES = 32 * 1024 * 1024
MAX_SIGNATURE_BYTES = 1024
EVENT_COLUMNS = (
    "event_id",
    "at",
    "finding_id",
    "rule_id",
    "severity",
    "account",
    "region",
    "resource_type",
    "resource_id",
    "kind",
    "from_status",
    "to_status",
    "actor",
    "note",
    "scan_id",
)


class PackError(CompliancebotError):
    """A pack cannot be made or read: the message names the argument or file at fault."""


def pack_key(key: str) -> bytes:
    """The key packs are signed with, derived from audit.hmac_key."""
    return hmac.new(key.encode(), _KEY_LABEL, hashlib.sha256).digest()


def sign(manifest: bytes, key: str) -> str:
    """The manifest's HMAC-SHA256 (hex) with the pack key derived from `key`."""
    return hmac.new(pack_key(key), manifest, hashlib.sha256).hexdigest()


# ---- making a pack ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One file of a pack, as the manifest lists it."""

    path: str
    sha256: str
    size: int


@dataclass
class PackSummary:
    """What `build_pack` wrote."""

    path: Path
    files: int = 0
    completions: int = 0
    evidence_files: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    audit_entries: int = 0
    signed_with: str | None = None  # the key id, when signed


# An s3:// location -> its content in chunks; raises on any failure (the reason is listed).
S3Fetch = Callable[[str], Iterable[bytes]]


def s3_fetcher(settings: Settings) -> S3Fetch:
    """Fetch evidence kept in S3 (calendar.evidence_bucket) with aws.endpoint_url if set."""
    clients: list[Any] = []

    def fetch(location: str) -> Iterable[bytes]:
        if not clients:
            import boto3

            clients.append(boto3.client("s3", endpoint_url=settings.aws.endpoint_url))
        bucket, _, key = location.removeprefix("s3://").partition("/")
        body = clients[0].get_object(Bucket=bucket, Key=key)["Body"]
        return body.iter_chunks(_CHUNK)  # type: ignore[no-any-return]

    return fetch


class _Writer:
    """A zip being written: each member streamed in, hashed and counted as it goes."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.members: list[Member] = []

    def put(self, path: str, chunks: Iterable[bytes]) -> Member:
        digest = hashlib.sha256()
        size = 0
        with self.archive.open(path, "w", force_zip64=True) as stream:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                stream.write(chunk)
        member = Member(path, digest.hexdigest(), size)
        self.members.append(member)
        return member

    def put_text(self, path: str, text: str) -> Member:
        return self.put(path, [text.encode()])

    def put_lines(self, path: str, lines: Iterable[str]) -> tuple[Member, int]:
        count = 0

        def encoded() -> Iterator[bytes]:
            nonlocal count
            for line in lines:
                count += 1
                yield line.encode()

        return self.put(path, encoded()), count


def _csv_line(values: Sequence[object]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([cell(v) for v in values])
    return buffer.getvalue()


def _event_lines(events: Iterable[history.PeriodEvent]) -> Iterator[str]:
    yield _csv_line(EVENT_COLUMNS)
    for e in events:
        yield _csv_line(
            [
                e.id,
                iso(e.at),
                e.finding_id,
                e.rule_id,
                e.severity,
                e.account,
                e.region,
                e.resource_type,
                e.resource_id,
                e.kind,
                e.from_status,
                e.to_status,
                e.actor,
                e.note,
                e.scan_id,
            ]
        )


def _audit_lines(session: Session, start: datetime, end: datetime) -> Iterator[str]:
    # Exported naive UTC with a Z: compared as the same text shape (ISO sorts as time).
    last = end.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    for entry in audit.export(session=session, since=start):
        at = str(entry["at"])
        if "." not in at:  # isoformat drops zero microseconds
            at = at[:-1] + ".000000Z"
        if at <= last:
            yield json.dumps(entry, ensure_ascii=False) + "\n"


def _local_chunks(path: Path, cap: int) -> Iterator[bytes]:
    with path.open("rb") as stream:
        total = 0
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            total += len(chunk)
            if total > cap:
                raise PackError(f"evidence file {path} grew past calendar.max_evidence_mb")
            yield chunk


def _spooled(chunks: Iterable[bytes], into: IO[bytes], cap: int) -> str:
    digest = hashlib.sha256()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > cap:
            raise ValueError(f"it is over {cap} bytes (calendar.max_evidence_mb)")
        digest.update(chunk)
        into.write(chunk)
    return digest.hexdigest()


def _add_evidence(
    writer: _Writer,
    completion: Completion,
    *,
    evidence_dir: Path,
    cap: int,
    fetch_s3: S3Fetch,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Copy one completion's evidence file into the pack: (its record, a missing-file entry)."""
    location = completion.file or ""
    name = safe_name(completion.file_name or "evidence")
    path = f"evidence/{completion.occurrence_id}/{name}"
    record: dict[str, Any] = {
        "name": completion.file_name,
        "location": location,
        "recorded_sha256": completion.sha256,
        "path": None,
        "sha256": None,
        "matches_record": None,
    }

    def missing(reason: str) -> tuple[dict[str, Any], dict[str, Any]]:
        record["missing"] = reason
        return record, {
            "occurrence_id": completion.occurrence_id,
            "task_id": completion.task_id,
            "location": location,
            "reason": reason,
        }

    if location.startswith("s3://"):
        try:
            with tempfile.TemporaryFile() as spool:
                _spooled(fetch_s3(location), spool, cap)
                spool.seek(0)
                member = writer.put(path, iter(lambda: spool.read(_CHUNK), b""))
        except Exception as exc:  # noqa: BLE001 - any failure to fetch is listed, not fatal
            reason = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
            return missing(f"could not be fetched from S3: {' '.join(str(reason).split())[:300]}")
    else:
        resolved, why = _local_file(location, evidence_dir, cap)
        if resolved is None:
            return missing(why)
        member = writer.put(path, _local_chunks(resolved, cap))
    record.update(
        path=member.path, sha256=member.sha256, matches_record=member.sha256 == completion.sha256
    )
    if member.sha256 != completion.sha256:
        return record, {
            "occurrence_id": completion.occurrence_id,
            "task_id": completion.task_id,
            "location": location,
            "reason": "its content no longer matches the SHA-256 recorded at completion "
            f"({completion.sha256}); the copy in the pack hashes to {member.sha256}",
        }
    return record, None


def _local_file(location: str, evidence_dir: Path, cap: int) -> tuple[Path | None, str]:
    """The evidence file at `location` if it may be copied, else None and why not."""
    try:
        resolved = Path(location).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        return None, f"not found: {getattr(exc, 'strerror', None) or exc}"
    # A location is a row of the database: only what lies under the evidence folder is
    # copied, never an arbitrary file the bot can read.
    if not resolved.is_relative_to(evidence_dir.resolve()):
        return None, f"outside calendar.evidence_dir ({evidence_dir}): not copied"
    if not resolved.is_file():
        return None, "not a regular file"
    if resolved.stat().st_size > cap:
        return None, "larger than calendar.max_evidence_mb: not copied"
    return resolved, ""


def _completion_doc(c: Completion, title: str | None) -> dict[str, Any]:
    late = c.late_by
    return {
        "occurrence_id": c.occurrence_id,
        "task_id": c.task_id,
        "title": title,
        "due_on": c.due_on.isoformat(),
        "due_at": iso(c.due_at),
        "completed_at": iso(c.completed_at),
        "completed_by": c.completed_by,
        "on_time": c.on_time,
        "late_seconds": None if late is None else int(late.total_seconds()),
        "note": c.note,
        "link": c.link,
        "evidence_file": None,
    }


def build_pack(
    *,
    session: Session,
    settings: Settings,
    catalog: Catalog,
    tasks: Sequence[Task],
    framework: str,
    start: datetime,
    end: datetime,
    now: datetime,
    target: Path,
    account: str | None = None,
    key: str | None = None,
    tool_version: str = "0+unknown",
    fetch_s3: S3Fetch | None = None,
) -> PackSummary:
    """Write the evidence pack of `framework` for [start, end] to `target`, whole or not at all
    (bot.files.replacing: a failure leaves no partial file, and raises WriteError)."""
    fw = catalog.require_framework(framework)
    summary = PackSummary(path=target)
    with (
        replacing(target, "wb") as raw,
        zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        writer = _Writer(archive)
        _write_contents(
            writer,
            summary,
            session=session,
            settings=settings,
            catalog=catalog,
            tasks=tasks,
            framework=framework,
            start=start,
            end=end,
            now=now,
            account=account,
            fetch_s3=fetch_s3 or s3_fetcher(settings),
        )
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "framework": {"id": framework, "name": fw.name, "version": str(fw.version)},
            "account": account,
            "period": {"from": iso(start), "to": iso(end)},
            "generated_at": iso(now),
            "tool": {"name": "compliancebot", "version": tool_version},
            "signature": None
            if key is None
            else {"algorithm": "HMAC-SHA256", "key_id": audit.key_id(key), "file": SIGNATURE},
            "files": [{"path": m.path, "sha256": m.sha256, "size": m.size} for m in writer.members],
            "missing_evidence": summary.missing,
        }
        summary.files = len(writer.members)
        body = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
        archive.writestr(MANIFEST, body)
        if key is not None:
            summary.signed_with = audit.key_id(key)
            signature = {
                "algorithm": "HMAC-SHA256",
                "key_id": summary.signed_with,
                "signature": sign(body, key),
            }
            archive.writestr(SIGNATURE, json.dumps(signature) + "\n")
    return summary


def _write_contents(
    writer: _Writer,
    summary: PackSummary,
    *,
    session: Session,
    settings: Settings,
    catalog: Catalog,
    tasks: Sequence[Task],
    framework: str,
    start: datetime,
    end: datetime,
    now: datetime,
    account: str | None,
    fetch_s3: S3Fetch,
) -> None:
    for fmt in ("html", "csv"):
        text = make_report(
            session=session,
            settings=settings,
            catalog=catalog,
            tasks=tasks,
            framework=framework,
            fmt=fmt,
            at=end,
            now=now,
            account=account,
        )
        writer.put_text(f"report/{framework}.{fmt}", text)

    # Completions of the tasks citing the framework; a task no longer in the catalog is kept
    # (nothing says it did not cite it).
    citing = {t.id for t in tasks if t.controls.get(framework)}
    known = {t.id: t.title for t in tasks}
    done = [
        c
        for c in history.completions_between(session=session, start=start, end=end)
        if c.task_id in citing or c.task_id not in known
    ]
    cap = settings.calendar.max_evidence_mb * 1024 * 1024
    records = []
    for c in done:
        doc = _completion_doc(c, known.get(c.task_id))
        if c.file is not None:
            record, missing = _add_evidence(
                writer,
                c,
                evidence_dir=settings.calendar.evidence_dir,
                cap=cap,
                fetch_s3=fetch_s3,
            )
            doc["evidence_file"] = record
            if record["path"] is not None:
                summary.evidence_files += 1
            if missing is not None:
                summary.missing.append(missing)
        records.append(doc)
    summary.completions = len(records)
    writer.put_text(
        "tasks/completions.json", json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    )

    rule_ids = {r.id for r in catalog.rules.values() if r.frameworks.get(framework)}
    events = history.events_between(
        session=session, start=start, end=end, rule_ids=rule_ids, account=account
    )
    _, lines = writer.put_lines("findings/events.csv", _event_lines(events))
    summary.events = lines - 1
    _, summary.audit_entries = writer.put_lines(
        "audit/audit.jsonl", _audit_lines(session, start, end)
    )


# ---- verifying a pack ------------------------------------------------------------------------


class _ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    path: str
    sha256: str
    size: int


class _Manifest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    format: str
    format_version: int
    files: list[_ManifestFile]


class _Signature(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    algorithm: str
    key_id: str
    signature: str


_DRIVE = re.compile(r"^[A-Za-z]:")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _shown(name: str) -> str:
    """A member name on one line, its control characters escaped."""
    text = name if len(name) <= 200 else name[:200] + "…"
    return json.dumps(text, ensure_ascii=False)[1:-1]


def unsafe_path(name: str) -> str | None:
    """Why a member path may not be in a pack (absolute, '..', a drive, a backslash), or None."""
    if not name:
        return "an empty name"
    if name.startswith("/") or _DRIVE.match(name):
        return "an absolute path"
    if "\\" in name or "\x00" in name:
        return "a backslash or NUL in its name"
    parts = name.split("/")
    if ".." in parts:
        return "a '..' in its path"
    if any(p in ("", ".") for p in parts):
        return "an empty or '.' part in its path"
    return None


@dataclass
class Verification:
    """What `verify_pack` found: every problem as one line naming the file at fault."""

    path: Path
    files: int = 0
    problems: list[str] = field(default_factory=list)
    signed: bool = False
    key_id: str | None = None
    signature_checked: bool = False

    @property
    def intact(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line saying what was checked."""
        files = "1 file" if self.files == 1 else f"{self.files} files"
        if self.signature_checked:
            sig = f"signature good (key id {self.key_id})"
        else:
            sig = "unsigned: the hashes show the files match the manifest, not who made it"
        return f"{self.path}: {files} match the manifest; {sig}"


def _read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    out = bytearray()
    with archive.open(info) as stream:
        while chunk := stream.read(_CHUNK):
            out += chunk
            if len(out) > cap:
                raise PackError(f"{_shown(info.filename)} is over {cap} bytes")
    return bytes(out)


def verify_pack(
    path: Path,
    *,
    key: str | None,
    max_entries: int = MAX_ENTRIES,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> Verification:
    """Check a pack without extracting it: its shape first (entries, paths, declared sizes),
    then the signature over the manifest's bytes, then every member's size and SHA-256
    streamed against the manifest; a missing or extra member is named."""
    result = Verification(path=path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise PackError(f"no such file: {str(path)!r}") from None
    except IsADirectoryError:
        raise PackError(f"{str(path)!r} is a directory, not a pack") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        result.problems.append(f"{path}: not a zip archive ({exc})")
        return result
    with archive:
        infos = archive.infolist()
        if len(infos) > max_entries:
            result.problems.append(
                f"{path}: refused: {len(infos)} entries, more than the {max_entries} a pack holds"
            )
            return result
        seen = _shape(result, infos, max_member_bytes, max_total_bytes)
        if not result.problems:
            _check_contents(result, archive, seen, key)
    return result


def _check_contents(
    result: Verification,
    archive: zipfile.ZipFile,
    seen: dict[str, zipfile.ZipInfo],
    key: str | None,
) -> None:
    """The signature over the manifest's bytes, then the members against the manifest."""
    manifest_info = seen.pop(MANIFEST, None)
    signature_info = seen.pop(SIGNATURE, None)
    if manifest_info is None:
        result.problems.append(f"{MANIFEST}: missing: a pack without a manifest")
        return
    try:
        body = _read_capped(archive, manifest_info, MAX_MANIFEST_BYTES)
        signature = (
            None
            if signature_info is None
            else _read_capped(archive, signature_info, MAX_SIGNATURE_BYTES)
        )
    except (PackError, zipfile.BadZipFile, OSError, ValueError) as exc:
        result.problems.append(f"{result.path}: refused: {exc}")
        return
    _check_signature(result, body, signature, key)
    try:
        manifest = _Manifest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        result.problems.append(
            f"{MANIFEST}: not a pack manifest ({where or 'document'}: {first['msg']})"
        )
        return
    if manifest.format != FORMAT:
        result.problems.append(f"{MANIFEST}: not a pack manifest (format {manifest.format!r})")
        return
    _check_members(result, archive, manifest, seen)


def _shape(
    result: Verification,
    infos: Sequence[zipfile.ZipInfo],
    max_member_bytes: int,
    max_total_bytes: int,
) -> dict[str, zipfile.ZipInfo]:
    """The members by name; a path or declared size that is refused is a problem."""
    seen: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        why = unsafe_path(info.filename)
        if why is not None:
            result.problems.append(f"{_shown(info.filename)}: refused: {why}")
        elif info.filename in seen:
            result.problems.append(f"{_shown(info.filename)}: refused: listed twice")
        elif info.file_size > max_member_bytes:
            result.problems.append(
                f"{_shown(info.filename)}: refused: declares {info.file_size} bytes, more "
                f"than the {max_member_bytes} a member may hold"
            )
        seen[info.filename] = info
        total += info.file_size
    if total > max_total_bytes:
        result.problems.append(
            f"{result.path}: refused: declares {total} bytes in all, more than {max_total_bytes}"
        )
    return seen


def _check_signature(result: Verification, body: bytes, raw: bytes | None, key: str | None) -> None:
    if raw is None:
        if key is not None:
            result.problems.append(
                f"{SIGNATURE}: missing: the pack is not signed although audit.hmac_key is set "
                "(it may have been re-made without the key)"
            )
        return
    result.signed = True
    try:
        signature = _Signature.model_validate_json(raw)
    except ValidationError:
        result.problems.append(f"{SIGNATURE}: not a signature document")
        return
    result.key_id = signature.key_id
    if key is None:
        result.problems.append(
            f"{SIGNATURE}: the pack is signed (key id {_shown(signature.key_id)}) but no key is "
            "set: set COMPLIANCEBOT_AUDIT__HMAC_KEY to the key that signed it to check it"
        )
        return
    if hmac.compare_digest(sign(body, key), signature.signature):
        result.signature_checked = True
        return
    mine = audit.key_id(key)
    if signature.key_id != mine:
        why = f"signed with another key (key id {_shown(signature.key_id)}, not {mine})"
    else:
        why = "the signature does not match: manifest.json was changed after signing"
    result.problems.append(f"{SIGNATURE}: {why}")


def _listed(result: Verification, manifest: _Manifest) -> dict[str, _ManifestFile]:
    """The manifest's files by path; a path or hash that cannot be right is a problem."""
    listed: dict[str, _ManifestFile] = {}
    for entry in manifest.files:
        why = unsafe_path(entry.path)
        if why is not None or entry.path in (MANIFEST, SIGNATURE):
            result.problems.append(f"{MANIFEST}: lists {_shown(entry.path)}: {why or 'itself'}")
        elif entry.path in listed:
            result.problems.append(f"{MANIFEST}: lists {_shown(entry.path)} twice")
        elif not _HEX64.match(entry.sha256) or entry.size < 0:
            result.problems.append(f"{MANIFEST}: {_shown(entry.path)} has no valid SHA-256 or size")
        else:
            listed[entry.path] = entry
    return listed


def _check_members(
    result: Verification,
    archive: zipfile.ZipFile,
    manifest: _Manifest,
    present: dict[str, zipfile.ZipInfo],
) -> None:
    listed = _listed(result, manifest)
    for name in sorted(set(listed) - set(present)):
        result.problems.append(f"{_shown(name)}: missing: listed in the manifest, not in the pack")
    for name in sorted(set(present) - set(listed)):
        result.problems.append(f"{_shown(name)}: extra: in the pack, not in the manifest")
    for name in sorted(set(listed) & set(present)):
        entry, info = listed[name], present[name]
        if info.file_size != entry.size:
            result.problems.append(
                f"{_shown(name)}: changed: {info.file_size} bytes, the manifest says {entry.size}"
            )
            continue
        digest = hashlib.sha256()
        size = 0
        try:
            with archive.open(info) as stream:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if size > entry.size:
                        break
                    digest.update(chunk)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            result.problems.append(f"{_shown(name)}: damaged: {' '.join(str(exc).split())}")
            continue
        if size != entry.size or digest.hexdigest() != entry.sha256:
            result.problems.append(
                f"{_shown(name)}: changed: its SHA-256 is not the manifest's ({entry.sha256})"
            )
            continue
        result.files += 1
