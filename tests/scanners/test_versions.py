"""Version order per ecosystem and OSV range semantics, checked against reference comparators:
dpkg itself, node's semver (npm's own), packaging for PEP 440, and rpm's own test cases."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from packaging.version import Version as Pep440

from scanners.host.versions import (
    Family,
    RpmVersion,
    VersionError,
    affected,
    compare,
    normalize_name,
    rpmvercmp,
)

# rpm's own test suite (tests/rpmvercmp.at): (a, b, rpmvercmp(a, b)).
RPM_CASES = [
    ("1.0", "1.0", 0),
    ("1.0", "2.0", -1),
    ("2.0.1", "2.0", 1),
    ("2.0.1a", "2.0.1", 1),
    ("5.5p1", "5.5p2", -1),
    ("5.5p1", "5.5p10", -1),
    ("10xyz", "10.1xyz", -1),
    ("xyz10", "xyz10.1", -1),
    ("xyz.4", "8", -1),
    ("xyz.4", "2", -1),
    ("5.5p2", "5.6p1", -1),
    ("5.6p1", "6.5p1", -1),
    ("6.0.rc1", "6.0", 1),
    ("10b2", "10a1", 1),
    ("10a2", "10b2", -1),
    ("1.0a", "1.0aa", -1),
    ("10.0001", "10.1", 0),
    ("10.0001", "10.0039", -1),
    ("4.999.9", "5.0", -1),
    ("20101121", "20101122", -1),
    ("2_0", "2.0", 0),
    ("a+", "a_", 0),
    ("+a", "_a", 0),
    ("_+", "+_", 0),
    ("+", "_", 0),
    ("1.0~rc1", "1.0", -1),
    ("1.0~rc1", "1.0~rc2", -1),
    ("1.0~rc1~git123", "1.0~rc1", -1),
    ("1.0^", "1.0", 1),
    ("1.0^git1", "1.0", 1),
    ("1.0^git1", "1.0^git2", -1),
    ("1.0^git1", "1.01", -1),
    ("1.0^20160101", "1.0.1", -1),
    ("1.0^20160102", "1.0^20160101^git1", 1),
    ("1.0~rc1^git1", "1.0~rc1", 1),
    ("1.0^git1", "1.0^git1~pre", 1),
    ("1b.fc17", "1.fc17", -1),
    ("1g.fc17", "1.fc17", 1),
]


@pytest.mark.parametrize(("a", "b", "expected"), RPM_CASES)
def test_rpmvercmp_agrees_with_rpms_own_cases(a: str, b: str, expected: int) -> None:
    """RPM versions order exactly as rpm's test suite says, both ways round."""
    assert rpmvercmp(a, b) == expected
    assert rpmvercmp(b, a) == -expected


def test_rpm_epoch_and_release() -> None:
    """The epoch outranks the version; a release is compared only when both sides have one."""
    assert RpmVersion.parse("1:1.0-1") > RpmVersion.parse("9.9-9")
    assert RpmVersion.parse("0:1.0-1.el9") == RpmVersion.parse("1.0-1.el9")
    assert RpmVersion.parse("3.0.7-16.el9_2") > RpmVersion.parse("3.0.7-16.el9")
    assert RpmVersion.parse("3.0.7") == RpmVersion.parse("3.0.7-16.el9")
    with pytest.raises(VersionError):
        RpmVersion.parse("x:1.0-1")


_RPM_SEGMENT = st.text(alphabet="0123456789abcXYZ.~^_+", min_size=1, max_size=10)


@given(_RPM_SEGMENT, _RPM_SEGMENT, _RPM_SEGMENT)
def test_rpmvercmp_is_a_consistent_order(a: str, b: str, c: str) -> None:
    """Antisymmetric and transitive on any input, so sorting by it is well defined."""
    assert rpmvercmp(a, a) == 0
    assert rpmvercmp(a, b) == -rpmvercmp(b, a)
    if rpmvercmp(a, b) <= 0 and rpmvercmp(b, c) <= 0:
        assert rpmvercmp(a, c) <= 0


# ---- Debian, against dpkg itself -----------------------------------------------------------

_DEB_UPSTREAM = st.from_regex(r"\A[0-9][0-9a-z.+~]{0,8}\Z")
_DEB_REVISION = st.from_regex(r"\A[0-9a-z][0-9a-z.+~]{0,6}\Z")


@st.composite
def debian_versions(draw: st.DrawFn) -> str:
    epoch = draw(st.sampled_from(["", "", "1:", "2:"]))
    revision = draw(st.one_of(st.just(""), _DEB_REVISION.map(lambda r: "-" + r)))
    return epoch + draw(_DEB_UPSTREAM) + revision


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is the reference; not installed")
@hsettings(max_examples=120)
@given(debian_versions(), debian_versions())
def test_debian_order_matches_dpkg(a: str, b: str) -> None:
    """Debian versions (epochs, tildes, revisions) order as `dpkg --compare-versions` does."""
    mine = compare("dpkg", a, b)
    for op, expected in (("lt", mine < 0), ("eq", mine == 0)):
        done = subprocess.run(
            ["dpkg", "--compare-versions", a, op, b], check=False, capture_output=True
        )
        assert (done.returncode == 0) is expected, (a, op, b)


def test_debian_known_pairs() -> None:
    """The cases people get wrong: the epoch wins, a tilde sorts before the release."""
    assert compare("dpkg", "1:1.0-1", "2.0-1") == 1
    assert compare("dpkg", "3.0.2-0ubuntu1", "3.0.2-0ubuntu1.15") == -1
    assert compare("dpkg", "1.0~rc1-1", "1.0-1") == -1
    assert compare("dpkg", "3.0.11-1~deb12u2", "3.0.11-1") == -1


# ---- semver, against npm's own semver package -----------------------------------------------

NODE_SEMVER = Path("/usr/lib/node_modules/npm/node_modules/semver")
_IDENT = st.from_regex(r"\A(0|[1-9][0-9]{0,2}|[a-z][a-z0-9]{0,4})\Z")


@st.composite
def semvers(draw: st.DrawFn) -> str:
    core = ".".join(str(draw(st.integers(0, 12))) for _ in range(3))
    pre = draw(st.lists(_IDENT, max_size=3))
    build = draw(st.lists(st.from_regex(r"\A[a-z0-9]{1,4}\Z"), max_size=2))
    return core + ("-" + ".".join(pre) if pre else "") + ("+" + ".".join(build) if build else "")


@pytest.mark.skipif(
    shutil.which("node") is None or not NODE_SEMVER.is_dir(),
    reason="node's semver (bundled with npm) is the reference; not installed",
)
@hsettings(max_examples=25)
@given(st.lists(st.tuples(semvers(), semvers()), min_size=1, max_size=40))
def test_semver_order_matches_node_semver(pairs: list[tuple[str, str]]) -> None:
    """npm versions (pre-releases, build metadata) order as npm's semver.compare does."""
    script = (
        f"const s=require({json.dumps(str(NODE_SEMVER))});"
        "const p=JSON.parse(require('fs').readFileSync(0,'utf8'));"
        "console.log(JSON.stringify(p.map(([a,b])=>s.compare(a,b))))"
    )
    done = subprocess.run(
        ["node", "-e", script],
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        check=True,
    )
    assert [compare("semver", a, b) for a, b in pairs] == json.loads(done.stdout)


def test_semver_precedence_from_the_spec() -> None:
    """The chain in SemVer 2.0's section 11, in order."""
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
    ]
    for older, newer in itertools.pairwise(chain):
        assert compare("semver", older, newer) == -1


# ---- OSV ranges against the reference order ------------------------------------------------

_PEP440 = st.builds(
    lambda major, minor, pre, post, dev: f"{major}.{minor}{pre}{post}{dev}",
    st.integers(0, 3),
    st.integers(0, 3),
    st.sampled_from(["", "a1", "b2", "rc1"]),
    st.sampled_from(["", ".post1"]),
    st.sampled_from(["", ".dev1"]),
)

REFERENCE: dict[Family, tuple[str, st.SearchStrategy[str], Any]] = {
    "pep440": ("PyPI", _PEP440, Pep440),
    "dpkg": ("Debian:12", debian_versions(), None),
    "semver": ("npm", semvers(), None),
    "rpm": ("AlmaLinux:9", _RPM_SEGMENT.filter(lambda s: any(c.isalnum() for c in s)), None),
}


def _ref_cmp(family: Family, a: str, b: str) -> int:
    reference = REFERENCE[family][2]
    if reference is None:
        return compare(family, a, b)
    x, y = reference(a), reference(b)
    return -1 if x < y else (1 if x > y else 0)


@pytest.mark.parametrize("family", sorted(REFERENCE))
def test_range_semantics_match_the_interval_definition(family: Family) -> None:
    """introduced <= v < fixed is affected and v <= last_affected too; nothing else is."""
    ecosystem, versions, _ = REFERENCE[family]

    @hsettings(max_examples=150)
    @given(versions, versions, versions)
    def check(intro: str, end: str, v: str) -> None:
        assume(_ref_cmp(family, intro, end) < 0)
        inside = intro == "0" or _ref_cmp(family, intro, v) <= 0  # "0": OSV's "from the start"
        fixed = affected(
            ecosystem=ecosystem,
            version=v,
            ranges=[{"type": "ECOSYSTEM", "events": [{"introduced": intro}, {"fixed": end}]}],
            versions=[],
        )
        assert (fixed is not None) == (inside and _ref_cmp(family, v, end) < 0)
        if fixed is not None:
            assert fixed.fixed == end
        last = affected(
            ecosystem=ecosystem,
            version=v,
            ranges=[
                {"type": "ECOSYSTEM", "events": [{"introduced": intro}, {"last_affected": end}]}
            ],
            versions=[],
        )
        assert (last is not None) == (inside and _ref_cmp(family, v, end) <= 0)

    check()


def test_pep440_pre_releases_are_inside_a_range_before_the_fix() -> None:
    """2.0rc1 comes before 2.0: a range fixed in 2.0 covers it; 2.0.post1 is past the fix."""
    ranges = [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]
    assert affected(ecosystem="PyPI", version="2.0rc1", ranges=ranges, versions=[]) is not None
    assert affected(ecosystem="PyPI", version="2.0.post1", ranges=ranges, versions=[]) is None
    assert affected(ecosystem="PyPI", version="2.0.0", ranges=ranges, versions=[]) is None


def test_several_introduced_fixed_pairs_and_unsorted_events() -> None:
    """Events are evaluated in version order, whatever order the advisory lists them in."""
    events = [{"fixed": "1.5"}, {"introduced": "2.0"}, {"introduced": "1.0"}, {"fixed": "2.3"}]
    ranges = [{"type": "ECOSYSTEM", "events": events}]
    hits = {
        v: affected(ecosystem="PyPI", version=v, ranges=ranges, versions=[])
        for v in ["0.9", "1.0", "1.4", "1.5", "1.9", "2.0", "2.2", "2.3"]
    }
    assert {v for v, hit in hits.items() if hit} == {"1.0", "1.4", "2.0", "2.2"}
    assert hits["1.4"] is not None
    assert hits["1.4"].fixed == "1.5"
    assert hits["2.2"] is not None
    assert hits["2.2"].fixed == "2.3"


def test_semver_range_in_another_ecosystem_and_explicit_versions() -> None:
    """A SEMVER range orders by SemVer whatever the ecosystem; `versions` lists exact hits."""
    ranges = [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.10.0"}]}]
    assert affected(ecosystem="npm", version="1.9.0", ranges=ranges, versions=[]) is not None
    assert affected(ecosystem="npm", version="1.10.0-rc.1", ranges=ranges, versions=[])
    assert affected(ecosystem="PyPI", version="1.0", ranges=[], versions=["1.0.0"]) is not None
    assert affected(ecosystem="PyPI", version="1.0.1", ranges=[], versions=["1.0.0"]) is None


def test_git_and_unparsable_ranges_are_skipped_not_guessed() -> None:
    """A GIT range names commits; a range whose versions do not parse says nothing."""
    ranges: list[dict[str, Any]] = [
        {"type": "GIT", "events": [{"introduced": "0"}, {"fixed": "abc123"}]},
        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "not a version!"}]},
    ]
    assert affected(ecosystem="PyPI", version="1.0", ranges=ranges, versions=[]) is None
    with pytest.raises(VersionError):
        affected(ecosystem="PyPI", version="what?", ranges=ranges, versions=[])
    with pytest.raises(VersionError):
        affected(ecosystem="Gentoo", version="1.0", ranges=ranges, versions=[])


def test_names_are_normalized_per_ecosystem() -> None:
    """PyPI names compare as PEP 503 says; Debian in lower case; npm as written."""
    assert normalize_name("PyPI", "Jinja2") == normalize_name("PyPI", "jinja2")
    assert normalize_name("PyPI", "zope.interface") == "zope-interface"
    assert normalize_name("Debian:12", "OpenSSL") == "openssl"
    assert normalize_name("npm", "@Scope/Pkg") == "@Scope/Pkg"
