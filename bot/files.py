"""Files written whole or not at all: a temporary file beside the target, renamed over it once
complete, so a reader never sees half a report, export or pack, and a failure keeps the old file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, Literal, overload

from rules.errors import CompliancebotError


class WriteError(CompliancebotError):
    """A file could not be written; the message names it and says why."""

    def __init__(self, target: Path, reason: str) -> None:
        self.target = target
        self.reason = reason
        # repr: a path with a newline or a quote in it stays one readable line.
        super().__init__(f"cannot write {str(target)!r}: {reason}")


@overload
def replacing(
    target: Path, mode: Literal["wb"] = "wb", *, encoding: None = None, newline: None = None
) -> AbstractContextManager[IO[bytes]]: ...


@overload
def replacing(
    target: Path, mode: Literal["w"], *, encoding: str = "utf-8", newline: str | None = None
) -> AbstractContextManager[IO[str]]: ...


def replacing(
    target: Path,
    mode: Literal["wb", "w"] = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
) -> AbstractContextManager[IO[bytes]] | AbstractContextManager[IO[str]]:
    """Write `target` through the yielded temporary file: synced and renamed over `target` when
    the block ends normally; removed on any error, which leaves `target` as it was. An OSError
    (a missing folder, a full disk, a failed rename) becomes one WriteError naming `target`."""
    if mode == "w":
        return _replacing(target, mode, encoding or "utf-8", newline)
    return _replacing(target, mode, None, None)


@contextmanager
def _replacing(
    target: Path, mode: str, encoding: str | None, newline: str | None
) -> Iterator[IO[Any]]:
    directory = target.parent if str(target.parent) else Path()
    try:
        handle, name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError(target, exc.strerror or str(exc)) from None
    temporary = Path(name)
    try:
        with os.fdopen(handle, mode, encoding=encoding, newline=newline) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise WriteError(target, exc.strerror or str(exc)) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
