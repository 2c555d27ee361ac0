"""Run the declarative specs against AWS: concurrent, paginated, every call counted.

One failing call becomes a ScanError for its account/region/service and the scan goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import ipaddress
import json
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore
import botocore.session
import jmespath
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.loaders import JSONFileLoader, Loader

from scanners.aws.spec import Enrich, ResourceSpec
from scanners.aws.specs import SPECS, SPECS_BY_TYPE
from scanners.model import GLOBAL_REGION, Collection, Resource, ScanError

# Progress callbacks (a terminal bar) once per this many finished tasks, and at the end.
PROGRESS_EVERY = 25

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class AwsTarget:
    """One AWS account to scan and how to reach it."""

    name: str
    account_id: str | None = None
    regions: tuple[str, ...] | Literal["all"] = ("us-east-1",)
    role_arn: str | None = None
    external_id: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    # Where global services (IAM, STS, S3 listing) are called: us-gov-west-1 on GovCloud.
    global_region: str = "us-east-1"
    session_name: str = "compliancebot"


def default_model_cache() -> Path:
    """$XDG_CACHE_HOME/compliancebot/botocore-models (~/.cache by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "compliancebot" / "botocore-models"


@dataclass(frozen=True)
class CollectorOptions:
    """Concurrency, retry and timeout settings for one collection run."""

    max_workers: int = 16
    max_attempts: int = 8
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    # Where the trimmed service models are kept between runs (None: trimmed in memory each
    # run, which costs reading the whole model once: ~20 MB more peak RSS).
    model_cache: Path | None = field(default_factory=default_model_cache)


# Operations called beyond the specs': the account id, an assumed role, the region list, and
# what botocore's S3 customizations call on their own (HeadBucket to find a bucket's region
# after a redirect, CreateSession for directory buckets).
_OWN_OPERATIONS: Mapping[str, tuple[str, ...]] = {
    "sts": ("get_caller_identity", "assume_role"),
    "ec2": ("describe_regions",),
    "s3": ("head_bucket", "create_session"),
}


def operations_called(specs: Iterable[ResourceSpec] = SPECS) -> dict[str, frozenset[str]]:
    """{service: boto3 method names} of every call the collector can make for `specs`."""
    out: dict[str, set[str]] = {k: set(v) for k, v in _OWN_OPERATIONS.items()}
    for spec in specs:
        listing = out.setdefault(spec.service, set())
        listing.update(op for op in (spec.operation, spec.by_id and spec.by_id.operation) if op)
        for enricher in spec.enrich:
            ops = out.setdefault(enricher.service or spec.service, set())
            ops.update(enricher.calls)
            if enricher.operation:
                ops.add(enricher.operation)
    return {service: frozenset(ops) for service, ops in out.items()}


def _undocumented(node: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in node.items() if k not in ("documentation", "documentationUrl")}
    if isinstance(out.get("members"), dict):
        out["members"] = {name: _undocumented(m) for name, m in out["members"].items()}
    return out


def prune_service_model(model: dict[str, Any], keep: frozenset[str]) -> dict[str, Any]:
    """A botocore service model with only the operations in `keep` (boto3 method names) and
    the shapes they reach, without documentation."""
    operations = {
        name: _undocumented(op)
        for name, op in model.get("operations", {}).items()
        if xform_name(name) in keep
    }
    shapes = model.get("shapes", {})
    reached: set[str] = set()
    todo: list[str] = []
    for op in operations.values():
        todo.extend(op[k]["shape"] for k in ("input", "output") if k in op)
        todo.extend(error["shape"] for error in op.get("errors", ()))
    while todo:
        name = todo.pop()
        if name in reached or name not in shapes:
            continue
        reached.add(name)
        shape = shapes[name]
        todo.extend(shape[k]["shape"] for k in ("member", "key", "value") if k in shape)
        todo.extend(m["shape"] for m in shape.get("members", {}).values())
    return {
        **{k: v for k, v in model.items() if k != "documentation"},
        "operations": operations,
        "shapes": {name: _undocumented(shapes[name]) for name in sorted(reached)},
    }


# The keys of botocore's endpoints.json for the services called, where they differ from the
# client's name (the model's endpointPrefix); a test holds this to the installed botocore.
_ENDPOINT_PREFIXES: Mapping[str, str] = {"s3control": "s3-control", "elbv2": "elasticloadbalancing"}


def endpoint_keys(services: Iterable[str]) -> frozenset[str]:
    """The endpoints.json service keys of the clients named `services`."""
    return frozenset(_ENDPOINT_PREFIXES.get(s, s) for s in services)


def prune_endpoints(data: dict[str, Any], keep: frozenset[str]) -> dict[str, Any]:
    """botocore's endpoints.json with only the services in `keep`, in every partition."""
    partitions = []
    for partition in data.get("partitions", []):
        services = partition.get("services", {})
        partitions.append(
            {**partition, "services": {k: v for k, v in services.items() if k in keep}}
        )
    return {**data, "partitions": partitions}


class _PrunedModels(JSONFileLoader):  # type: ignore[misc]  # botocore is untyped
    """Reads service models keeping only the operations the collector calls, and the endpoint
    table keeping only its services.

    botocore keeps them for the session's life: EC2's model alone is ~14 MB of dicts for 800
    operations, of which a scan calls ten, the endpoint table 7 MB for 300 services in eight
    partitions. Reading them whole even once raises the peak RSS for good, so the trimmed
    copies are kept in `cache` (when given) for the next run, under a name that changes with
    the source file, botocore's version and what is kept.
    """

    def __init__(self, keep: Mapping[str, frozenset[str]], cache: Path | None):
        self._keep, self._cache = keep, cache
        self._endpoints = endpoint_keys(keep)

    def load_file(self, file_path: str) -> Any:
        # .../<service>/<api version>/service-2 and .../endpoints (without their extension)
        parts = file_path.replace(os.sep, "/").rsplit("/", 3)
        trim: Callable[[dict[str, Any]], dict[str, Any]]
        if parts[-1] == "service-2" and len(parts) == 4 and parts[-3] in self._keep:
            keep = self._keep[parts[-3]]
            name, kept, valid = parts[-3], keep, _looks_like_model

            def trim(data: dict[str, Any]) -> dict[str, Any]:
                return prune_service_model(data, keep)

        elif parts[-1] == "endpoints":
            name, kept, valid = "endpoints", self._endpoints, _looks_like_endpoints

            def trim(data: dict[str, Any]) -> dict[str, Any]:
                return prune_endpoints(data, self._endpoints)

        else:
            return super().load_file(file_path)
        cached = self._cached_name(file_path, name, kept)
        if cached is not None:
            try:
                found = json.loads(cached.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError):
                found = None  # not there yet, or unreadable: read the source, write it again
            if valid(found):
                return found
        data = super().load_file(file_path)
        if not isinstance(data, dict):
            return data
        trimmed = trim(data)
        if cached is not None:
            _write_quietly(cached, json.dumps(trimmed, separators=(",", ":")))
        return trimmed

    def _cached_name(self, file_path: str, name: str, kept: frozenset[str]) -> Path | None:
        if self._cache is None:
            return None
        for ext in (".json", ".json.gz"):
            try:
                stat = Path(file_path + ext).stat()
            except OSError:
                continue
            key = "\n".join(
                (file_path + ext, str(stat.st_mtime_ns), str(stat.st_size), botocore.__version__)
            )
            key += "\n" + ",".join(sorted(kept))
            digest = hashlib.sha256(key.encode()).hexdigest()[:32]
            return self._cache / f"{name}-{digest}.json"
        return None


def _looks_like_model(data: Any) -> bool:
    return isinstance(data, dict) and all(
        isinstance(data.get(k), dict) for k in ("metadata", "operations", "shapes")
    )


def _looks_like_endpoints(data: Any) -> bool:
    if not isinstance(data, dict) or not isinstance(data.get("partitions"), list):
        return False
    partitions = data["partitions"]
    return all(isinstance(p, dict) and isinstance(p.get("services"), dict) for p in partitions)


def _write_quietly(path: Path, text: str) -> None:
    """Write `text` to `path` atomically; a cache that cannot be written is only slower."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)


class _SearchPaths(list[str]):
    """A list that takes each path once: boto3 appends its data path for every new session."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


class _PrunedLoader(Loader):  # type: ignore[misc]  # botocore is untyped
    """botocore's Loader, shared by every session, tidying a trimmed model after botocore's
    "extras" were merged in."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Shared: without this, the list would grow by one path per session ever opened.
        self._search_paths = _SearchPaths(self.search_paths)

    def load_service_model(
        self, service_name: str, type_name: str, api_version: str | None = None
    ) -> Any:
        model = super().load_service_model(service_name, type_name, api_version)
        if type_name == "service-2" and isinstance(model.get("shapes"), dict):
            # An extra that amends a shape the trimming left out leaves a partial shape behind
            # (RDS adds SourceRegion to CopyDBSnapshotMessage); botocore walks every shape.
            shapes = model["shapes"]
            for name in [n for n, shape in shapes.items() if "type" not in shape]:
                del shapes[name]
        return model


@functools.cache
def _pruned_loader(data_path: str | None, cache: Path | None) -> Any:
    # One loader for every session: accounts share the models already read.
    extra = [str(Path(p).expanduser()) for p in data_path.split(os.pathsep)] if data_path else []
    models = _PrunedModels(operations_called(), cache)
    return _PrunedLoader(extra_search_paths=extra, file_loader=models)


def aws_session(
    *, profile: str | None = None, model_cache: Path | None = None, **credentials: str
) -> boto3.Session:
    """A boto3 session whose clients load only the operations the collector calls.

    `model_cache`: a directory for the trimmed models (see CollectorOptions.model_cache);
    `credentials`: aws_access_key_id, aws_secret_access_key, aws_session_token.
    """
    core = botocore.session.get_session()
    if profile:
        core.set_config_variable("profile", profile)
    loader = _pruned_loader(core.get_config_variable("data_path"), model_cache)
    core.register_component("data_loader", loader)
    return boto3.Session(botocore_session=core, **credentials)


class _CallFailedError(Exception):
    """An AWS call failed; carries the pieces of the ScanError to record."""

    def __init__(self, service: str, operation: str, code: str, message: str) -> None:
        super().__init__(f"{service}.{operation}: {code}: {message}")
        self.service, self.operation, self.code, self.message = service, operation, code, message


def _failure(service: str, operation: str, exc: Exception) -> _CallFailedError:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return _CallFailedError(
            service, operation, str(err.get("Code", "ClientError")), str(err.get("Message", exc))
        )
    return _CallFailedError(service, operation, type(exc).__name__, str(exc))


def _strip(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "ResponseMetadata"}


class _Account:
    """Per-account state: the session, its clients and the memo of shared fetches."""

    def __init__(self, run: _Run, target: AwsTarget, session: boto3.Session, account_id: str):
        self.run, self.target, self.session, self.id = run, target, session, account_id
        # The regions this run scans in the account (set once they are known).
        self.regions: tuple[str, ...] = ()
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._shared: dict[tuple[Any, ...], tuple[bool, Any]] = {}
        self._shared_locks: dict[tuple[Any, ...], threading.Lock] = {}

    def client(self, service: str, region: str) -> Any:
        region = self.target.global_region if region == GLOBAL_REGION else region
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                client = self.session.client(
                    service,
                    region_name=region,
                    endpoint_url=self.target.endpoint_url,
                    config=self.run.botocore_config,
                )
                if service == "s3control":
                    client.meta.events.register("before-sign.s3-control", _unprefix_ip_host)
                client.meta.events.register("before-call", self.run.count_call)
                client.meta.events.register("before-send", self.run.count_request)
                self._clients[key] = client
            return self._clients[key]

    def shared(self, key: tuple[Any, ...], loader: Callable[[], Any]) -> Any:
        with self._lock:
            lock = self._shared_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._shared:
                try:
                    self._shared[key] = (True, loader())
                except _CallFailedError as exc:
                    self._shared[key] = (False, exc)
            ok, value = self._shared[key]
        if not ok:
            raise value
        return value


class CallContext:
    """What an enricher may do: call AWS for one account and region, and share fetches."""

    def __init__(self, account: _Account, region: str):
        self._account, self.region = account, region
        self.account_id = account.id

    @property
    def regions(self) -> tuple[str, ...]:
        """The regions scanned in this account."""
        return self._account.regions

    def call(
        self, service: str, operation: str, *, region: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """One API call; failures raise a _CallFailedError that the collector records."""
        client = self._account.client(service, region or self.region)
        try:
            return _strip(_method(client, service, operation)(**params))
        except (ClientError, BotoCoreError) as exc:
            raise _failure(service, operation, exc) from exc

    def call_optional(
        self,
        service: str,
        operation: str,
        *,
        missing: tuple[str, ...],
        region: str | None = None,
        **params: Any,
    ) -> dict[str, Any] | None:
        """One API call whose `missing` error codes mean "not configured": None, not a failure."""
        try:
            return self.call(service, operation, region=region, **params)
        except _CallFailedError as exc:
            if exc.code in missing:
                return None
            raise

    def paginate(
        self,
        service: str,
        operation: str,
        result: str,
        *,
        region: str | None = None,
        page_size: int | None = None,
        **params: Any,
    ) -> list[Any]:
        """Every item of a (possibly paginated) listing."""
        client = self._account.client(service, region or self.region)
        method = _method(client, service, operation)
        try:
            if client.can_paginate(operation):
                if page_size is not None:
                    params["PaginationConfig"] = {"PageSize": page_size}
                pages = client.get_paginator(operation).paginate(**params)
                return [item for item in pages.search(result) if item is not None]
            found = jmespath.search(result, method(**params))
            return list(found or [])
        except (ClientError, BotoCoreError) as exc:
            raise _failure(service, operation, exc) from exc

    def shared(self, key: tuple[Any, ...], loader: Callable[[], Any]) -> Any:
        """Fetch once per account, however many resources ask (credential report, flow logs)."""
        return self._account.shared(key, loader)

    def sleep(self, seconds: float) -> None:
        """Wait between polls; injected so tests never wait."""
        self._account.run.sleep(seconds)


def _method(client: Any, service: str, operation: str) -> Any:
    """The client's method for `operation`; one its model was not loaded with is a failure
    of that call (an operation missing from `operations_called`), not a crash of the scan."""
    method = getattr(client, operation, None)
    if method is None:
        raise _CallFailedError(service, operation, "OperationNotLoaded", "not a known operation")
    return method


def _unprefix_ip_host(request: Any, **_kwargs: Any) -> None:
    """S3 Control puts the account id in front of the endpoint's host name; an endpoint given
    as an IP address (a proxy, an emulator) has no such sub-domain, so the prefix is dropped."""
    parts = urlsplit(request.url)
    prefix, _dot, rest = (parts.hostname or "").partition(".")
    if not prefix.isdigit() or not rest:
        return
    try:
        ipaddress.ip_address(rest)
    except ValueError:
        if rest != "localhost":
            return
    netloc = rest + (f":{parts.port}" if parts.port else "")
    request.url = urlunsplit(parts._replace(netloc=netloc))


class _Run:
    """One collection run: counters, errors and the thread pool's bookkeeping."""

    def __init__(self, options: CollectorOptions, sleep: Callable[[float], None]):
        self.options, self.sleep = options, sleep
        self.botocore_config = Config(
            retries={"mode": "adaptive", "max_attempts": options.max_attempts},
            max_pool_connections=max(10, options.max_workers),
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
            user_agent_extra="compliancebot",
        )
        self.result = Collection()
        self._lock = threading.Lock()
        self._errors: dict[tuple[str, ...], ScanError] = {}
        self._error_counts: Counter[tuple[str, ...]] = Counter()
        # {type: the data keys rules read}: the rest of each answer is not kept (a type not
        # named here keeps everything).
        self.kept: Mapping[str, frozenset[str]] = {}

    def count_call(self, model: Any = None, **_: Any) -> None:
        service = model.service_model.service_name if model is not None else "unknown"
        with self._lock:
            self.result.api_calls[service] += 1

    def count_request(self, request: Any = None, **_: Any) -> None:
        host = getattr(request, "url", "") or ""
        service = host.split("://", 1)[-1].split(".", 1)[0] if host else "unknown"
        with self._lock:
            self.result.http_requests[service] += 1

    def error(
        self,
        account: str,
        region: str,
        failure: _CallFailedError,
        *,
        resource_type: str | None = None,
        resource_id: str | None = None,
    ) -> None:
        # Deduplicated: 1,000 buckets denied the same call are one error with a count.
        key = (account, region, failure.service, failure.operation, failure.code)
        with self._lock:
            self._error_counts[key] += 1
            if key not in self._errors:
                self._errors[key] = ScanError(
                    account=account,
                    region=region,
                    service=failure.service,
                    operation=failure.operation,
                    code=failure.code,
                    message=failure.message,
                    resource_type=resource_type,
                    resource_id=resource_id,
                )

    def errors(self) -> list[ScanError]:
        out = []
        for key, first in self._errors.items():
            count = self._error_counts[key]
            message = f"{first.message} ({count} calls)" if count > 1 else first.message
            out.append(dataclasses.replace(first, message=message))
        return out


def _at_home(home: Any, region: str, region_list: list[str]) -> bool:
    """Keep a repeated item once: in its home region, or the first scanned one if not scanned."""
    if home in region_list:
        return bool(home == region)
    return region == region_list[0]


def _needed_specs(needs: Mapping[str, set[str]] | None) -> dict[str, set[str] | None]:
    """Resource types to collect and, for each, which enriched keys (None: all of them)."""
    if needs is None:
        return {spec.type: None for spec in SPECS}
    wanted: dict[str, set[str] | None] = {}
    for rtype, keys in needs.items():
        spec = SPECS_BY_TYPE.get(rtype)
        if spec is None:
            continue
        wanted.setdefault(rtype, set())
        current = wanted[rtype]
        assert current is not None
        current.update(keys & spec.enrich_keys())
        for enricher in spec.enrich:
            if enricher.key in current:
                current.update(enricher.needs)
        for derive in spec.derive:
            if derive.key in keys:
                src = wanted.setdefault(derive.source_type, set())
                assert src is not None
                src.update(derive.source_keys)
    return wanted


def _kept_keys(
    needs: Mapping[str, set[str]] | None, wanted: Mapping[str, set[str] | None]
) -> dict[str, frozenset[str]]:
    """{type: keys to keep in each resource's data} where the rules' needs say so.

    Rules read a resource only through the root keys they declare (condition, applies_to,
    detail), so the rest of a listing item is dropped once the resource is enriched. A type
    that feeds a derived key keeps everything: the derivation reads keys of its own.
    """
    if needs is None:
        return {}
    sources = {derive.source_type for rtype in wanted for derive in SPECS_BY_TYPE[rtype].derive}
    return {rtype: frozenset(keys) for rtype, keys in needs.items() if rtype not in sources}


class AwsCollector:
    """Collects resources from a list of AWS targets."""

    resource_types = frozenset(SPECS_BY_TYPE)  # scanners.model.Collector

    def __init__(
        self,
        *,
        targets: Iterable[AwsTarget],
        options: CollectorOptions | None = None,
        session_factory: Callable[[AwsTarget], boto3.Session] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        progress: ProgressFn | None = None,
    ):
        self.targets = list(targets)
        self.options = options or CollectorOptions()
        self.session_factory = session_factory or self._default_session
        self.sleep = sleep
        self.progress = progress

    def _default_session(self, target: AwsTarget) -> boto3.Session:
        return aws_session(profile=target.profile, model_cache=self.options.model_cache)

    def collect(
        self,
        *,
        needs: Mapping[str, set[str]] | None = None,
        accounts: set[str] | None = None,
        regions: set[str] | None = None,
        only: tuple[str, str] | None = None,
    ) -> Collection:
        """Collect the resource types (and enriched keys) in `needs`; None means everything.

        `only` (resource type, id): fetch that one resource by its id where its spec says how
        (`by_id`), instead of listing every resource of its type (a re-check).
        """
        run = _Run(self.options, self.sleep)
        wanted = _needed_specs(needs)
        run.kept = _kept_keys(needs, wanted)
        with ThreadPoolExecutor(
            max_workers=self.options.max_workers, thread_name_prefix="collect"
        ) as pool:
            # Each task reports to a queue when it ends: waiting on a set of thousands of
            # futures per completion (concurrent.futures.wait) costs O(n) each time.
            finished: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
            outstanding = total = done = 0
            for target in self.targets:
                future = pool.submit(
                    self._open_account, run, pool, target, wanted, accounts, regions, only
                )
                future.add_done_callback(finished.put)
                outstanding += 1
                total += 1
            while outstanding:
                children = finished.get().result()
                outstanding -= 1
                done += 1
                for child in children:
                    child.add_done_callback(finished.put)
                outstanding += len(children)
                total += len(children)
                if self.progress and (done % PROGRESS_EVERY == 0 or not outstanding):
                    self.progress(done, total)
        self._derive(run, wanted)
        run.result.errors = run.errors()
        return run.result

    # ---- accounts and regions -----------------------------------------------------------------

    def _open_account(
        self,
        run: _Run,
        pool: ThreadPoolExecutor,
        target: AwsTarget,
        wanted: dict[str, set[str] | None],
        accounts: set[str] | None,
        regions: set[str] | None,
        only: tuple[str, str] | None,
    ) -> list[Future[Any]]:
        label = target.account_id or target.name
        try:
            session = self.session_factory(target)
            if target.role_arn:
                session = self._assume_role(run, session, target)
            account_id = target.account_id or self._caller_account(run, session, target)
        except _CallFailedError as exc:
            run.error(label, GLOBAL_REGION, exc)
            return []
        except BotoCoreError as exc:  # no credentials, bad profile: say which target
            run.error(label, GLOBAL_REGION, _failure("sts", "session", exc))
            return []
        if accounts and account_id not in accounts and target.name not in accounts:
            return []
        account = _Account(run, target, session, account_id)
        try:
            region_list = self._regions(account, target)
        except _CallFailedError as exc:
            run.error(account_id, GLOBAL_REGION, exc)
            return []
        if regions:
            region_list = [r for r in region_list if r in regions]
        account.regions = tuple(region_list)
        with run._lock:
            run.result.accounts.add(account_id)
            run.result.regions[account_id] = region_list
        futures: list[Future[Any]] = []
        for rtype, keys in wanted.items():
            spec = SPECS_BY_TYPE[rtype]
            places = region_list if spec.scope in ("regional", "region") else [GLOBAL_REGION]
            one = only[1] if only and only[0] == rtype and spec.by_id else None
            for region in places:
                futures.append(
                    pool.submit(
                        self._list, run, pool, account, spec, keys, region, region_list, one
                    )
                )
        return futures

    def _assume_role(self, run: _Run, session: boto3.Session, target: AwsTarget) -> boto3.Session:
        ctx = CallContext(
            _Account(run, target, session, target.account_id or target.name), GLOBAL_REGION
        )
        params: dict[str, Any] = {
            "RoleArn": target.role_arn,
            "RoleSessionName": target.session_name,
        }
        if target.external_id:
            params["ExternalId"] = target.external_id
        creds = ctx.call("sts", "assume_role", **params)["Credentials"]
        return aws_session(
            model_cache=self.options.model_cache,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )

    def _caller_account(self, run: _Run, session: boto3.Session, target: AwsTarget) -> str:
        ctx = CallContext(_Account(run, target, session, target.name), GLOBAL_REGION)
        return str(ctx.call("sts", "get_caller_identity")["Account"])

    @staticmethod
    def _regions(account: _Account, target: AwsTarget) -> list[str]:
        if target.regions != "all":
            return list(target.regions)
        ctx = CallContext(account, GLOBAL_REGION)
        answer = ctx.call("ec2", "describe_regions")
        return sorted(r["RegionName"] for r in answer["Regions"])

    # ---- listing and enrichment ---------------------------------------------------------------

    def _list(
        self,
        run: _Run,
        pool: ThreadPoolExecutor,
        account: _Account,
        spec: ResourceSpec,
        keys: set[str] | None,
        region: str,
        region_list: list[str],
        one: str | None = None,
    ) -> list[Future[Any]]:
        if spec.scope in ("account", "region"):
            rid = account.id if spec.scope == "account" else region
            items = [Resource(type=spec.type, id=rid, account=account.id, region=region, data={})]
        else:
            ctx = CallContext(account, region)
            try:
                if one is not None:
                    raw = self._fetch_one(ctx, spec, one)
                else:
                    raw = ctx.paginate(
                        spec.service,
                        spec.operation,
                        spec.result,
                        page_size=spec.page_size,
                        **spec.constants,
                    )
            except _CallFailedError as exc:
                run.error(account.id, region, exc, resource_type=spec.type)
                return []
            items = []
            for item in raw:
                data = {spec.item_key: item} if spec.item_key else dict(item)
                if spec.shape is not None and one is None:
                    data = spec.shape(data)
                if spec.home_key and not _at_home(data.get(spec.home_key), region, region_list):
                    continue
                rid = jmespath.search(spec.id, data)
                name = jmespath.search(spec.name, data) if spec.name else None
                items.append(
                    Resource(
                        type=spec.type,
                        id=str(rid),
                        account=account.id,
                        region=region,
                        data=data,
                        name=str(name) if name is not None else None,
                    )
                )
        covered = region_list if spec.region_key else [region]
        with run._lock:
            for place in covered:
                run.result.listed.add((spec.type, account.id, place))
        enrichers = [
            e for e in spec.enrich if keys is None or e.key in keys or e.key == spec.region_key
        ]
        futures = []
        for res in items:
            # What the listing already answered is not asked again, resource by resource.
            todo = [e for e in enrichers if not (e.key in spec.listed and e.key in res.data)]
            futures.append(pool.submit(self._enrich, run, account, spec, todo, res, region_list))
        return futures

    @staticmethod
    def _fetch_one(ctx: CallContext, spec: ResourceSpec, rid: str) -> list[Any]:
        """The listing item(s) of one resource, by its id; [] when it no longer exists."""
        by_id = spec.by_id
        assert by_id is not None
        if not by_id.operation:
            return [rid] if spec.item_key else [{spec.id: rid}]
        params = {**by_id.constants, by_id.param: [rid] if by_id.as_list else rid}
        try:
            answer = ctx.call(spec.service, by_id.operation, **params)
        except _CallFailedError as exc:
            if exc.code in by_id.gone:
                return []
            raise
        found = jmespath.search(by_id.result or spec.result, answer)
        # An answer about the resource that does not repeat its id (HeadBucket) gets it here.
        return [
            {spec.id: rid, **item} if isinstance(item, dict) else item
            for item in (found or [])
            if item is not None
        ]

    def _enrich(
        self,
        run: _Run,
        account: _Account,
        spec: ResourceSpec,
        enrichers: list[Enrich],
        res: Resource,
        region_list: list[str],
    ) -> list[Future[Any]]:
        data, unknown = dict(res.data), set(res.unknown)
        region = res.region
        for enricher in enrichers:
            current = dataclasses.replace(res, data=data, region=region)
            try:
                data[enricher.key] = self._enrich_one(account, enricher, current, spec)
            except _CallFailedError as exc:
                unknown.add(enricher.key)
                data.pop(enricher.key, None)
                run.error(account.id, region, exc, resource_type=spec.type, resource_id=res.id)
                if enricher.key == spec.region_key:
                    # Without its region the bucket cannot be placed: no region's listing of
                    # this type can prove absence, and the other calls would go astray.
                    with run._lock:
                        for place in region_list:
                            run.result.listed.discard((spec.type, account.id, place))
                    return []
                continue
            if enricher.key == spec.region_key:
                region = str(data[enricher.key])
                if region not in region_list:
                    return []
        kept = run.kept.get(spec.type)
        if kept is not None:
            data = {k: v for k, v in data.items() if k in kept}
        final = dataclasses.replace(res, data=data, region=region, unknown=frozenset(unknown))
        with run._lock:
            run.result.resources.append(final)
        return []

    @staticmethod
    def _enrich_one(account: _Account, enricher: Enrich, res: Resource, spec: ResourceSpec) -> Any:
        ctx = CallContext(account, res.region)
        if enricher.when and not jmespath.search(enricher.when, res.data):
            return None
        if enricher.custom is not None:
            return enricher.custom(ctx, res)
        params = dict(enricher.constants)
        for arg, expr in enricher.params.items():
            if expr == "$account":
                params[arg] = account.id
            elif expr == "$region":
                params[arg] = res.region
            else:
                params[arg] = jmespath.search(expr, res.data)
        try:
            answer = ctx.call(enricher.service or spec.service, enricher.operation, **params)
        except _CallFailedError as exc:
            if exc.code in enricher.missing:
                return None
            raise
        value = jmespath.search(enricher.result, answer) if enricher.result else answer
        if enricher.transform is None:
            return value
        try:
            return enricher.transform(value)
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            # An answer we cannot read (a policy that is not JSON) leaves the key unknown.
            service = enricher.service or spec.service
            failure = _CallFailedError(service, enricher.operation, "MalformedAnswer", str(exc))
            raise failure from exc

    @staticmethod
    def _derive(run: _Run, wanted: dict[str, set[str] | None]) -> None:
        result = run.result
        for rtype, keys in wanted.items():
            spec = SPECS_BY_TYPE[rtype]
            for derive in spec.derive:
                if keys is not None and derive.key not in keys:
                    continue
                for i, res in enumerate(result.resources):
                    if res.type != rtype:
                        continue
                    sources = [
                        r
                        for r in result.resources
                        if r.type == derive.source_type and r.account == res.account
                    ]
                    places = result.regions.get(res.account, [])
                    complete = all(
                        (derive.source_type, res.account, p) in result.listed for p in places
                    )
                    broken = any(set(derive.source_keys) & s.unknown for s in sources)
                    if complete and not broken:
                        data = {**res.data, derive.key: derive.fn(sources)}
                        result.resources[i] = dataclasses.replace(res, data=data)
                    else:
                        result.resources[i] = dataclasses.replace(
                            res, unknown=res.unknown | {derive.key}
                        )
