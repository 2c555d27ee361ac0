"""The vocabulary of declarative collection: how to list a resource type and enrich each item."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from scanners.aws.collector import CallContext
    from scanners.model import Resource

Scope = Literal["regional", "global", "account", "region"]


@dataclass(frozen=True)
class Enrich:
    """One extra call per resource whose answer is stored under `key` in the resource's data.

    `params` maps call arguments to JMESPath expressions over the resource data; the values
    `$account` and `$region` stand for the resource's account and region.
    """

    key: str
    operation: str = ""
    params: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, Any] = field(default_factory=dict)
    result: str | None = None
    # Error codes that mean "not configured": the key is set to None instead of failing.
    missing: tuple[str, ...] = ()
    service: str | None = None
    # JMESPath over the data; when falsy the call is skipped and the key set to None.
    when: str | None = None
    # Enriched keys `when` or `params` read: fetched first whenever this key is wanted.
    needs: tuple[str, ...] = ()
    transform: Callable[[Any], Any] | None = None
    # Code for what one call cannot express (several calls, a shared per-account fetch).
    custom: Callable[[CallContext, Resource], Any] | None = None
    # The operations `custom` calls (of `service`): only declared operations are loaded.
    calls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Derive:
    """A key computed after collection from other resources of the same account."""

    key: str
    source_type: str
    source_keys: tuple[str, ...]
    fn: Callable[[list[Resource]], Any]


@dataclass(frozen=True)
class ById:
    """How to fetch one resource by its id instead of listing them all (a re-check).

    With no `operation` the id alone is the listing item (`{spec.id: id}`), for types whose
    listing carries nothing but the id (S3 buckets, DynamoDB tables, KMS keys). `param` takes
    the id (`[id]` when `as_list`); `result` defaults to the spec's (an item without the `id`
    field gets it); `gone` are the error codes that mean the resource no longer exists.
    """

    operation: str = ""
    param: str = ""
    as_list: bool = True
    result: str | None = None
    constants: Mapping[str, Any] = field(default_factory=dict)
    gone: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourceSpec:
    """How to enumerate one resource type.

    scope: `regional` is listed in every region; `global` once per account (IAM) with region
    "global"; `account` / `region` are one synthetic resource per account / region whose data
    is built entirely by enrichers (account settings such as the password policy).
    """

    type: str
    service: str
    scope: Scope
    operation: str = ""
    result: str = ""
    id: str = ""
    name: str | None = None
    constants: Mapping[str, Any] = field(default_factory=dict)
    enrich: tuple[Enrich, ...] = ()
    derive: tuple[Derive, ...] = ()
    # Global listings whose items live in a region (S3 buckets): key holding that region.
    region_key: str | None = None
    # Wrap scalar list items (DynamoDB table names) into {item_key: value}.
    item_key: str | None = None
    # Listings that repeat an item in every region (shadow trails): the key naming its home.
    home_key: str | None = None
    # Fetching one resource for a re-check; None: list them all and pick it out.
    by_id: ById | None = None
    # Items per listing page where the API's default page is small (IAM's 100).
    page_size: int | None = None
    # Reshapes each item of the listing (never a `by_id` answer) into the documented data: an
    # account-wide listing (GetAccountAuthorizationDetails) that already answers enriched keys.
    shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # Enriched keys `shape` may fill: when the listed item has one, its enricher is not called.
    listed: tuple[str, ...] = ()

    def enrich_keys(self) -> set[str]:
        """Every key this spec can add beyond the listing."""
        return {e.key for e in self.enrich} | {d.key for d in self.derive}
