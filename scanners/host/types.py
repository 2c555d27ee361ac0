"""The resource types host scanners hand on, and the keys rules may read from each.

A host's findings use the host name as their `account` and HOST_REGION as their `region`.
"""

from __future__ import annotations

HOST_REGION = "host"

# type -> {key: meaning}; docs and the rule tests read this.
HOST_TYPES: dict[str, dict[str, str]] = {
    "host.file": {
        "path": "the watched file's path",
        "change": "added, modified, deleted or permissions (against the accepted baseline)",
        "changed": "the attributes that differ: sha256, size, mode, owner, group, inode, mtime",
        "old": "the baseline's attributes (null for an added file)",
        "new": "the current attributes (null for a deleted file)",
    },
    "host.package": {
        "ecosystem": "Debian, RPM, PyPI or npm",
        "name": "the installed package's name",
        "version": "the installed version",
        "advisory": "the advisory id (OSV id), with its aliases (CVE, GHSA) in `aliases`",
        "aliases": "CVE/GHSA ids of the advisory",
        "fixed": "the first fixed version, or null when none is known",
        "severity": "from the advisory's CVSS where given",
        "location": "where it was found (the dpkg status file, a site-packages dir, a lock file)",
    },
}
