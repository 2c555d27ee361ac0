"""The condition language: data over a resource dict, evaluated without code per rule.

A condition is one of
  {all: [c, ...]}  {any: [c, ...]}  {not: c}
  {key: <JMESPath>, op: <operator>, value: <v>}      value omitted for unary operators
  {key: <JMESPath>, any_item: c} / every_item / no_item   c applied to each list element
  {check: <registered function>, args: {...}}
A new operator is one entry in OPERATORS.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from rules.errors import ConditionError

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class EvalContext:
    """What a condition may consult besides the resource: the clock."""

    now: datetime


@dataclass
class Why:
    """What made a condition hold: the compared settings and the list elements that matched.

    Filled by `Condition.explain` on data the condition holds for; `rules.detail` turns it
    into a finding's sentence and evidence.
    """

    settings: dict[str, Any] = field(default_factory=dict)  # key -> its value in the data
    items: list[Any] = field(default_factory=list)  # any_item matches, a check's witnesses


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _cmp(fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any, EvalContext], bool]:
    def op(actual: Any, expected: Any, _: EvalContext) -> bool:
        if actual is None:
            return False
        try:
            return fn(actual, expected)
        except TypeError:
            return False

    return op


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _older(actual: Any, days: Any, ctx: EvalContext) -> bool:
    when = _as_time(actual)
    return when is not None and ctx.now - when > timedelta(days=days)


def _newer(actual: Any, days: Any, ctx: EvalContext) -> bool:
    when = _as_time(actual)
    return when is not None and ctx.now - when <= timedelta(days=days)


def _contains(actual: Any, expected: Any, _: EvalContext) -> bool:
    if isinstance(actual, str) and not isinstance(expected, str):
        return False
    if isinstance(actual, str | list | tuple | dict):
        try:
            return expected in actual
        except TypeError:  # an unhashable value looked up in a map's keys
            return False
    return False


def _empty(actual: Any, _e: Any, _c: EvalContext) -> bool:
    return actual is None or (isinstance(actual, str | list | tuple | dict) and len(actual) == 0)


@dataclass(frozen=True)
class Operator:
    """One comparison: the function, and what its `value` must be (None: no value)."""

    fn: Callable[[Any, Any, EvalContext], bool]
    value: str | None
    doc: str


OPERATORS: dict[str, Operator] = {
    "eq": Operator(lambda a, e, _: a == e, "any", "equals value"),
    "ne": Operator(lambda a, e, _: a != e, "any", "differs from value (a missing key differs)"),
    "gt": Operator(_cmp(lambda a, e: a > e), "number", "greater than value"),
    "gte": Operator(_cmp(lambda a, e: a >= e), "number", "greater than or equal to value"),
    "lt": Operator(_cmp(lambda a, e: a < e), "number", "less than value"),
    "lte": Operator(_cmp(lambda a, e: a <= e), "number", "less than or equal to value"),
    "in": Operator(lambda a, e, _: a in e, "list", "is one of the values"),
    "not_in": Operator(lambda a, e, _: a not in e, "list", "is none of the values"),
    "contains": Operator(_contains, "any", "list or string contains value"),
    "not_contains": Operator(
        lambda a, e, c: not _contains(a, e, c),
        "any",
        "list or string does not contain value (true when missing)",
    ),
    "present": Operator(lambda a, _e, _c: a is not None, None, "key exists and is not null"),
    "absent": Operator(lambda a, _e, _c: a is None, None, "key is missing or null"),
    "empty": Operator(_empty, None, "missing, null, or an empty list/string/map"),
    "not_empty": Operator(lambda a, e, c: not _empty(a, e, c), None, "has at least one element"),
    "true": Operator(lambda a, _e, _c: a is True, None, "is boolean true"),
    "false": Operator(
        lambda a, _e, _c: a is not True, None, "is not boolean true (missing counts)"
    ),
    "regex": Operator(
        lambda a, e, _: isinstance(a, str) and re.search(e, a) is not None,
        "regex",
        "string matches the regular expression",
    ),
    "not_regex": Operator(
        lambda a, e, _: not (isinstance(a, str) and re.search(e, a)),
        "regex",
        "string does not match (true when missing)",
    ),
    "older_than_days": Operator(_older, "number", "timestamp older than value days"),
    "newer_than_days": Operator(_newer, "number", "timestamp within the last value days"),
}


class Condition:
    """A parsed condition node."""

    def evaluate(self, data: Any, ctx: EvalContext) -> bool:
        """True when the condition holds for `data`."""
        raise NotImplementedError

    def root_keys(self) -> set[str]:
        """Top-level keys of the resource this condition reads."""
        raise NotImplementedError

    def explain(self, data: Any, ctx: EvalContext, why: Why) -> None:
        """Add to `why` what makes this condition hold for `data` (call only when it does)."""
        raise NotImplementedError

    def itemizes(self) -> bool:
        """True when `explain` can name matched list elements (any_item, a witnessing check)."""
        return False


@dataclass(frozen=True)
class AllOf(Condition):
    items: tuple[Condition, ...]

    def evaluate(self, data: Any, ctx: EvalContext) -> bool:
        return all(c.evaluate(data, ctx) for c in self.items)

    def root_keys(self) -> set[str]:
        return set().union(*(c.root_keys() for c in self.items))

    def explain(self, data: Any, ctx: EvalContext, why: Why) -> None:
        for c in self.items:
            c.explain(data, ctx, why)

    def itemizes(self) -> bool:
        return any(c.itemizes() for c in self.items)


@dataclass(frozen=True)
class AnyOf(Condition):
    items: tuple[Condition, ...]

    def evaluate(self, data: Any, ctx: EvalContext) -> bool:
        return any(c.evaluate(data, ctx) for c in self.items)

    def root_keys(self) -> set[str]:
        return set().union(*(c.root_keys() for c in self.items))

    def explain(self, data: Any, ctx: EvalContext, why: Why) -> None:
        for c in self.items:  # every branch that holds is part of the reason
            if c.evaluate(data, ctx):
                c.explain(data, ctx, why)

    def itemizes(self) -> bool:
        return any(c.itemizes() for c in self.items)


@dataclass(frozen=True)
class Not(Condition):
    item: Condition

    def evaluate(self, data: Any, ctx: EvalContext) -> bool:
        return not self.item.evaluate(data, ctx)

    def root_keys(self) -> set[str]:
        return self.item.root_keys()

    def explain(self, data: Any, ctx: EvalContext, why: Why) -> None:
        # What did not hold cannot be pointed at; the values it read are the reason.
        _read(self.item, data, why)


def _root_fields(node: Mapping[str, Any]) -> set[str]:
    """Field names a JMESPath AST reads from the document root."""
    kind = node.get("type")
    children = node.get("children", [])
    if kind == "field":
        return {str(node["value"])}
    if kind in (
        "subexpression",
        "index_expression",
        "projection",
        "value_projection",
        "filter_projection",
        "pipe",
    ):
        # Only the leftmost child is evaluated against the root; the rest see its result.
        return _root_fields(children[0]) if children else set()
    if kind in ("current", "literal", "identity"):
        return set()
    out: set[str] = set()
    for child in children:
        if isinstance(child, dict):
            out |= _root_fields(child)
    return out


@dataclass(frozen=True)
class Compare(Condition):
    key: str
    op: str
    value: Any
    expr: Any = field(compare=False, hash=False, repr=False)

    def evaluate(self, data: Any, ctx: EvalContext) -> bool:
        return OPERATORS[self.op].fn(self.expr.search(data), self.value, ctx)

    def root_keys(self) -> set[str]:
        return _root_fields(self.expr.parsed)

    def explain(self, data: Any, ctx: EvalContext, why: Why) -> None:
        why.settings[self.key] = self.expr.search(data)


@dataclass(frozen=True)
class Items(Condition):
    key: str
    quantifier: str  # any_item | every_item | no_item
    item: Condition
    expr: Any = field(compare=False, hash=False, repr=False)

    def _elements(self, data: Any) -> list[Any]:
        found = self.expr.search(data)
        return found if isinstance(found, list) else ([] if found is None else [found])

    def evaluate(self, data: Any, ctx: EvalContext) -> bool:
        hits = (self.item.evaluate(e, ctx) for e in self._elements(data))
        if self.quantifier == "any_item":
            return any(hits)
        if self.quantifier == "every_item":
            return all(hits)
        return not any(hits)

    def root_keys(self) -> set[str]:
        return _root_fields(self.expr.parsed)

    def explain(self, data: Any, ctx: EvalContext, why: Why) -> None:
        elements = self._elements(data)
        if self.quantifier == "any_item":
            why.items.extend(e for e in elements if self.item.evaluate(e, ctx))
        elif self.quantifier == "every_item" and elements:
            why.items.extend(elements)  # each one has the property the rule fails on
        else:
            why.settings[self.key] = self.expr.search(data)

    def itemizes(self) -> bool:
        return self.quantifier != "no_item"


def _read(cond: Condition, data: Any, why: Why) -> None:
    """Record the value of every key `cond` compares, whatever its outcome."""
    if isinstance(cond, AllOf | AnyOf):
        for c in cond.items:
            _read(c, data, why)
    elif isinstance(cond, Not):
        _read(cond.item, data, why)
    elif isinstance(cond, Compare | Items):
        why.settings[cond.key] = cond.expr.search(data)


CheckFn = Callable[[Any, Mapping[str, Any], EvalContext], bool]
WitnessFn = Callable[[Any, Mapping[str, Any], EvalContext], list[Any]]


@dataclass(frozen=True)
class Check:
    """A registered function for what data cannot say; declares the keys and args it reads.

    `witness`, when given, names the elements that make the check hold (a bucket policy's
    public statements), as an any_item names its matches: a rule's `detail` renders them.
    """

    fn: CheckFn
    keys: frozenset[str]
    doc: str
    args: frozenset[str] = frozenset()
    witness: WitnessFn | None = None


# Filled by importing rules.checks, which rules.catalog does before it parses any rule.
CHECKS: dict[str, Check] = {}


def register_check(
    name: str,
    *,
    keys: set[str],
    doc: str,
    args: set[str] | None = None,
    witness: WitnessFn | None = None,
) -> Callable[[CheckFn], CheckFn]:
    """Decorator: make `fn` available to rules as `{check: name, args: {...}}`.

    `keys`: the top-level resource keys `fn` reads (collected for it; the verdict is unknown
    when one could not be). `args`: the argument names a rule may pass; others are errors.
    """
    if not keys:
        raise ValueError(f"check {name!r}: declare the resource keys it reads in keys={{...}}")

    def wrap(fn: CheckFn) -> CheckFn:
        # A second function under one name would silently replace the first for every rule.
        if name in CHECKS:
            raise ValueError(f"check {name!r} is already registered ({CHECKS[name].fn!r})")
        CHECKS[name] = Check(
            fn=fn, keys=frozenset(keys), doc=doc, args=frozenset(args or ()), witness=witness
        )
        return fn

    return wrap


@dataclass(frozen=True)
class CallCheck(Condition):
    name: str
    args: Mapping[str, Any]

    def evaluate(self, data: Any, ctx: EvalContext) -> bool:
        return CHECKS[self.name].fn(data, self.args, ctx)

    def root_keys(self) -> set[str]:
        return set(CHECKS[self.name].keys)

    def explain(self, data: Any, ctx: EvalContext, why: Why) -> None:
        witness = CHECKS[self.name].witness
        if witness is not None:
            why.items.extend(witness(data, self.args, ctx))

    def itemizes(self) -> bool:
        return CHECKS[self.name].witness is not None


_QUANTIFIERS = ("any_item", "every_item", "no_item")


def _parse_check(raw: Mapping[str, Any], path: Path) -> CallCheck:
    name = raw["check"]
    if not isinstance(name, str) or name not in CHECKS:
        known = (
            f"known checks: {', '.join(sorted(CHECKS))}"
            if CHECKS
            else "no checks are registered (they live in rules/checks.py)"
        )
        raise ConditionError((*path, "check"), f"unknown check {name!r}; {known}")
    args = raw.get("args") or {}
    if not isinstance(args, Mapping):
        raise ConditionError((*path, "args"), "must be a mapping")
    allowed = CHECKS[name].args
    for arg in args:
        if arg not in allowed:
            valid = ", ".join(sorted(allowed)) if allowed else "none"
            raise ConditionError(
                (*path, "args", str(arg)),
                f"check {name!r} takes no argument {arg!r}; it takes: {valid}",
            )
    return CallCheck(name=name, args=dict(args))


def _compile(expr: Any, path: Path) -> Any:
    if not isinstance(expr, str) or not expr.strip():
        raise ConditionError(path, "must be a non-empty JMESPath expression string")
    try:
        return jmespath.compile(expr)
    except JMESPathError as exc:
        raise ConditionError(path, f"invalid JMESPath expression {expr!r}: {exc}") from exc


def _check_value(op: str, spec: Operator, raw: Mapping[str, Any], path: Path) -> Any:
    if spec.value is None:
        if "value" in raw:
            raise ConditionError((*path, "value"), f"operator '{op}' takes no value")
        return None
    if "value" not in raw:
        raise ConditionError(path, f"operator '{op}' needs a 'value'")
    value = raw["value"]
    if spec.value == "number" and not _num(value):
        raise ConditionError((*path, "value"), f"operator '{op}' needs a number, got {value!r}")
    if spec.value == "list" and not isinstance(value, list):
        raise ConditionError((*path, "value"), f"operator '{op}' needs a list, got {value!r}")
    if spec.value == "regex":
        try:
            re.compile(value)
        except (re.error, TypeError) as exc:
            raise ConditionError((*path, "value"), f"invalid regular expression: {exc}") from exc
    return value


def parse_condition(  # noqa: PLR0912 - one branch per condition form, each with its error
    raw: Any, path: Path = ("condition",)
) -> Condition:
    """Turn YAML data into a Condition, or raise ConditionError naming the bad part."""
    if not isinstance(raw, Mapping):
        raise ConditionError(
            path,
            "a condition must be a mapping with one of: all, any, not, "
            "key (+op or any_item/every_item/no_item), check",
        )
    keys = set(raw)
    for combinator, cls in (("all", AllOf), ("any", AnyOf)):
        if combinator in raw:
            if keys != {combinator}:
                raise ConditionError(
                    path, f"'{combinator}' stands alone; also found {sorted(keys - {combinator})}"
                )
            items = raw[combinator]
            if not isinstance(items, list) or not items:
                raise ConditionError((*path, combinator), "must be a non-empty list of conditions")
            return cls(
                tuple(parse_condition(c, (*path, combinator, i)) for i, c in enumerate(items))
            )
    if "not" in raw:
        if keys != {"not"}:
            raise ConditionError(path, f"'not' stands alone; also found {sorted(keys - {'not'})}")
        return Not(parse_condition(raw["not"], (*path, "not")))
    if "check" in raw:
        extra = keys - {"check", "args"}
        if extra:
            raise ConditionError(path, f"unexpected keys beside 'check': {sorted(extra)}")
        return _parse_check(raw, path)
    if "key" not in raw:
        raise ConditionError(
            path,
            f"unknown condition form with keys {sorted(keys)}; expected "
            "all, any, not, check, or key with op / any_item / "
            "every_item / no_item",
        )
    expr = _compile(raw["key"], (*path, "key"))
    quantifiers = [q for q in _QUANTIFIERS if q in raw]
    if quantifiers:
        extra = keys - {"key", quantifiers[0]}
        if len(quantifiers) > 1 or extra:
            raise ConditionError(
                path,
                f"'{quantifiers[0]}' takes only 'key' beside it; "
                f"also found {sorted(extra | set(quantifiers[1:]))}",
            )
        q = quantifiers[0]
        return Items(
            key=raw["key"], quantifier=q, item=parse_condition(raw[q], (*path, q)), expr=expr
        )
    extra = keys - {"key", "op", "value"}
    if extra:
        raise ConditionError(
            path, f"unexpected keys {sorted(extra)}; a comparison has key, op, value"
        )
    op = raw.get("op")
    if op not in OPERATORS:
        raise ConditionError(
            (*path, "op"), f"unknown operator {op!r}; valid: {', '.join(OPERATORS)}"
        )
    value = _check_value(op, OPERATORS[op], raw, path)
    return Compare(key=raw["key"], op=op, value=value, expr=expr)
