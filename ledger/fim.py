"""The FIM baseline: the accepted state of each watched file per host, and who accepted it.

`fim baseline` records a host's whole baseline; `fim accept` makes the current state of some
paths the baseline. Both are written here, with an audit entry in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from ledger import audit, services
from ledger.models import FimBaseline
from scanners.host.fim import FileState, display_path, path_key, undisplay_path

_CHUNK = 5_000  # rows per insert


def batched(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Lists of `size` items (itertools.batched is Python 3.12)."""
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


MAX_OBJECT_ID = 128  # audit_log.object_id


class BaselineExistsError(services.LedgerError):
    """A host already has a baseline; replacing it must be asked for."""


_COLUMNS = (
    FimBaseline.path,
    FimBaseline.kind,
    FimBaseline.sha256,
    FimBaseline.size,
    FimBaseline.mode,
    FimBaseline.uid,
    FimBaseline.gid,
    FimBaseline.inode,
    FimBaseline.mtime_ns,
    FimBaseline.owner,
    FimBaseline.group,
)


def load_baseline(*, session: Session, host: str) -> dict[str, FileState]:
    """The host's baseline by real path (plain rows, no ORM objects: it can be 100,000 files)."""
    rows = session.execute(select(*_COLUMNS).where(FimBaseline.host == host))
    out: dict[str, FileState] = {}
    for shown, kind, sha, size, mode, uid, gid, inode, mtime_ns, owner, group in rows:
        path = undisplay_path(shown)
        out[path] = FileState(
            path, kind, sha, size, mode, uid, gid, int(inode), mtime_ns, owner, group
        )
    return out


def baseline_size(*, session: Session, host: str) -> int:
    """How many files the host's baseline holds (0: none recorded)."""
    return int(
        session.scalar(
            select(func.count()).select_from(FimBaseline).where(FimBaseline.host == host)
        )
        or 0
    )


def _row(host: str, state: FileState, actor: str, reason: str, now: datetime) -> dict[str, Any]:
    return {
        "host": host,
        "path_key": path_key(state.path),
        "path": display_path(state.path),
        "kind": state.kind,
        "sha256": state.sha256,
        "size": state.size,
        "mode": state.mode,
        "uid": state.uid,
        "gid": state.gid,
        "owner": (state.owner or "")[:64] or None,
        "group": (state.group or "")[:64] or None,
        "inode": str(state.inode),
        "mtime_ns": state.mtime_ns,
        "accepted_by": actor,
        "accepted_at": now,
        "reason": reason,
    }


def _insert(session: Session, rows: Iterable[dict[str, Any]]) -> int:
    """Insert in chunks, building each chunk's dicts only when it is sent; returns the count."""
    count = 0
    for chunk in batched(rows, _CHUNK):
        session.execute(insert(FimBaseline), list(chunk))
        count += len(chunk)
    return count


def record_baseline(
    *,
    session: Session,
    host: str,
    states: Iterable[FileState],
    actor: str,
    reason: str,
    now: datetime,
    force: bool = False,
) -> int:
    """Make `states` the host's whole baseline; refused when one exists, unless `force`."""
    existing = baseline_size(session=session, host=host)
    if existing and not force:
        raise BaselineExistsError(
            f"host {host} already has a baseline of {existing} files; `fim accept PATH` accepts "
            "a change, --force replaces the whole baseline"
        )
    session.execute(delete(FimBaseline).where(FimBaseline.host == host))
    count = _insert(session, (_row(host, s, actor, reason, now) for s in states))
    audit.append(
        session,
        [
            {
                "at": now,
                "actor": actor,
                "action": "fim.baseline",
                "object_type": "fim_host",
                "object_id": host,
                "detail": {"files": count, "replaced": existing, "reason": reason},
            }
        ],
    )
    return count


def _object_id(host: str, path: str) -> str:
    shown = f"{host}:{display_path(path)}"
    return shown if len(shown) <= MAX_OBJECT_ID else f"{host}:{path_key(path)}"


def accept(
    *,
    session: Session,
    host: str,
    current: Mapping[str, FileState | None],
    baseline: Mapping[str, FileState],
    actor: str,
    reason: str,
    now: datetime,
) -> list[str]:
    """Make the current state of each path the baseline (None: the file is gone, so it leaves
    the baseline); one audit entry per path that changed. Returns those paths."""
    accepted = []
    entries = []
    rows = []
    gone = []
    for path, new in sorted(current.items()):
        old = baseline.get(path)
        if old == new:
            continue
        accepted.append(path)
        gone.append(path_key(path))
        if new is not None:
            rows.append(_row(host, new, actor, reason, now))
        entries.append(
            {
                "at": now,
                "actor": actor,
                "action": "fim.accept",
                "object_type": "fim_path",
                "object_id": _object_id(host, path),
                "detail": {
                    "host": host,
                    "path": display_path(path),
                    "reason": reason,
                    "old": old.attributes() if old else None,
                    "new": new.attributes() if new else None,
                },
            }
        )
    for start in range(0, len(gone), _CHUNK):
        session.execute(
            delete(FimBaseline).where(
                FimBaseline.host == host, FimBaseline.path_key.in_(gone[start : start + _CHUNK])
            )
        )
    _insert(session, rows)
    audit.append(session, entries)
    return accepted
