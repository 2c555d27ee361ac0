"""Host results that come over the network: an agent's collections, and which agents are silent.

An agent (`compliancebot agent run`) collects on its host with the host collectors and sends
each collection as JSON (`collection_document`); `serve` reads it back (`PayloadCollector`) with
every resource's account forced to the agent's enrolled name, so an agent can only ever report
for itself. `SilentAgents` makes one `host.agent` resource per enrolled agent for the "host
silent" rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scanners.host.types import HOST_REGION, HOST_TYPES
from scanners.model import Collection, Resource, ScanError

# The types an agent may report (not host.agent: that one is the server's own).
AGENT_TYPES = frozenset(t for t in HOST_TYPES if t != "host.agent")
MAX_RESOURCES = 20_000  # per collection
MAX_ERRORS = 1_000

Text = Annotated[str, Field(min_length=1, max_length=1024)]
Short = Annotated[str, Field(max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SentResource(_Strict):
    type: Text
    id: Text
    name: Annotated[str | None, Field(max_length=1024)] = None
    data: dict[str, Any]
    severity: Literal["critical", "high", "medium", "low", "info"] | None = None


class SentError(_Strict):
    service: Short
    operation: Short
    code: Short
    message: Annotated[str, Field(max_length=4096)]
    resource_type: Short | None = None
    resource_id: Annotated[str | None, Field(max_length=1024)] = None


class SentCollection(_Strict):
    types: Annotated[list[Literal["host.file", "host.package"]], Field(min_length=1, max_length=4)]
    complete: bool
    resources: Annotated[list[SentResource], Field(max_length=MAX_RESOURCES)] = []
    errors: Annotated[list[SentError], Field(max_length=MAX_ERRORS)] = []


class Results(_Strict):
    """What an agent sends (version 1)."""

    version: Literal[1]
    sent_at: datetime
    collections: Annotated[list[SentCollection], Field(min_length=1, max_length=4)]


def collection_document(types: Sequence[str], collection: Collection) -> dict[str, Any]:
    """One collection as an agent sends it: complete when every listing of `types` finished."""
    host_keys = {(t, a, r) for t, a, r in collection.listed}
    complete = all(any(k[0] == t for k in host_keys) for t in types)
    return {
        "types": list(types),
        "complete": complete and not collection.errors,
        "resources": [
            {
                "type": r.type,
                "id": r.id,
                "name": r.name,
                "data": r.data,
                "severity": r.severity,
            }
            for r in collection.resources
        ],
        "errors": [
            {
                "service": e.service[:256],
                "operation": e.operation[:256],
                "code": e.code[:256],
                "message": e.message[:4096],
                "resource_type": e.resource_type,
                "resource_id": e.resource_id,
            }
            for e in collection.errors[:MAX_ERRORS]
        ],
    }


@dataclass
class PayloadCollector:
    """One sent collection, as a Collector whose resources are the agent's own."""

    agent: str
    sent: SentCollection

    @property
    def resource_types(self) -> frozenset[str]:
        return frozenset(self.sent.types) & AGENT_TYPES

    def collect(
        self,
        *,
        needs: Mapping[str, set[str]] | None = None,
        accounts: set[str] | None = None,
        regions: set[str] | None = None,
        only: tuple[str, str] | None = None,
    ) -> Collection:
        out = Collection()
        out.accounts.add(self.agent)
        types = self.resource_types
        for r in self.sent.resources:
            if r.type not in types or (only is not None and (r.type, r.id) != only):
                continue
            out.resources.append(
                Resource(
                    type=r.type,
                    id=r.id,
                    account=self.agent,
                    region=HOST_REGION,
                    data=dict(r.data),
                    name=r.name,
                    severity=r.severity,
                )
            )
        for e in self.sent.errors:
            out.errors.append(
                ScanError(
                    account=self.agent,
                    region=HOST_REGION,
                    service=e.service,
                    operation=e.operation,
                    code=e.code,
                    message=e.message,
                    resource_type=e.resource_type,
                    resource_id=e.resource_id,
                )
            )
        if self.sent.complete:
            out.listed |= {(t, self.agent, HOST_REGION) for t in types}
        return out


@dataclass(frozen=True)
class AgentState:
    name: str
    enrolled_at: datetime
    last_seen: datetime | None


@dataclass
class SilentAgents:
    """One host.agent resource per enrolled agent: silent past `after_minutes` without a result."""

    agents: Sequence[AgentState]
    now: datetime
    after_minutes: int

    resource_types = frozenset({"host.agent"})

    def collect(
        self,
        *,
        needs: Mapping[str, set[str]] | None = None,
        accounts: set[str] | None = None,
        regions: set[str] | None = None,
        only: tuple[str, str] | None = None,
    ) -> Collection:
        out = Collection()
        for agent in self.agents:
            if accounts is not None and agent.name not in accounts:
                continue
            since = agent.last_seen or agent.enrolled_at
            minutes = int((self.now - since).total_seconds() // 60)
            out.accounts.add(agent.name)
            out.listed.add(("host.agent", agent.name, HOST_REGION))
            out.resources.append(
                Resource(
                    type="host.agent",
                    id=agent.name,
                    account=agent.name,
                    region=HOST_REGION,
                    name=agent.name,
                    data={
                        "name": agent.name,
                        "silent": minutes >= self.after_minutes,
                        "minutes": minutes,
                        "last_seen": agent.last_seen.isoformat() if agent.last_seen else None,
                    },
                )
            )
        return out
