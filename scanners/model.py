"""What a scanner hands on: resources, the errors it met, and which listings completed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

GLOBAL_REGION = "global"


@dataclass(frozen=True)
class Resource:
    """One collected cloud object; `data` is the API's own shape plus enriched keys."""

    type: str
    id: str
    account: str
    region: str
    data: dict[str, Any]
    name: str | None = None
    # Enriched keys whose API call failed: a rule reading them cannot decide.
    unknown: frozenset[str] = frozenset()
    # The finding's severity when it is the resource's, not the rule's (a watched path's).
    severity: str | None = None


@dataclass(frozen=True)
class ScanError:
    """One failed API call, kept with the scan so an operator can see what was not checked."""

    account: str
    region: str
    service: str
    operation: str
    code: str
    message: str
    resource_type: str | None = None
    resource_id: str | None = None


@dataclass
class Collection:
    """Everything one collection run produced."""

    resources: list[Resource] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    # (resource_type, account, region) whose listing completed: absence there means "gone".
    listed: set[tuple[str, str, str]] = field(default_factory=set)
    api_calls: Counter[str] = field(default_factory=Counter)
    http_requests: Counter[str] = field(default_factory=Counter)
    accounts: set[str] = field(default_factory=set)
    regions: dict[str, list[str]] = field(default_factory=dict)


class Collector(Protocol):
    """A scanner: AWS (scanners.aws.collector) or a host (scanners.host)."""

    @property
    def resource_types(self) -> frozenset[str]:
        """The resource types it collects: a scan evaluates only the rules over these."""
        ...

    def collect(
        self,
        *,
        needs: Mapping[str, set[str]] | None = None,
        accounts: set[str] | None = None,
        regions: set[str] | None = None,
        only: tuple[str, str] | None = None,
    ) -> Collection:
        """Collect what `needs` names ({type: keys}); `only` = (type, id): that one resource."""
        ...
