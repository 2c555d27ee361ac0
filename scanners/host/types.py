"""The resource types host scanners hand on, and the keys rules may read from each.

A host's findings use the host name as their `account` and HOST_REGION as their `region`.
"""

from __future__ import annotations

HOST_REGION = "host"

# type -> {key: meaning}; docs and the rule tests read this.
HOST_TYPES: dict[str, dict[str, str]] = {
    "host.file": {
        "path": "the watched file's path (control characters and undecodable bytes escaped)",
        "change": "added, modified (content, type or inode), deleted, or permissions (mode, "
        "owner or group only), against the accepted baseline",
        "changed": "the attributes that differ: type, sha256, size, mode, owner, group, inode, "
        "mtime (an mtime alone is no change)",
        "old": "the baseline's attributes: type (file or symlink), sha256, size, mode (octal "
        "text), owner, group, uid, gid, inode, mtime; null for an added file",
        "new": "the current attributes, as `old`; null for a deleted file",
        "diff": "one {attr, old, new} per changed attribute, values as text",
    },
    "host.package": {
        "ecosystem": "the OSV ecosystem: Debian:12, Ubuntu:22.04, AlmaLinux:9, PyPI, npm...",
        "name": "the package name advisories use (Debian, Ubuntu: the source package)",
        "version": "the installed version (Debian, Ubuntu: the source version)",
        "packages": "the installed packages it covers (Debian: the binaries of that source)",
        "advisory": "the advisory id (OSV id), with its aliases (CVE, GHSA) in `aliases`",
        "aliases": "CVE/GHSA ids of the advisory",
        "summary": "the advisory's one-line summary",
        "fixed": "the first fixed version after the installed one, or null when none is known",
        "severity": "critical, high, medium or low from the advisory's CVSS score where given",
        "cvss_score": "the CVSS base score, or null",
        "location": "where it was found: the dpkg status file, rpm, site-packages, a lock file",
    },
    "host.agent": {
        "name": "the agent's name (its findings' account)",
        "silent": "true when it has sent no result for agents.silent_after_minutes",
        "minutes": "minutes since its last result (since enrolment when it never sent one)",
        "last_seen": "when its last result was taken (null: never)",
    },
}
