"""A failing finding's detail: one sentence for people and the evidence for tools.

Both come from the rule's data, never from per-rule code. A rule may declare

    detail:
      text: "{protocol} port {ports} open to {sources}"
      fields:                      # name -> JMESPath over each matched item
        protocol: "IpProtocol == '-1' && 'all traffic' || IpProtocol"
        ports: FromPort
        sources: "IpRanges[?CidrIp=='0.0.0.0/0'].CidrIp"

The fields are read from each element the condition matched (an `any_item` match, the elements
of a failing `every_item`, a check's witnesses such as a bucket policy's public statements) or,
when the condition matches no list elements, from the resource itself. The sentence is `text`
rendered per element, joined with "; ". The evidence is {"items": [fields per element]} or the
resource's fields. A rule without `detail` still gets one: the value of every setting its
condition compared (`MetadataOptions.HttpTokens: optional`).
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from rules.conditions import Condition, EvalContext, Why, _root_fields
from rules.errors import ConditionError

MAX_TEXT = 1000  # characters of the sentence kept with the finding
MAX_SHOWN = 10  # matched elements named in the sentence; the rest are counted
MAX_ITEMS = 50  # matched elements kept in the evidence
MAX_EVIDENCE = 16_384  # characters of the evidence as JSON
_MAX_VALUE = 200  # characters of one value in the sentence


@dataclass(frozen=True)
class DetailSpec:
    """A rule's `detail`, parsed: the sentence template and its named JMESPath fields."""

    text: str
    fields: Mapping[str, Any]  # name -> compiled JMESPath
    per_item: bool  # fields read matched elements (True) or the resource (False)

    def root_keys(self) -> set[str]:
        """Resource keys the fields read when they read the resource itself."""
        if self.per_item:
            return set()
        return set().union(*(_root_fields(e.parsed) for e in self.fields.values()))


@dataclass(frozen=True)
class Detail:
    text: str | None
    evidence: dict[str, Any] | None


def _parse_fields(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConditionError(("detail", "fields"), "must map names to JMESPath expressions")
    fields: dict[str, Any] = {}
    for name, expr in raw.items():
        where = ("detail", "fields", str(name))
        if not isinstance(name, str) or not name.isidentifier():
            raise ConditionError(where, "a field name is letters, digits and underscores")
        if not isinstance(expr, str) or not expr.strip():
            raise ConditionError(where, "must be a non-empty JMESPath expression string")
        try:
            fields[name] = jmespath.compile(expr)
        except JMESPathError as exc:
            raise ConditionError(where, f"invalid JMESPath expression {expr!r}: {exc}") from exc
    return fields


def parse_detail(raw: Any, condition: Condition) -> DetailSpec:
    """Turn the YAML `detail` into a DetailSpec, or raise ConditionError naming the bad part."""
    if not isinstance(raw, Mapping):
        raise ConditionError(("detail",), "must be a mapping with text and fields")
    extra = set(raw) - {"text", "fields"}
    if extra:
        raise ConditionError(("detail",), f"unknown keys {sorted(extra)}; it has text, fields")
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ConditionError(("detail", "text"), "must be a non-empty string")
    if len(text) > 300:
        raise ConditionError(("detail", "text"), "is longer than 300 characters")
    fields = _parse_fields(raw.get("fields") or {})
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConditionError(("detail", "text"), f"{exc} (write {{{{ for a literal brace)") from exc
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if spec or conversion:
            raise ConditionError(("detail", "text"), f"write {{{name}}} without a format")
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none declared"
            raise ConditionError(("detail", "text"), f"{{{name}}} is not a field (fields: {known})")
    return DetailSpec(text=text, fields=fields, per_item=condition.itemizes())


def _plain(value: Any) -> Any:
    """The value as JSON would hold it (timestamps as ISO strings)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def show(value: Any) -> str:
    """One value as words in a sentence."""
    if value is None:
        text = "not set"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | tuple):
        if not value:
            text = "none"
        else:
            shown = [show(v) for v in value[:MAX_SHOWN]]
            more = len(value) - len(shown)
            text = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
    elif isinstance(value, Mapping):
        text = json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))
    else:
        text = str(_plain(value))
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def _join(texts: list[str]) -> str:
    unique = list(dict.fromkeys(t for t in texts if t))
    shown = unique[:MAX_SHOWN]
    more = len(unique) - len(shown)
    out = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
    return out if len(out) <= MAX_TEXT else out[: MAX_TEXT - 1] + "…"


def _fit(evidence: dict[str, Any]) -> dict[str, Any]:
    """Cap the evidence's size: keep the first items that fit and say how many were left."""
    items = evidence.get("items")
    if isinstance(items, list):
        kept = items[:MAX_ITEMS]
        while kept and len(json.dumps({**evidence, "items": kept})) > MAX_EVIDENCE:
            kept = kept[: len(kept) // 2]
        if len(kept) < len(items):
            return {**evidence, "items": kept, "truncated": len(items) - len(kept)}
        return evidence
    if len(json.dumps(evidence)) > MAX_EVIDENCE:
        return {"truncated": True, "keys": sorted(evidence)[:MAX_ITEMS]}
    return evidence


def _fields(spec: DetailSpec, subject: Any) -> dict[str, Any]:
    return {name: _plain(expr.search(subject)) for name, expr in spec.fields.items()}


def _render(spec: DetailSpec, values: Mapping[str, Any]) -> str:
    return spec.text.format(**{k: show(v) for k, v in values.items()})


def explain(condition: Condition, spec: DetailSpec | None, data: Any, ctx: EvalContext) -> Detail:
    """The detail of a failing verdict (`condition` holds for `data`)."""
    why = Why()
    condition.explain(data, ctx, why)
    if spec is not None and (why.items or not spec.per_item):
        subjects = why.items if spec.per_item else [data]
        values = [_fields(spec, s) for s in subjects]
        text = _join([_render(spec, v) for v in values])
        evidence = {"items": values, "count": len(values)} if spec.per_item else values[0]
        return Detail(text=text or None, evidence=_fit(evidence))
    if why.items:
        items = [_plain(i) for i in why.items]
        return Detail(
            text=_join([show(i) for i in items]),
            evidence=_fit({"items": items, "count": len(items)}),
        )
    if why.settings:
        settings = {k: _plain(v) for k, v in why.settings.items()}
        text = _join([f"{k}: {show(v)}" for k, v in settings.items()])
        return Detail(text=text, evidence=_fit(settings))
    return Detail(text=None, evidence=None)
