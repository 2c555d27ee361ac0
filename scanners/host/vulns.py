"""Installed packages matched against imported advisories: one host.package resource per
(package, advisory) whose affected versions include the installed one.

The advisories come through `AdvisorySource` (the ledger's store, ledger/advisories.py), asked
only for the (ecosystem, name) pairs the host has installed, in batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from scanners.host.packages import Inventory, InventorySources, Package, inventory
from scanners.host.types import HOST_REGION
from scanners.host.versions import VersionError, affected, ecosystem_base
from scanners.model import Collection, Resource, ScanError

RESOURCE_TYPE = "host.package"
PARTIAL_INVENTORY = "host.package.partial"  # a listing key no rule covers


@dataclass(frozen=True)
class AdvisoryEntry:
    """One advisory's entry for one package, as the store hands it to matching."""

    advisory_id: str
    ecosystem: str  # as the advisory says: "Debian:12", "PyPI"
    name: str  # normalized
    ranges: list[Any]
    versions: list[Any]
    aliases: list[str]
    summary: str
    severity: str | None  # critical / high / medium / low, from CVSS where given
    cvss_score: float | None


class AdvisorySource(Protocol):
    """Where advisories are looked up: by (ecosystem base, normalized name)."""

    def lookup(self, keys: Iterable[tuple[str, str]]) -> Iterable[AdvisoryEntry]:
        """Every non-withdrawn advisory entry for the given (ecosystem base, name) pairs."""
        ...


def ecosystem_applies(advisory: str, installed: str) -> bool:
    """Whether an advisory's ecosystem covers a package's: the same ecosystem, or the same
    distribution with no release named on one side, or a release refined by a suffix
    ("Ubuntu:22.04:LTS" covers "Ubuntu:22.04")."""
    if advisory == installed:
        return True
    if ecosystem_base(advisory) != ecosystem_base(installed):
        return False
    if ":" not in advisory or ":" not in installed:
        return True
    return advisory.startswith(installed + ":")


def resource_id(package: Package, advisory_id: str) -> str:
    """Stable across versions: an upgrade that still matches stays the same finding."""
    return f"{ecosystem_base(package.ecosystem)}:{package.name}@{advisory_id}"


InventoryFn = Callable[[InventorySources], Inventory]


class PackageCollector:
    """The Collector of vulnerable installed packages on this host."""

    def __init__(
        self,
        *,
        host: str,
        sources: InventorySources,
        advisories: AdvisorySource,
        read_inventory: InventoryFn = inventory,
    ) -> None:
        self.host = host
        self.sources = sources
        self.advisories = advisories
        self.read_inventory = read_inventory
        self.last_inventory: Inventory | None = None

    @property
    def resource_types(self) -> frozenset[str]:
        """host.package only."""
        return frozenset({RESOURCE_TYPE})

    def collect(
        self,
        *,
        needs: Mapping[str, set[str]] | None = None,
        accounts: set[str] | None = None,
        regions: set[str] | None = None,
        only: tuple[str, str] | None = None,
    ) -> Collection:
        """Read the inventory, look its names up, keep the affected (package, advisory) pairs."""
        out = Collection(accounts={self.host}, regions={self.host: [HOST_REGION]})
        if (accounts and self.host not in accounts) or (regions and HOST_REGION not in regions):
            return out
        if needs is not None and RESOURCE_TYPE not in needs:
            return out
        found = self.read_inventory(self.sources)
        self.last_inventory = found
        out.api_calls["inventory"] += 1
        for problem in found.errors:
            out.errors.append(
                ScanError(
                    account=self.host,
                    region=HOST_REGION,
                    service=problem.source,
                    operation="inventory",
                    code="Unreadable",
                    message=f"{problem.location}: {problem.message}",
                    resource_type=RESOURCE_TYPE,
                )
            )
        # A partial inventory would read as "upgraded": only a complete one resolves findings.
        if not found.errors:
            out.listed.add((RESOURCE_TYPE, self.host, HOST_REGION))
        elif found.packages:
            # Some sources were read: their matches are stored (a partial scan), and this
            # listing, which no rule judges, resolves nothing. With no package at all the scan
            # fails as "nothing scanned" rather than pass for a clean one.
            out.listed.add((PARTIAL_INVENTORY, self.host, HOST_REGION))
        out.resources = self._match(found.packages, out, only)
        return out

    def _match(
        self, packages: list[Package], out: Collection, only: tuple[str, str] | None
    ) -> list[Resource]:
        by_key: dict[tuple[str, str], list[Package]] = {}
        for package in packages:
            by_key.setdefault((ecosystem_base(package.ecosystem), package.name), []).append(package)
        resources: dict[str, Resource] = {}
        bad_versions: Counter[str] = Counter()
        for entry in self.advisories.lookup(sorted(by_key)):
            out.api_calls["advisory_entries"] += 1
            for package in by_key.get((ecosystem_base(entry.ecosystem), entry.name), ()):
                if not ecosystem_applies(entry.ecosystem, package.ecosystem):
                    continue
                rid = resource_id(package, entry.advisory_id)
                if rid in resources or (only is not None and only != (RESOURCE_TYPE, rid)):
                    continue
                try:
                    hit = affected(
                        ecosystem=package.ecosystem,
                        version=package.version,
                        ranges=entry.ranges,
                        versions=entry.versions,
                    )
                except VersionError:
                    bad_versions[f"{package.ecosystem} {package.name} {package.version}"] += 1
                    continue
                if hit is not None:
                    resources[rid] = self._resource(rid, package, entry, hit.fixed)
        for what in sorted(bad_versions)[:50]:
            out.errors.append(
                ScanError(
                    account=self.host,
                    region=HOST_REGION,
                    service="match",
                    operation="version",
                    code="UnorderedVersion",
                    message=f"cannot order the installed version: {what}",
                    resource_type=RESOURCE_TYPE,
                )
            )
        return sorted(resources.values(), key=lambda r: r.id)

    def _resource(
        self, rid: str, package: Package, entry: AdvisoryEntry, fixed: str | None
    ) -> Resource:
        data: dict[str, Any] = {
            "ecosystem": package.ecosystem,
            "name": package.name,
            "version": package.version,
            "advisory": entry.advisory_id,
            "aliases": list(entry.aliases),
            "summary": entry.summary,
            "fixed": fixed,
            "severity": entry.severity,
            "cvss_score": entry.cvss_score,
            "location": package.location,
            "packages": list(package.installed) or [package.name],
        }
        return Resource(
            type=RESOURCE_TYPE,
            id=rid,
            account=self.host,
            region=HOST_REGION,
            data=data,
            name=f"{package.name} {entry.advisory_id}",
            severity=entry.severity,
        )


def severity_of(score: float | None) -> str | None:
    """CVSS base score -> critical (>= 9), high (>= 7), medium (>= 4), low (> 0); None for 0."""
    if score is None or score <= 0:
        return None
    if score >= 9:
        return "critical"
    if score >= 7:
        return "high"
    if score >= 4:
        return "medium"
    return "low"
