"""Where archives go (a local directory or S3) and `compliancebot archive run|list|restore`.

The archiving itself (what goes, the read-back check, the delete) is ledger/archive.py; this
module builds its store from the settings and gives it a command line.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from sqlalchemy.orm import Session, sessionmaker

from bot.files import WriteError, replacing
from bot.settings import ArchiveS3Settings, Settings
from ledger import archive
from ledger.archive import KINDS, ArchiveError, ArchiveStore
from ledger.db import transaction

_CHUNK = 1024 * 1024


class LocalStore:
    """Objects as files under a directory (each written whole or not at all)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root.resolve()):  # names are ours; refuse any escape
            raise ArchiveError(f"{name!r} is outside {self.root}")
        return path

    def location(self, name: str) -> str:
        return str(self.root / name)

    def put(self, name: str, body: IO[bytes], size: int) -> None:
        path = self._path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with replacing(path) as out:
                shutil.copyfileobj(body, out, _CHUNK)
        except (OSError, WriteError) as exc:
            raise ArchiveError(f"{self.location(name)}: cannot write: {exc}") from exc

    def get(self, name: str) -> Iterator[bytes]:
        try:
            with self._path(name).open("rb") as stream:
                while chunk := stream.read(_CHUNK):
                    yield chunk
        except OSError as exc:
            raise ArchiveError(f"{self.location(name)}: cannot read: {exc.strerror}") from exc


class S3Store:
    """Objects in an S3 bucket, with SSE-KMS and Object Lock when configured."""

    def __init__(self, config: ArchiveS3Settings, endpoint_url: str | None, client: Any = None):
        self.config = config
        self.bucket = config.bucket or ""
        self.prefix = config.prefix.strip("/")
        if client is None:
            import boto3

            client = boto3.client("s3", region_name=config.region, endpoint_url=endpoint_url)
        self.client = client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def location(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(name)}"

    def _failed(self, name: str, doing: str, exc: Exception) -> ArchiveError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            why = f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
        else:
            why = str(exc)
        return ArchiveError(f"{self.location(name)}: cannot {doing}: {why}")

    def put(self, name: str, body: IO[bytes], size: int) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        extra: dict[str, Any] = {}
        if self.config.kms_key_id:
            extra |= {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.config.kms_key_id}
        if self.config.object_lock_mode and self.config.object_lock_days:
            until = datetime.now(UTC) + timedelta(days=self.config.object_lock_days)
            extra |= {
                "ObjectLockMode": self.config.object_lock_mode,
                "ObjectLockRetainUntilDate": until,
            }
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(name),
                Body=body,
                ContentLength=size,
                ContentType="application/gzip",
                **extra,
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._failed(name, "write", exc) from exc

    def get(self, name: str) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
            yield from body.iter_chunks(_CHUNK)
        except (ClientError, BotoCoreError) as exc:
            raise self._failed(name, "read", exc) from exc


def store_for(settings: Settings) -> ArchiveStore:
    """The configured store, or an error saying what to set."""
    config = settings.archive
    if config.dir is not None:
        return LocalStore(config.dir)
    if config.s3.bucket is not None:
        return S3Store(config.s3, settings.aws.endpoint_url)
    raise ArchiveError(
        "no archive destination: set archive.dir (a directory) or archive.s3.bucket "
        "(COMPLIANCEBOT_ARCHIVE__DIR or COMPLIANCEBOT_ARCHIVE__S3__BUCKET)"
    )


def archive_job(
    *, settings: Settings, sessions: sessionmaker[Session], clock: Any
) -> archive.RunReport:
    """The scheduler's nightly run (and `archive run`)."""
    if not any(v is not None for v in settings.archive.ages().values()):
        return archive.RunReport()
    return archive.run(
        sessions=sessions, store=store_for(settings), days=settings.archive.ages(), clock=clock
    )


archive_app = typer.Typer(help="Retention: archive old rows, list and restore archives.")


def _kind(value: str) -> str:
    if value not in KINDS:
        raise typer.BadParameter(f"unknown kind {value!r}; known: {', '.join(KINDS)}")
    return value


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def register(app: typer.Typer, context: Any, printer: Any) -> None:
    """Add `archive` to the CLI; `context(ctx)` gives (settings, sessions), `printer` prints."""

    @archive_app.command("run")
    def run_command(ctx: typer.Context) -> None:
        """Archive every kind with an age set in archive.days; each object is read back and
        checked before its rows are deleted."""
        settings, sessions = context(ctx)
        report = archive_job(settings=settings, sessions=sessions, clock=lambda: datetime.now(UTC))
        printer(report.summary())

    @archive_app.command("list")
    def list_command(
        ctx: typer.Context,
        kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    ) -> None:
        """The archive objects: kind, day, rows, SHA-256 and where."""
        if kind is not None:
            _kind(kind)
        _settings, sessions = context(ctx)
        with sessions() as session:
            records = archive.listing(session=session, kind=kind)
        if not records:
            printer("no archives")
        for r in records:
            printer(f"{r.kind}  {r.day}  {r.rows} rows  sha256 {r.sha256[:16]}  {r.location}")

    @archive_app.command("restore")
    def restore_command(
        ctx: typer.Context,
        kind: Annotated[str, typer.Option(help="finding_events, audit, outbox or scans.")],
        day: Annotated[str, typer.Option(help="The day archived (YYYY-MM-DD).")],
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write JSON Lines here instead.")
        ] = None,
    ) -> None:
        """Put a day's archived rows back (checked against their hash first), or write them
        to a file; audit entries only to a file (the trail stays append-only)."""
        _kind(kind)
        when = _day(day)
        settings, sessions = context(ctx)
        store = store_for(settings)
        with sessions() as session:
            records = archive.objects_of(session=session, kind=kind, day=when)
        if not records:
            raise ArchiveError(f"no archive of {kind} for {when}")
        if output is not None:
            with replacing(output, "w") as out:
                for record in records:
                    for row in archive.lines(store, record):
                        out.write(json.dumps(row, sort_keys=True) + "\n")
            printer(f"wrote {sum(r.rows for r in records)} rows to {output}")
            return
        restored = present = 0
        with transaction(sessions) as session:
            for record in records:
                done, there = archive.restore(session=session, store=store, record=record)
                restored, present = restored + done, present + there
        printer(f"restored {restored} rows of {kind} for {when} ({present} already there)")

    app.add_typer(archive_app, name="archive")
