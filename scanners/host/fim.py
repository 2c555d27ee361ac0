"""File integrity monitoring: walk the watched paths, hash what changed, compare with the baseline.

The FimCollector hands on one `host.file` resource per path that differs from the accepted
baseline (added, modified, deleted, permissions); rules in rules/host/ judge them. The baseline is
read by the caller (ledger/fim.py) and passed in: scanners never touch the database.

Incremental: a regular file whose size, mtime and inode equal the baseline's keeps the baseline's
SHA-256 without being read, unless `verify` asks for a full hash. An unreadable file, a special
file (FIFO, socket, device) and a symlink loop are scan errors, never a crash; such a path's
resource is "unknown", so its finding is neither raised nor resolved on a guess.
"""

from __future__ import annotations

import errno
import fnmatch
import grp
import hashlib
import os
import pwd
import re
import socket
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from scanners.host.types import HOST_REGION, HOST_TYPES
from scanners.model import Collection, Resource, ScanError

FILE_TYPE = "host.file"
SERVICE = "fim"
_CHUNK = 1 << 20  # bytes read at a time while hashing
MAX_RESOURCE_ID = 1000  # findings.resource_id is 1,024 characters

# Shipped defaults for Linux: identity and authentication, privilege, SSH, keys and trust anchors,
# scheduled jobs, system binaries, loader and PAM configuration.
DEFAULT_WATCH: tuple[str, ...] = (
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/sudoers.d/*",
    "/etc/ssh/sshd_config",
    "/etc/ssh/sshd_config.d/*",
    "/etc/ssh/ssh_config",
    "/etc/ssl/private/*",
    "/etc/pki/**/private/*",
    "/etc/pki/ca-trust/source/anchors/*",
    "/usr/local/share/ca-certificates/**",
    "/root/.ssh/*",
    "/etc/crontab",
    "/etc/cron*/**",
    "/var/spool/cron/**",
    "/etc/pam.d/*",
    "/etc/security/*.conf",
    "/etc/login.defs",
    "/etc/ld.so.preload",
    "/etc/ld.so.conf",
    "/etc/hosts",
    "/etc/systemd/system/**",
    "/usr/bin/*",
    "/usr/sbin/*",
    "/usr/local/bin/*",
    "/usr/local/sbin/*",
)
# The first matching glob gives a path's finding severity (the rule's otherwise).
DEFAULT_SEVERITY: tuple[tuple[str, str], ...] = (
    ("/etc/shadow", "critical"),
    ("/etc/gshadow", "critical"),
    ("/etc/sudoers", "critical"),
    ("/etc/sudoers.d/*", "critical"),
    ("/root/.ssh/*", "critical"),
    ("/etc/ld.so.preload", "critical"),
    ("/etc/ssl/private/*", "critical"),
    ("/etc/pki/**/private/*", "critical"),
)
DEFAULT_MAX_HASH_BYTES = 512 * 1024 * 1024

# Attributes a change can name, in the order they are told.
ATTRIBUTES = ("type", "sha256", "size", "mode", "owner", "group", "inode", "mtime")
_CONTENT = frozenset({"type", "sha256", "size", "inode"})
_PERMISSIONS = frozenset({"mode", "owner", "group"})


class StatLike(Protocol):
    """What the walker reads of a stat result (os.stat_result, or a test's fake)."""

    @property
    def st_mode(self) -> int: ...
    @property
    def st_ino(self) -> int: ...
    @property
    def st_dev(self) -> int: ...
    @property
    def st_uid(self) -> int: ...
    @property
    def st_gid(self) -> int: ...
    @property
    def st_size(self) -> int: ...
    @property
    def st_mtime_ns(self) -> int: ...


StatFn = Callable[[str], StatLike]
# (path, its stat, the size limit, follow symlinks) -> SHA-256 hex, or None when over the limit.
HashFn = Callable[[str, StatLike, int, bool], str | None]


class FileState(NamedTuple):
    """One watched file as seen (or as accepted): what a change is measured against.

    A named tuple, not a dataclass: 100,000 of them are built per scan, twice.
    """

    path: str  # the real path (undecodable bytes as surrogate escapes, as os.fsdecode gives)
    kind: str  # "file", or "symlink" when links are not followed
    sha256: str | None  # of the content or the link target; None when over the size limit
    size: int
    mode: int
    uid: int
    gid: int
    inode: int
    mtime_ns: int
    owner: str | None = None
    group: str | None = None

    def attributes(self) -> dict[str, Any]:
        """The state as a resource shows it (permission bits in octal, names where known)."""
        return {
            "type": self.kind,
            "sha256": self.sha256,
            "size": self.size,
            "mode": f"{stat.S_IMODE(self.mode):04o}",
            "owner": self.owner if self.owner is not None else str(self.uid),
            "group": self.group if self.group is not None else str(self.gid),
            "uid": self.uid,
            "gid": self.gid,
            "inode": self.inode,
            "mtime": _iso(self.mtime_ns),
        }


@dataclass(frozen=True)
class FimOptions:
    """What to watch and how (bot/settings.py FimSettings builds it)."""

    host: str
    watch: tuple[str, ...] = DEFAULT_WATCH
    exclude: tuple[str, ...] = ()
    severity: tuple[tuple[str, str], ...] = DEFAULT_SEVERITY
    max_hash_bytes: int = DEFAULT_MAX_HASH_BYTES
    follow_symlinks: bool = False


@dataclass
class WalkStats:
    """What one walk did: to print, and for the bench."""

    files: int = 0
    hashed: int = 0
    hashed_bytes: int = 0
    skipped: int = 0  # unchanged size + mtime + inode: baseline hash kept
    seconds: float = 0.0


@dataclass
class Snapshot:
    """The watched files as found now."""

    states: dict[str, FileState] = field(default_factory=dict)
    errors: list[ScanError] = field(default_factory=list)
    unknown: set[str] = field(default_factory=set)  # matched, but could not be read
    # Equal to the baseline, when the snapshot was asked not to keep those states (a scan).
    same: set[str] = field(default_factory=set)
    stats: WalkStats = field(default_factory=WalkStats)


@dataclass(frozen=True)
class Change:
    """One path that differs from its baseline."""

    path: str
    change: str  # added, modified, deleted, permissions
    changed: tuple[str, ...]
    old: FileState | None
    new: FileState | None


# ---- paths as people see them ------------------------------------------------------------------

_NAMED = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_ESCAPE = re.compile(r"\\(\\|n|t|r|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def _plain_char(ch: str) -> bool:
    # Printable, and not a format character (bidi overrides, zero-width) that would reorder or
    # hide what is shown around it.
    return ch.isprintable() and not (
        "\u200b" <= ch <= "\u200f" or "\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069"
    )


def display_path(path: str) -> str:
    """`path` as shown and stored: one line, no control or bidi characters, reversible.

    Undecodable bytes become \\xNN, control and invisible characters \\n, \\t, \\r or \\uNNNN,
    and a backslash \\\\, so two different paths never show alike (undisplay_path inverts it).
    """
    if path.isascii() and path.isprintable() and "\\" not in path:
        return path
    out = []
    for ch in path:
        code = ord(ch)
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's escape of an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif _plain_char(ch) and not 0xD800 <= code <= 0xDFFF:
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def undisplay_path(shown: str) -> str:
    """The real path of a display_path() text (its inverse)."""
    if "\\" not in shown:
        return shown

    def one(m: re.Match[str]) -> str:
        escape = m.group(1)
        if escape == "\\":
            return "\\"
        if escape in ("n", "t", "r"):
            return {"n": "\n", "t": "\t", "r": "\r"}[escape]
        code = int(escape[1:], 16)
        return chr(0xDC00 + code) if escape[0] == "x" else chr(code)

    return _ESCAPE.sub(one, shown)


def path_key(path: str) -> str:
    """A path's identity in the baseline: SHA-256 of its raw bytes."""
    return hashlib.sha256(os.fsencode(path)).hexdigest()


def resource_id(path: str) -> str:
    """The finding's resource id: the displayed path, shortened with its key when too long."""
    shown = display_path(path)
    if len(shown) <= MAX_RESOURCE_ID:
        return shown
    return shown[: MAX_RESOURCE_ID - 18] + "…#" + path_key(path)[:16]


def _iso(mtime_ns: int) -> str:
    try:
        return datetime.fromtimestamp(mtime_ns / 1e9, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return str(mtime_ns)


# ---- globs -----------------------------------------------------------------------------------


def _components(pattern: str) -> list[str]:
    return [c for c in pattern.split("/") if c and c != "."]


def _magic(component: str) -> bool:
    return any(ch in component for ch in "*?[")


class Glob:
    """A path glob: `*`, `?` and `[...]` within one component (dot files included), `**` for any
    number of components (none included). Matched component by component, so a walk can prune
    directories no match can lie under."""

    def __init__(self, pattern: str) -> None:
        if not pattern.startswith("/"):
            raise ValueError(f"{pattern!r} is not an absolute path glob")
        comps = _components(pattern)
        literal = 0
        while literal < len(comps) and not _magic(comps[literal]):
            literal += 1
        self.pattern = pattern
        self.root = "/" + "/".join(comps[:literal])
        self.rest = tuple(comps[literal:])
        self._regex = [
            None if c == "**" else re.compile(fnmatch.translate(c), re.DOTALL) for c in self.rest
        ]
        self.start = self._closure({0})
        self._free: dict[frozenset[int], frozenset[int]] = {}

    def _closure(self, states: Iterable[int]) -> frozenset[int]:
        out = set(states)
        todo = list(out)
        while todo:
            i = todo.pop()
            if i < len(self.rest) and self.rest[i] == "**" and i + 1 not in out:
                out.add(i + 1)
                todo.append(i + 1)
        return frozenset(out)

    def step(self, states: frozenset[int], name: str) -> frozenset[int]:
        """The states after one more path component."""
        free = self._free.get(states)
        if free is not None:
            return free
        if all(i >= len(self.rest) or self.rest[i] == "**" for i in states):
            # Only `**` (or the end) ahead: any name leads to the same states, once computed.
            free = self._closure(i for i in states if i < len(self.rest))
            self._free[states] = free
            return free
        nxt = set()
        for i in states:
            if i >= len(self.rest):
                continue
            regex = self._regex[i]
            if regex is None:
                nxt.add(i)
            elif regex.match(name):
                nxt.add(i + 1)
        return self._closure(nxt) if nxt else frozenset()

    def accepts(self, states: frozenset[int]) -> bool:
        """A path that reached `states` matches the whole glob."""
        return len(self.rest) in states

    def alive(self, states: frozenset[int]) -> bool:
        """Something below a directory that reached `states` may still match."""
        return any(i < len(self.rest) for i in states)

    def states_of(self, path: str) -> frozenset[int] | None:
        """The states of `path` (None when it is not under the root)."""
        parts = _components(path)
        root = _components(self.root)
        if parts[: len(root)] != root:
            return None
        states = self.start
        for name in parts[len(root) :]:
            states = self.step(states, name)
            if not states:
                return states
        return states

    def matches(self, path: str) -> bool:
        states = self.states_of(path)
        return states is not None and self.accepts(states)


class _Matcher:
    """The watched and excluded globs together."""

    def __init__(self, options: FimOptions) -> None:
        self.watch = [Glob(p) for p in options.watch]
        self.exclude = [Glob(p) for p in options.exclude]
        self.severity = [(Glob(p), sev) for p, sev in options.severity]

    def excluded(self, path: str) -> bool:
        return bool(self.exclude) and any(g.matches(path) for g in self.exclude)

    def excluded_dir(self, path: str) -> bool:
        # A directory is pruned when it matches an exclude, or `dir/**` does.
        return any(g.matches(path) or g.matches(path + "/\x00") for g in self.exclude)

    def watched(self, path: str) -> bool:
        return any(g.matches(path) for g in self.watch) and not self.excluded(path)

    def severity_of(self, path: str) -> str | None:
        return next((sev for g, sev in self.severity if g.matches(path)), None)


# ---- reading one file ------------------------------------------------------------------------


def sha256_file(path: str, st: StatLike, limit: int, follow: bool) -> str | None:
    """SHA-256 of a regular file, streamed; None when it is larger than `limit` bytes.

    Opened without following a symlink (unless links are followed) and without blocking, and
    checked to be the file that was stat'ed: a path swapped for a FIFO or a link in between is an
    error, not a hang.
    """
    if st.st_size > limit:
        return None
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if not follow:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or opened.st_ino != st.st_ino:
            raise OSError(errno.ESTALE, "the file was replaced while it was read", path)
        digest = hashlib.sha256()
        read = 0
        while chunk := os.read(fd, _CHUNK):
            read += len(chunk)
            if read > limit:
                return None
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


@lru_cache(maxsize=4096)
def _user(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


@lru_cache(maxsize=4096)
def _group(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return None


def _special(mode: int) -> str | None:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return None


class _Reader:
    """Turns one path into a FileState, or an error; counts what it hashed."""

    def __init__(
        self,
        *,
        options: FimOptions,
        baseline: Mapping[str, FileState],
        verify: bool,
        hash_file: HashFn,
        lstat: StatFn | None,
        snapshot: Snapshot,
        keep_unchanged: bool = True,
    ) -> None:
        self.keep_unchanged = keep_unchanged
        self.options = options
        self.baseline = baseline
        self.verify = verify
        self.hash_file = hash_file
        self.lstat = lstat
        self.snapshot = snapshot

    def error(self, path: str, operation: str, code: str, message: str) -> None:
        self.snapshot.errors.append(
            ScanError(
                account=self.options.host,
                region=HOST_REGION,
                service=SERVICE,
                operation=operation,
                code=code,
                message=f"{display_path(path)[:900]}: {message}",
                resource_type=FILE_TYPE,
                resource_id=resource_id(path),
            )
        )
        self.snapshot.unknown.add(path)

    def os_error(self, path: str, operation: str, exc: OSError) -> None:
        if exc.errno == errno.ELOOP:
            code, message = "SymlinkLoop", "too many levels of symbolic links (a symlink loop)"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            code, message = "PermissionDenied", "permission denied"
        else:
            code = errno.errorcode.get(exc.errno or 0, "OSError")
            message = exc.strerror or str(exc)
        self.error(path, operation, code, message)

    def stat(self, path: str, entry: os.DirEntry[str] | None = None) -> StatLike:
        follow = self.options.follow_symlinks
        if self.lstat is not None:
            return self.lstat(path)
        if entry is not None:
            return entry.stat(follow_symlinks=follow)
        # os, not pathlib, here and below: str paths (surrogate-escaped names) in the hot loop.
        return os.stat(path, follow_symlinks=follow)  # noqa: PTH116

    def read(self, path: str, st: StatLike) -> FileState | None:
        """The state of `path` (stat'ed as `st`), or None after recording why it has none."""
        follow = self.options.follow_symlinks
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            kind = "symlink"
            try:
                target = os.readlink(path)  # noqa: PTH115
            except OSError as exc:
                self.os_error(path, "readlink", exc)
                return None
            sha: str | None = hashlib.sha256(os.fsencode(target)).hexdigest()
        elif stat.S_ISREG(mode):
            kind = "file"
            old = self.baseline.get(path)
            if (
                not self.verify
                and old is not None
                and old.kind == kind
                and old.size == st.st_size
                and old.mtime_ns == st.st_mtime_ns
                and old.inode == st.st_ino
            ):
                self.snapshot.stats.skipped += 1
                sha = old.sha256
            else:
                try:
                    sha = self.hash_file(path, st, self.options.max_hash_bytes, follow)
                except OSError as exc:
                    self.os_error(path, "read", exc)
                    return None
                self.snapshot.stats.hashed += 1
                self.snapshot.stats.hashed_bytes += st.st_size
        else:
            special = _special(mode) or "not a regular file"
            self.error(path, "stat", "SpecialFile", f"{special}: only files and links are watched")
            return None
        self.snapshot.stats.files += 1
        state = FileState(
            path=path,
            kind=kind,
            sha256=sha,
            size=st.st_size,
            mode=mode,
            uid=st.st_uid,
            gid=st.st_gid,
            inode=st.st_ino,
            mtime_ns=st.st_mtime_ns,
            owner=_user(st.st_uid),
            group=_group(st.st_gid),
        )
        if not self.keep_unchanged and self.baseline.get(path) == state:
            self.snapshot.same.add(path)  # a scan holds only what differs: less memory
            return None
        return state

    def one(self, path: str) -> FileState | None:
        """Stat and read one path; None when it is gone (no error) or unreadable (an error)."""
        try:
            st = self.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            self.os_error(path, "stat", exc)
            return None
        if stat.S_ISDIR(st.st_mode):
            return None
        return self.read(path, st)


def _join(parent: str, name: str) -> str:
    return parent + name if parent.endswith("/") else parent + "/" + name


def _walk_glob(glob: Glob, matcher: _Matcher, reader: _Reader, seen: set[str]) -> None:
    if not glob.rest:  # a literal path
        if glob.root not in seen and not matcher.excluded(glob.root):
            seen.add(glob.root)
            state = reader.one(glob.root)
            if state is not None:
                reader.snapshot.states[glob.root] = state
        return
    # (directory, states, the (dev, inode) of its ancestors: a followed link back up is a loop)
    try:
        top = os.stat(glob.root)  # noqa: PTH116 - str path, as every other stat here
    except OSError:
        top = None  # missing or unreadable: scandir below says which
    start = frozenset({(top.st_dev, top.st_ino)}) if top is not None else frozenset()
    stack: list[_Dir] = [(glob.root, glob.start, start)]
    while stack:
        directory, states, ancestors = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            reader.os_error(directory, "listdir", exc)
            continue
        for entry in entries:
            after = glob.step(states, entry.name)
            if after:
                _visit(
                    entry,
                    _join(directory, entry.name),
                    after,
                    ancestors,
                    glob,
                    matcher,
                    reader,
                    seen,
                    stack,
                )


_Dir = tuple[str, frozenset[int], frozenset[tuple[int, int]]]


def _visit(
    entry: os.DirEntry[str],
    path: str,
    after: frozenset[int],
    ancestors: frozenset[tuple[int, int]],
    glob: Glob,
    matcher: _Matcher,
    reader: _Reader,
    seen: set[str],
    stack: list[_Dir],
) -> None:
    follow = reader.options.follow_symlinks
    try:
        is_dir = entry.is_dir(follow_symlinks=follow)
    except OSError as exc:
        reader.os_error(path, "stat", exc)
        return
    if is_dir:
        if glob.alive(after) and not matcher.excluded_dir(path):
            _descend(entry, path, after, ancestors, reader, stack)
        return
    if not glob.accepts(after) or path in seen or matcher.excluded(path):
        return
    seen.add(path)
    try:
        st = reader.stat(path, entry)
    except (FileNotFoundError, NotADirectoryError):
        if follow and entry.is_symlink():
            reader.error(path, "stat", "DanglingSymlink", "the link's target is missing")
        return
    except OSError as exc:
        reader.os_error(path, "stat", exc)
        return
    state = reader.read(path, st)
    if state is not None:
        reader.snapshot.states[path] = state


def _descend(
    entry: os.DirEntry[str],
    path: str,
    after: frozenset[int],
    ancestors: frozenset[tuple[int, int]],
    reader: _Reader,
    stack: list[_Dir],
) -> None:
    try:
        dst = entry.stat(follow_symlinks=reader.options.follow_symlinks)
    except OSError as exc:
        reader.os_error(path, "stat", exc)
        return
    here = (dst.st_dev, dst.st_ino)
    if here in ancestors:
        reader.error(path, "listdir", "SymlinkLoop", "a symlink loop back to an ancestor")
        return
    stack.append((path, after, ancestors | {here}))


def snapshot(
    options: FimOptions,
    *,
    baseline: Mapping[str, FileState] | None = None,
    verify: bool = True,
    hash_file: HashFn = sha256_file,
    lstat: StatFn | None = None,
    paths: Iterable[str] | None = None,
    keep_unchanged: bool = True,
) -> Snapshot:
    """Every watched file now (or only `paths`, each if it is watched).

    Unless `verify`, a file unchanged in size, mtime and inode keeps the baseline's hash. Without
    `keep_unchanged`, a file equal to its baseline is only named in `same`.
    """
    started = time.perf_counter()
    matcher = _Matcher(options)
    result = Snapshot()
    reader = _Reader(
        options=options,
        baseline=baseline or {},
        verify=verify,
        hash_file=hash_file,
        lstat=lstat,
        snapshot=result,
        keep_unchanged=keep_unchanged,
    )
    if paths is not None:
        for path in paths:
            if matcher.watched(path):
                state = reader.one(path)
                if state is not None:
                    result.states[path] = state
    else:
        seen: set[str] = set()
        for glob in matcher.watch:
            _walk_glob(glob, matcher, reader, seen)
        # A baseline path the walk did not meet: gone only if the file system says so (a
        # directory that could not be listed hides files that are still there).
        met = result.states.keys() | result.unknown | result.same
        for path in (baseline or {}).keys() - met:
            if matcher.watched(path):
                state = reader.one(path)
                if state is not None:
                    result.states[path] = state
    result.stats.seconds = time.perf_counter() - started
    return result


# ---- comparing -------------------------------------------------------------------------------


def changed_attributes(old: FileState, new: FileState) -> tuple[str, ...]:
    """The attributes that differ; an mtime alone (a touched, identical file) is no change."""
    values = {
        "type": (old.kind, new.kind),
        "sha256": (old.sha256, new.sha256) if old.sha256 and new.sha256 else (None, None),
        "size": (old.size, new.size),
        "mode": (stat.S_IMODE(old.mode), stat.S_IMODE(new.mode)),
        "owner": (old.uid, new.uid),
        "group": (old.gid, new.gid),
        "inode": (old.inode, new.inode),
        "mtime": (old.mtime_ns, new.mtime_ns),
    }
    changed = tuple(a for a in ATTRIBUTES if values[a][0] != values[a][1])
    return () if changed == ("mtime",) else changed


def compare(
    baseline: Mapping[str, FileState], current: Snapshot, *, paths: Iterable[str] | None = None
) -> list[Change]:
    """What differs between the baseline and `current` (over `paths`, else every path)."""
    keys = set(paths) if paths is not None else baseline.keys() | current.states.keys()
    out = []
    for path in sorted(keys - current.unknown - current.same):
        old, new = baseline.get(path), current.states.get(path)
        if old is None and new is not None:
            out.append(Change(path, "added", (), None, new))
        elif old is not None and new is None:
            out.append(Change(path, "deleted", (), old, None))
        elif old is not None and new is not None:
            changed = changed_attributes(old, new)
            if set(changed) & _CONTENT:
                out.append(Change(path, "modified", changed, old, new))
            elif set(changed) & _PERMISSIONS:
                out.append(Change(path, "permissions", changed, old, new))
    return out


def _diff(change: Change) -> list[dict[str, str]]:
    if change.old is None or change.new is None:
        return []
    old, new = change.old.attributes(), change.new.attributes()
    return [{"attr": a, "old": str(old[a]), "new": str(new[a])} for a in change.changed]


def change_data(change: Change) -> dict[str, Any]:
    """A change as the resource's data (the keys in scanners.host.types HOST_TYPES)."""
    return {
        "path": display_path(change.path),
        "change": change.change,
        "changed": list(change.changed),
        "old": change.old.attributes() if change.old else None,
        "new": change.new.attributes() if change.new else None,
        "diff": _diff(change),
    }


# ---- the collector ---------------------------------------------------------------------------


class FimCollector:
    """The Collector of `host.file`: one resource per path that differs from the baseline."""

    def __init__(
        self,
        *,
        options: FimOptions,
        baseline: Mapping[str, FileState],
        verify: bool = False,
        hash_file: HashFn = sha256_file,
        lstat: StatFn | None = None,
    ) -> None:
        self.options = options
        self.baseline = baseline
        self.verify = verify
        self.hash_file = hash_file
        self.lstat = lstat
        self.changes: list[Change] = []
        self.last: Snapshot | None = None

    @property
    def resource_types(self) -> frozenset[str]:
        return frozenset({FILE_TYPE})

    def collect(
        self,
        *,
        needs: Mapping[str, set[str]] | None = None,
        accounts: set[str] | None = None,
        regions: set[str] | None = None,
        only: tuple[str, str] | None = None,
    ) -> Collection:
        """Walk (or, with `only`, check one path), compare with the baseline, hand on changes."""
        host = self.options.host
        collection = Collection()
        if (accounts and host not in accounts) or (regions and HOST_REGION not in regions):
            return collection
        if only is not None and only[0] != FILE_TYPE:
            return collection
        paths = [undisplay_path(only[1])] if only is not None else None
        now = snapshot(
            self.options,
            baseline=self.baseline,
            verify=self.verify,
            hash_file=self.hash_file,
            lstat=self.lstat,
            paths=paths,
            keep_unchanged=False,
        )
        if paths is not None:  # a path no longer watched has nothing to say
            paths = [p for p in paths if _Matcher(self.options).watched(p)]
        self.last = now
        self.changes = compare(self.baseline, now, paths=paths)
        matcher = _Matcher(self.options)
        collection.resources = [self._resource(c, matcher) for c in self.changes]
        unknown_keys = frozenset(HOST_TYPES[FILE_TYPE]) - {"path"}
        collection.resources += [
            Resource(
                type=FILE_TYPE,
                id=resource_id(path),
                account=host,
                region=HOST_REGION,
                data={"path": display_path(path)},
                name=None,
                unknown=unknown_keys,
            )
            for path in sorted(now.unknown)
        ]
        collection.errors = now.errors
        collection.listed.add((FILE_TYPE, host, HOST_REGION))
        collection.accounts = {host}
        collection.regions = {host: [HOST_REGION]}
        return collection

    def _resource(self, change: Change, matcher: _Matcher) -> Resource:
        return Resource(
            type=FILE_TYPE,
            id=resource_id(change.path),
            account=self.options.host,
            region=HOST_REGION,
            data=change_data(change),
            name=None,  # the id is the path (shortened past 1,000 characters)
            severity=matcher.severity_of(change.path),
        )


def iter_under(paths: Iterable[str], target: str) -> Iterator[str]:
    """The paths equal to `target`, under it (a directory), or matched by it (a glob)."""
    target = "/" + "/".join(_components(target)) if target.startswith("/") else target
    glob = Glob(target) if _magic(target) else None
    prefix = target.rstrip("/") + "/"
    for path in paths:
        if path == target or path.startswith(prefix) or (glob is not None and glob.matches(path)):
            yield path


def default_host() -> str:
    """This machine's host name, as a finding's account (at most 64 characters)."""
    name = socket.gethostname() or "localhost"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:64]


def is_glob(path: str) -> bool:
    """Whether `path` has glob characters (else it names one path)."""
    return any(_magic(c) for c in _components(path))


def is_watched(options: FimOptions, path: str) -> bool:
    """Whether a watch glob matches `path` and no exclude does."""
    return _Matcher(options).watched(path)
