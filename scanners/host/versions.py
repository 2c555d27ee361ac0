"""Version order per package ecosystem, and OSV's affected-range semantics over it.

Debian and Ubuntu order versions as dpkg does (python-debian's `debian_support.Version`: epochs,
`~` before anything, letters before non-letters); PyPI by PEP 440 (`packaging`: pre-, post- and
dev releases); npm, and every range of type SEMVER, by SemVer 2.0 precedence (`semver`); the RPM
distributions as rpm's `rpmvercmp` does (epoch, then version, then release; `~` sorts before and
`^` after the end of a version): no well-kept pure-Python library offers that comparison, so it
is implemented here, line for line after rpm's C function (rpmio/rpmvercmp.c).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import semver
from debian.debian_support import Version as DebianVersion
from packaging.version import InvalidVersion
from packaging.version import Version as Pep440Version

Family = Literal["dpkg", "rpm", "pep440", "semver"]

# OSV ecosystem (the part before any ":release") -> how its versions are ordered.
ECOSYSTEM_FAMILY: Mapping[str, Family] = {
    "Debian": "dpkg",
    "Ubuntu": "dpkg",
    "PyPI": "pep440",
    "npm": "semver",
    "Red Hat": "rpm",
    "AlmaLinux": "rpm",
    "Rocky Linux": "rpm",
    "openSUSE": "rpm",
    "SUSE": "rpm",
    "Mageia": "rpm",
    "openEuler": "rpm",
    "Photon OS": "rpm",
    "Azure Linux": "rpm",
}

MAX_VERSION = 256  # characters of a version string; longer is not a version


class VersionError(ValueError):
    """A version string this ecosystem's order cannot place."""


def ecosystem_base(ecosystem: str) -> str:
    """ "Debian:12" -> "Debian"; "PyPI" -> "PyPI"."""
    return ecosystem.split(":", 1)[0]


def family_of(ecosystem: str) -> Family | None:
    """How the ecosystem's versions are ordered; None for one we cannot order."""
    return ECOSYSTEM_FAMILY.get(ecosystem_base(ecosystem))


_PEP503 = re.compile(r"[-_.]+")


def normalize_name(ecosystem: str, name: str) -> str:
    """The package name as matching compares it: PEP 503 for PyPI, lower case for Debian
    (its names are), as given elsewhere (npm and RPM names are case-sensitive)."""
    base = ecosystem_base(ecosystem)
    if base == "PyPI":
        return _PEP503.sub("-", name).lower()
    if family_of(base) == "dpkg":
        return name.lower()
    return name


# ---- rpm -----------------------------------------------------------------------------------


def _isalpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _isdigit(c: str) -> bool:
    return "0" <= c <= "9"


def rpmvercmp(a: str, b: str) -> int:  # noqa: PLR0911, PLR0912 - a port of rpm's C, kept as it reads
    """rpm's rpmvercmp(): -1, 0 or 1 as version (or release) `a` sorts before, with, after `b`."""
    if a == b:
        return 0
    one, two = a + "\0", b + "\0"  # a sentinel, as the C strings have
    i = j = 0
    while one[i] != "\0" or two[j] != "\0":
        while one[i] != "\0" and not (_isalpha(one[i]) or _isdigit(one[i])) and one[i] not in "~^":
            i += 1
        while two[j] != "\0" and not (_isalpha(two[j]) or _isdigit(two[j])) and two[j] not in "~^":
            j += 1
        # A tilde sorts before everything else, the end of the string included.
        if one[i] == "~" or two[j] == "~":
            if one[i] != "~":
                return 1
            if two[j] != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        # A caret sorts after the end of the string but before anything else.
        if one[i] == "^" or two[j] == "^":
            if one[i] == "\0":
                return -1
            if two[j] == "\0":
                return 1
            if one[i] != "^":
                return 1
            if two[j] != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if one[i] == "\0" or two[j] == "\0":
            break
        end1, end2 = i, j
        isnum = _isdigit(one[i])
        kind = _isdigit if isnum else _isalpha
        while one[end1] != "\0" and kind(one[end1]):
            end1 += 1
        while two[end2] != "\0" and kind(two[end2]):
            end2 += 1
        if end1 == i:
            return -1  # cannot happen: one[i] is alphanumeric (kept from rpm: "arbitrary")
        if end2 == j:
            # Segments of different kinds: a numeric one is newer than an alphabetic one.
            return 1 if isnum else -1
        seg1, seg2 = one[i:end1], two[j:end2]
        if isnum:
            seg1, seg2 = seg1.lstrip("0"), seg2.lstrip("0")
            if len(seg1) != len(seg2):
                return 1 if len(seg1) > len(seg2) else -1
        if seg1 != seg2:
            return 1 if seg1 > seg2 else -1
        i, j = end1, end2
    if one[i] == "\0" and two[j] == "\0":
        return 0
    return -1 if one[i] == "\0" else 1


class RpmVersion:
    """[epoch:]version[-release], ordered as rpm orders packages (rpmVersionCompare)."""

    __slots__ = ("epoch", "release", "version")

    def __init__(self, epoch: int, version: str, release: str | None) -> None:
        self.epoch, self.version, self.release = epoch, version, release

    @classmethod
    def parse(cls, text: str) -> RpmVersion:
        """'2:1.0-3.el9' -> epoch 2, version 1.0, release 3.el9 (no epoch is epoch 0)."""
        epoch = 0
        head, sep, rest = text.partition(":")
        if sep:
            if not head.isdigit() or not head.isascii():
                raise VersionError(f"{text!r}: the epoch before ':' must be a whole number")
            epoch, text = int(head), rest
        version, sep, release = text.rpartition("-")
        if not sep:
            version, release = text, ""
        if not version or not any(c.isalnum() for c in version):
            raise VersionError(f"{text!r} has no version")
        return cls(epoch, version, release if sep else None)

    def compare(self, other: RpmVersion) -> int:
        """-1, 0, 1; a release is compared only when both have one, as rpm does."""
        if self.epoch != other.epoch:
            return -1 if self.epoch < other.epoch else 1
        rc = rpmvercmp(self.version, other.version)
        if rc or self.release is None or other.release is None:
            return rc
        return rpmvercmp(self.release, other.release)

    def __lt__(self, other: RpmVersion) -> bool:
        return self.compare(other) < 0

    def __le__(self, other: RpmVersion) -> bool:
        return self.compare(other) <= 0

    def __gt__(self, other: RpmVersion) -> bool:
        return self.compare(other) > 0

    def __ge__(self, other: RpmVersion) -> bool:
        return self.compare(other) >= 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RpmVersion) and self.compare(other) == 0

    __hash__ = None  # type: ignore[assignment]  # equal versions may differ in text ("01" == "1")

    def __repr__(self) -> str:
        release = f"-{self.release}" if self.release is not None else ""
        return f"RpmVersion('{self.epoch}:{self.version}{release}')"


# ---- one entry point -----------------------------------------------------------------------


def _semver(text: str) -> semver.Version:
    # npm writes "1.2.3"; a leading "v" or "=" is accepted there (node-semver's loose parse).
    return semver.Version.parse(text.strip().lstrip("=v").strip())


@lru_cache(maxsize=65536)
def parse(family: Family, text: str) -> Any:
    """A value that orders as the family orders `text`; VersionError when it is no version."""
    if not isinstance(text, str) or not text or len(text) > MAX_VERSION:
        raise VersionError(f"{str(text)[:40]!r} is not a version")
    try:
        if family == "dpkg":
            return DebianVersion(text)
        if family == "pep440":
            return Pep440Version(text)
        if family == "semver":
            return _semver(text)
        return RpmVersion.parse(text)
    except (ValueError, TypeError, InvalidVersion) as exc:
        if isinstance(exc, VersionError):
            raise
        raise VersionError(f"{text[:40]!r} is not a {family} version: {exc}") from None


def compare(family: Family, a: str, b: str) -> int:
    """-1, 0 or 1 as `a` is older than, equal to, or newer than `b` in the family's order."""
    x, y = parse(family, a), parse(family, b)
    return -1 if x < y else (1 if x > y else 0)


# ---- OSV ranges ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Affected:
    """An installed version falls in an advisory's affected set."""

    fixed: str | None  # the first fixed version after it in the matching range, if known
    why: str  # "range" or "versions" (listed explicitly)


def _in_range(family: Family, installed: Any, events: Sequence[Any]) -> tuple[bool, str | None]:
    """OSV's evaluation of one range's events for `installed` (its parsed version).

    Events are sorted by version ("introduced: 0" first); walking them in order, an introduced
    at or below the version makes it vulnerable, a fixed at or below it, or a last_affected
    below it, makes it not. Returns (affected, the first fixed above it).
    """
    keyed: list[tuple[int, Any, str, str]] = []
    for event in events:
        if not isinstance(event, Mapping) or len(event) != 1:
            raise VersionError("an event is one of {introduced|fixed|last_affected|limit: v}")
        ((kind, value),) = event.items()
        if kind == "limit":
            continue  # only for GIT ranges, which we do not evaluate
        if kind not in ("introduced", "fixed", "last_affected") or not isinstance(value, str):
            raise VersionError(f"unknown event {kind!r}")
        if kind == "introduced" and value == "0":
            keyed.append((0, None, kind, value))
        else:
            keyed.append((1, parse(family, value), kind, value))
    ordered = sorted(keyed, key=_order_key)
    vulnerable = False
    fixed_above: str | None = None
    for rank, version, kind, text in ordered:
        below_or_at = rank == 0 or version <= installed
        if kind == "introduced":
            vulnerable = vulnerable or below_or_at
        elif kind == "fixed":
            if below_or_at:
                vulnerable = False
            elif fixed_above is None and vulnerable:
                fixed_above = text
        elif rank == 1 and version < installed:  # last_affected below the installed version
            vulnerable = False
    return vulnerable, (fixed_above if vulnerable else None)


class _Key:
    """Sort key over parsed versions, which only support < among themselves."""

    __slots__ = ("rank", "version")

    def __init__(self, rank: int, version: Any) -> None:
        self.rank, self.version = rank, version

    def __lt__(self, other: _Key) -> bool:
        if self.rank != other.rank:
            return self.rank < other.rank
        return self.rank == 1 and bool(self.version < other.version)


def _order_key(item: tuple[int, Any, str, str]) -> _Key:
    return _Key(item[0], item[1])


def affected(
    *, ecosystem: str, version: str, ranges: Iterable[Any], versions: Iterable[Any]
) -> Affected | None:
    """Whether `version` of a package in `ecosystem` is affected by one advisory's entry for it.

    A version listed in `versions` is affected; so is one inside an ECOSYSTEM or SEMVER range
    (GIT ranges name commits and are skipped). A range whose versions do not parse is skipped,
    not guessed. Raises VersionError when the installed version itself cannot be ordered.
    """
    family = family_of(ecosystem)
    if family is None:
        raise VersionError(f"no version order known for ecosystem {ecosystem!r}")
    installed = parse(family, version)
    found: Affected | None = None
    for entry in ranges:
        if not isinstance(entry, Mapping):
            continue
        kind = entry.get("type")
        if kind not in ("ECOSYSTEM", "SEMVER"):
            continue
        range_family: Family = "semver" if kind == "SEMVER" else family
        try:
            mine = installed if range_family == family else parse(range_family, version)
            hit, fixed = _in_range(range_family, mine, entry.get("events") or [])
        except VersionError:
            continue
        if hit:
            if fixed is not None or found is None:
                found = Affected(fixed=fixed, why="range")
            if fixed is not None:
                return found
    if found is not None:
        return found
    return _listed(family, version, installed, versions)


def _listed(
    family: Family, version: str, installed: Any, versions: Iterable[Any]
) -> Affected | None:
    """Affected when `versions` lists the installed version (as text, or equal in order)."""
    for listed in versions:
        if not isinstance(listed, str):
            continue
        if listed == version:
            return Affected(fixed=None, why="versions")
        try:
            if parse(family, listed) == installed:
                return Affected(fixed=None, why="versions")
        except VersionError:
            continue
    return None
