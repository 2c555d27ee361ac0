"""The registry behind `@fixture(rule_id)`: how a moto world is built for one rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

REGION = "us-east-1"
ACCOUNT = "123456789012"


@dataclass
class Aws:
    """Clients for the moto account under test (region us-east-1 unless asked)."""

    region: str = REGION
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict)

    def client(self, service: str, region: str | None = None) -> Any:
        """A boto3 client talking to moto."""
        key = (service, region or self.region)
        if key not in self._clients:
            self._clients[key] = boto3.client(service, region_name=key[1])
        return self._clients[key]


# fn(aws, passing) -> the resource id the rule must judge (pass or fail as asked), or
# (resource id, days) when the verdict needs the clock moved `days` forward (key age).
Builder = Callable[[Aws, bool], "str | tuple[str, int]"]


@dataclass(frozen=True)
class Fixture:
    rule_id: str
    build: Builder
    # A side moto cannot produce, with the reason; the YAML examples still cover it.
    unsupported: dict[str, str]


FIXTURES: dict[str, Fixture] = {}


def fixture(
    rule_id: str, *, unsupported: dict[str, str] | None = None
) -> Callable[[Builder], Builder]:
    """Register the moto builder for `rule_id`; `unsupported` maps 'pass'/'fail' to a reason."""

    def wrap(fn: Builder) -> Builder:
        if rule_id in FIXTURES:
            raise ValueError(f"two fixtures for {rule_id}")
        FIXTURES[rule_id] = Fixture(rule_id, fn, dict(unsupported or {}))
        return fn

    return wrap
