"""File integrity monitoring on temporary trees: what changed, what it costs, what is refused."""

from __future__ import annotations

import fnmatch
import os
import socket
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from rules.catalog import load_catalog
from rules.conditions import EvalContext
from rules.engine import Verdict, evaluate, evaluate_all
from scanners.host.fim import (
    FileState,
    FimCollector,
    FimOptions,
    Glob,
    StatLike,
    display_path,
    sha256_file,
    snapshot,
    undisplay_path,
)
from scanners.host.types import HOST_REGION
from scanners.model import Collection, Resource

CATALOG = load_catalog()
NOW = EvalContext(now=datetime(2026, 11, 1, tzinfo=UTC))
ROOT = os.geteuid() == 0


def options(tree: Path, **extra: Any) -> FimOptions:
    """Watch everything under `tree` on host "web-1"."""
    base: dict[str, Any] = {"host": "web-1", "watch": (f"{tree}/**",), "severity": ()}
    return FimOptions(**(base | extra))


def baseline_of(opts: FimOptions) -> dict[str, FileState]:
    """The accepted baseline: the tree as it is now, fully hashed."""
    found = snapshot(opts, verify=True)
    assert not found.errors, found.errors
    return found.states


def changes(
    opts: FimOptions, baseline: dict[str, FileState], **kwargs: Any
) -> dict[str, dict[str, Any]]:
    """{path shown: resource data} of the changes a scan hands on."""
    collection = FimCollector(options=opts, baseline=baseline, **kwargs).collect()
    return {r.id: r.data for r in collection.resources if not r.unknown}


def sentence(data: dict[str, Any]) -> str:
    """The finding's detail: what Slack, the ticket and `findings show` say."""
    resource = Resource(type="host.file", id="x", account="web-1", region=HOST_REGION, data=data)
    results = [
        r
        for r in evaluate_all(CATALOG.rules.values(), [resource], NOW)
        if r.verdict is Verdict.failed
    ]
    assert len(results) == 1, results
    assert results[0].detail is not None
    assert results[0].detail.text is not None
    return results[0].detail.text


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small watched tree: a config file, a key, a nested binary."""
    root = tmp_path / "w"
    (root / "etc").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "etc" / "sshd_config").write_text("PermitRootLogin no\n")
    (root / "etc" / "key").write_text("secret\n")
    (root / "bin" / "tool").write_bytes(b"\x7fELF" + b"\0" * 100)
    (root / "etc" / "key").chmod(0o600)
    return root


# ---- every kind of change ----------------------------------------------------------------------


def test_content_change_is_modified_with_old_and_new_hash(tree: Path) -> None:
    """Editing a watched file reports it modified, naming the old and new SHA-256 and size."""
    opts = options(tree)
    base = baseline_of(opts)
    target = tree / "etc" / "sshd_config"
    old_sha = base[str(target)].sha256
    target.write_text("PermitRootLogin yes\n")

    found = changes(opts, base)

    data = found[str(target)]
    assert data["change"] == "modified"
    assert {"sha256", "size"} <= set(data["changed"])
    text = sentence(data)
    assert text.startswith(f"{target} modified: sha256 {old_sha} -> ")
    assert "size 19 -> 20" in text


def test_added_and_deleted_files_are_reported(tree: Path) -> None:
    """A new file is "added" with its attributes; a removed one "deleted" with what it was."""
    opts = options(tree)
    base = baseline_of(opts)
    (tree / "etc" / "cron-backdoor").write_text("* * * * * root nc -e /bin/sh\n")
    (tree / "bin" / "tool").unlink()

    found = changes(opts, base)

    assert {p: d["change"] for p, d in found.items()} == {
        f"{tree}/etc/cron-backdoor": "added",
        f"{tree}/bin/tool": "deleted",
    }
    assert sentence(found[f"{tree}/etc/cron-backdoor"]).startswith(
        f"{tree}/etc/cron-backdoor added: file, 29 bytes, mode 0644, owner "
    )
    assert sentence(found[f"{tree}/bin/tool"]).startswith(
        f"{tree}/bin/tool deleted (was file, 104 bytes, mode 0644"
    )


def test_mode_change_is_a_permission_change(tree: Path) -> None:
    """chmod on a key (content untouched) is a permissions change: mode 0600 -> 0644."""
    opts = options(tree)
    base = baseline_of(opts)
    (tree / "etc" / "key").chmod(0o644)

    found = changes(opts, base)

    data = found[f"{tree}/etc/key"]
    assert (data["change"], data["changed"]) == ("permissions", ["mode"])
    assert sentence(data) == f"{tree}/etc/key permissions changed: mode 0600 -> 0644"


def test_setuid_bit_is_a_permission_change(tree: Path) -> None:
    """A setuid bit added to a binary is caught (0755 -> 4755)."""
    opts = options(tree)
    (tree / "bin" / "tool").chmod(0o755)
    base = baseline_of(opts)
    (tree / "bin" / "tool").chmod(0o4755)

    assert sentence(changes(opts, base)[f"{tree}/bin/tool"]).endswith("mode 0755 -> 4755")


@pytest.mark.skipif(not ROOT, reason="chown to another user needs root (see the fake-stat test)")
def test_owner_change_through_real_chown(tree: Path) -> None:
    """chown of a watched file (as root, for real) is a permissions change naming the owners."""
    opts = options(tree)
    base = baseline_of(opts)
    os.chown(tree / "etc" / "key", 54321, 54322)

    data = changes(opts, base)[f"{tree}/etc/key"]

    assert (data["change"], data["changed"]) == ("permissions", ["owner", "group"])
    assert [(d["attr"], d["new"]) for d in data["diff"]] == [("owner", "54321"), ("group", "54322")]


@dataclass
class _FakeStat:
    st_mode: int
    st_ino: int
    st_dev: int
    st_uid: int
    st_gid: int
    st_size: int
    st_mtime_ns: int


def test_owner_change_through_an_injected_stat(tree: Path) -> None:
    """An owner change seen through an injected stat (how a non-root run can test it)."""
    opts = options(tree)
    base = baseline_of(opts)
    key = str(tree / "etc" / "key")

    def lstat(path: str) -> StatLike:
        real = os.lstat(path)
        uid = 4242 if path == key else real.st_uid
        return _FakeStat(
            real.st_mode, real.st_ino, real.st_dev, uid, real.st_gid, real.st_size, real.st_mtime_ns
        )

    data = changes(opts, base, lstat=lstat)[key]

    assert (data["change"], data["changed"]) == ("permissions", ["owner"])
    assert data["diff"] == [{"attr": "owner", "old": base[key].owner or "0", "new": "4242"}]


def test_file_replaced_by_rename_is_caught_by_its_inode(tree: Path) -> None:
    """A file swapped by rename for an identical copy (same bytes, mode and mtime) is reported:
    its inode changed."""
    opts = options(tree)
    target = tree / "etc" / "sshd_config"
    base = baseline_of(opts)
    before = target.stat()
    copy = tree / "etc" / ".sshd_config.new"
    copy.write_bytes(target.read_bytes())
    os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))
    copy.rename(target)

    data = changes(opts, base)[str(target)]

    assert (data["change"], data["changed"]) == ("modified", ["inode"])


def test_touched_identical_file_is_not_reported_after_verify(tree: Path) -> None:
    """`touch` on a file (new mtime, same bytes) is no change, with or without --verify."""
    opts = options(tree)
    base = baseline_of(opts)
    os.utime(tree / "etc" / "sshd_config", ns=(1, 1_900_000_000_000_000_000))

    assert changes(opts, base, verify=True) == {}
    assert changes(opts, base) == {}


def test_verify_catches_a_same_size_edit_with_the_mtime_put_back(tree: Path) -> None:
    """An edit that keeps size, inode and mtime is skipped by the incremental scan and caught by
    --verify (that is what --verify is for)."""
    opts = options(tree)
    base = baseline_of(opts)
    target = tree / "etc" / "sshd_config"
    before = target.stat()
    with target.open("r+b") as f:  # same inode
        f.write(b"X")
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert changes(opts, base) == {}
    assert changes(opts, base, verify=True)[str(target)]["changed"] == ["sha256"]


# ---- what a scan costs -------------------------------------------------------------------------


class CountingHasher:
    """sha256_file, counting the files it reads."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, path: str, st: StatLike, limit: int, follow: bool) -> str | None:
        self.paths.append(path)
        return sha256_file(path, st, limit, follow)


def test_incremental_scan_skips_hashing_unchanged_files(tree: Path) -> None:
    """A rescan reads only the file whose size/mtime changed; --verify reads every file."""
    opts = options(tree)
    base = baseline_of(opts)
    (tree / "etc" / "sshd_config").write_text("Port 2222\n")

    quick = CountingHasher()
    FimCollector(options=opts, baseline=base, hash_file=quick).collect()
    full = CountingHasher()
    FimCollector(options=opts, baseline=base, hash_file=full, verify=True).collect()

    assert quick.paths == [str(tree / "etc" / "sshd_config")]
    assert sorted(full.paths) == sorted(base)


def test_file_over_the_size_limit_is_compared_without_reading(tree: Path) -> None:
    """A file larger than max_hash_bytes is never read; its size change still shows."""
    opts = options(tree, max_hash_bytes=50)
    hasher = CountingHasher()
    base = snapshot(opts, hash_file=hasher).states
    assert base[f"{tree}/bin/tool"].sha256 is None
    (tree / "bin" / "tool").write_bytes(b"\0" * 500)

    data = changes(opts, base)[f"{tree}/bin/tool"]

    assert data["changed"][:1] == ["size"]


# ---- bad input: errors, never crashes ----------------------------------------------------------


def _unknown(collection: Collection) -> dict[str, set[str]]:
    return {r.id: set(r.unknown) for r in collection.resources if r.unknown}


@pytest.mark.skipif(ROOT, reason="root reads a chmod 000 file (see the injected-error test)")
def test_unreadable_file_is_a_scan_error_not_a_deletion(tree: Path) -> None:
    """A chmod 000 file is a scan error; its finding is neither raised nor resolved."""
    opts = options(tree)
    base = baseline_of(opts)
    key = tree / "etc" / "key"
    key.write_text("other\n")
    key.chmod(0)

    collection = FimCollector(options=opts, baseline=base).collect()

    assert [(e.service, e.code) for e in collection.errors] == [("fim", "PermissionDenied")]
    assert str(key) in _unknown(collection)


def test_read_failure_is_a_scan_error_and_leaves_the_finding_alone(tree: Path) -> None:
    """A file the hasher cannot read (EACCES, injected: root reads anything) is a scan error
    naming the path; its resource is unknown to every rule, not deleted."""
    opts = options(tree)
    base = baseline_of(opts)
    key = str(tree / "etc" / "key")
    (tree / "etc" / "key").write_text("changed\n")

    def hasher(path: str, st: StatLike, limit: int, follow: bool) -> str | None:
        if path == key:
            raise PermissionError(13, "Permission denied", path)
        return sha256_file(path, st, limit, follow)

    collection = FimCollector(options=opts, baseline=base, hash_file=hasher).collect()

    assert [(e.service, e.operation, e.code, e.resource_id) for e in collection.errors] == [
        ("fim", "read", "PermissionDenied", key)
    ]
    (resource,) = collection.resources
    assert resource.id == key
    assert resource.unknown
    assert {evaluate(rule, resource, NOW) for rule in CATALOG.rules.values()} >= {Verdict.unknown}
    assert ("host.file", "web-1", HOST_REGION) in collection.listed


def test_fifo_and_socket_are_scan_errors(tree: Path, tmp_path: Path) -> None:
    """A FIFO (which would block a reader forever) and a socket are errors, not hangs."""
    os.mkfifo(tree / "etc" / "pipe")
    short = Path("/tmp") / f"fim-{os.getpid()}.sock"  # AF_UNIX paths are short
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(short))
        opts = options(tree, watch=(f"{tree}/**", str(short)))
        found = snapshot(opts)
    finally:
        sock.close()
        short.unlink(missing_ok=True)

    assert sorted((e.code, e.message) for e in found.errors) == [
        ("SpecialFile", f"{short}: a socket: only files and links are watched"),
        ("SpecialFile", f"{tree}/etc/pipe: a FIFO: only files and links are watched"),
    ]
    assert len(found.states) == 3


def test_symlink_loops_are_scan_errors_when_links_are_followed(tree: Path) -> None:
    """Followed links: a file loop (a -> b -> a) and a directory loop (up -> ..) are errors and
    the walk ends."""
    (tree / "etc" / "a").symlink_to("b")
    (tree / "etc" / "b").symlink_to("a")
    (tree / "bin" / "up").symlink_to("..")
    opts = options(tree, follow_symlinks=True)

    found = snapshot(opts)

    assert sorted((e.code, e.resource_id) for e in found.errors) == [
        ("SymlinkLoop", f"{tree}/bin/up"),
        ("SymlinkLoop", f"{tree}/etc/a"),
        ("SymlinkLoop", f"{tree}/etc/b"),
    ]


def test_links_not_followed_are_watched_as_links(tree: Path) -> None:
    """Unfollowed links (the default) are recorded by their target: a loop is no error, and a
    link re-pointed elsewhere is a modified link."""
    (tree / "etc" / "a").symlink_to("b")
    (tree / "etc" / "b").symlink_to("a")
    (tree / "bin" / "ln").symlink_to("/etc/passwd")
    opts = options(tree)
    base = baseline_of(opts)
    (tree / "bin" / "ln").unlink()
    (tree / "bin" / "ln").symlink_to("/etc/shadow")

    data = changes(opts, base)[f"{tree}/bin/ln"]

    assert data["change"] == "modified"
    assert data["new"]["type"] == "symlink"
    assert "sha256" in data["changed"]


# ---- which paths are watched -------------------------------------------------------------------


def test_globs_excludes_and_hidden_files(tmp_path: Path) -> None:
    """`*` stays in a directory and includes dot files, `**` spans any depth (none too), and an
    excluded directory is not walked."""
    for rel in ("a/x", "a/.hidden", "a/sub/y", "b/deep/er/private/k", "b/private/k2", "c/z"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    opts = options(
        tmp_path,
        watch=(f"{tmp_path}/a/*", f"{tmp_path}/b/**/private/*", f"{tmp_path}/c/**"),
        exclude=(f"{tmp_path}/c/**",),
    )

    found = sorted(Path(p).relative_to(tmp_path).as_posix() for p in snapshot(opts).states)

    assert found == ["a/.hidden", "a/x", "b/deep/er/private/k", "b/private/k2"]


def test_glob_matching_component_by_component() -> None:
    """The glob semantics the docs promise, on paths without touching the disk."""
    g = Glob("/etc/cron*/**")
    assert g.root == "/etc"
    assert g.matches("/etc/crontab")
    assert g.matches("/etc/cron.d/x/y")
    assert not g.matches("/etc/passwd")
    assert Glob("/usr/bin/*").matches("/usr/bin/-rf")
    assert not Glob("/usr/bin/*").matches("/usr/bin/sub/x")
    with pytest.raises(ValueError, match="absolute"):
        Glob("etc/passwd")


COMPONENT = st.text(alphabet="ab.-*?", min_size=1, max_size=4).filter(
    lambda c: c not in (".", "..", "**")
)
NAME = st.text(alphabet="ab.-", min_size=1, max_size=4).filter(lambda c: c not in (".", ".."))


@given(
    pattern=st.lists(COMPONENT, min_size=1, max_size=4),
    path=st.lists(NAME, min_size=1, max_size=5),
)
def test_glob_without_double_star_matches_as_fnmatch_per_component(
    pattern: list[str], path: list[str]
) -> None:
    """Without `**`, a glob matches exactly the paths of as many components, each matched by
    fnmatch (dot files included): the walker prunes nothing a plain glob would match."""
    expected = len(pattern) == len(path) and all(
        fnmatch.fnmatchcase(name, comp) for name, comp in zip(path, pattern, strict=False)
    )
    assert Glob("/" + "/".join(pattern)).matches("/" + "/".join(path)) == expected


def test_severity_override_and_host_identity(tree: Path) -> None:
    """A path with a configured severity carries it; the host is the account, "host" the region."""
    opts = options(tree, severity=((f"{tree}/etc/key", "critical"), (f"{tree}/**", "low")))
    base = baseline_of(opts)
    (tree / "etc" / "key").chmod(0o666)
    (tree / "bin" / "tool").chmod(0o777)

    collection = FimCollector(options=opts, baseline=base).collect()

    assert {(r.id, r.severity, r.account, r.region) for r in collection.resources} == {
        (f"{tree}/etc/key", "critical", "web-1", HOST_REGION),
        (f"{tree}/bin/tool", "low", "web-1", HOST_REGION),
    }
    assert collection.listed == {("host.file", "web-1", HOST_REGION)}


def test_recheck_of_one_path_and_other_hosts(tree: Path) -> None:
    """A re-check (`only`) looks at that one path; another host's scan collects nothing."""
    opts = options(tree)
    base = baseline_of(opts)
    (tree / "etc" / "key").chmod(0o644)
    (tree / "bin" / "tool").unlink()
    hasher = CountingHasher()
    collector = FimCollector(options=opts, baseline=base, hash_file=hasher)

    one = collector.collect(only=("host.file", f"{tree}/etc/key"))
    other = collector.collect(accounts={"db-1"})

    assert [(r.id, r.data["change"]) for r in one.resources] == [(f"{tree}/etc/key", "permissions")]
    assert other.resources == []
    assert other.listed == set()


# ---- hostile names -----------------------------------------------------------------------------

NAMES = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00"),
    min_size=1,
    max_size=40,
).filter(lambda n: n not in (".", ".."))


@hsettings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
@example(name="-rf\n*Resolved by admin*")
@example(name="\u202etxt.exe")
@example(name="back\\slash\\n")
@example(name="<!channel> &amp;")
def test_odd_file_names_are_shown_escaped_and_reversible(tmp_path: Path, name: str) -> None:
    """A file named with newlines, bidi overrides, backslashes, leading dashes or unicode shows
    in the finding's detail on one line, escaped, and maps back to the real file."""
    root = tmp_path / "odd"
    root.mkdir(exist_ok=True)
    for old in root.iterdir():
        old.unlink()
    try:
        (root / name).write_text("x")
    except OSError:  # a name too long in bytes for the file system
        return
    opts = options(root)
    found = changes(opts, {})
    (shown,) = found
    assert undisplay_path(shown) == f"{root}/{name}"
    assert shown.isprintable()
    assert "\u202e" not in shown
    assert sentence(found[shown]).startswith(shown[:190])


def test_undecodable_bytes_in_a_name_are_escaped(tmp_path: Path) -> None:
    """A name that is not UTF-8 shows its bytes as \\xNN and still maps back to the file."""
    raw = os.fsencode(tmp_path) + b"/bad-\xff\xfe-name"
    with open(raw, "wb") as f:  # noqa: PTH123 - bytes path
        f.write(b"x")
    opts = options(tmp_path)

    (shown,) = changes(opts, {})

    assert shown == f"{tmp_path}/bad-\\xff\\xfe-name"
    assert os.fsencode(undisplay_path(shown)) == raw


@given(raw=st.binary(min_size=1, max_size=60))
def test_display_is_one_printable_line_and_inverts(raw: bytes) -> None:
    """Any path bytes: the shown text is printable and maps back to exactly those bytes."""
    path = os.fsdecode(raw.replace(b"\x00", b""))
    shown = display_path(path)
    assert shown.isprintable()
    assert undisplay_path(shown) == path


def test_stat_protocol_matches_os_stat() -> None:
    """os.stat_result satisfies what the walker reads (the injection point's type)."""
    value: StatLike = Path().stat()
    assert stat.S_ISDIR(value.st_mode)
