"""The rule catalog: rules and frameworks loaded from YAML, validated, cross-checked."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import rules.checks  # noqa: F401 - registers the named checks before any rule is parsed
from rules.conditions import Condition, parse_condition
from rules.detail import DetailSpec, parse_detail
from rules.errors import CatalogError, ConditionError
from rules.yamlfile import YamlDoc, load_yaml

BUILTIN_DIR = Path(__file__).resolve().parent
FRAMEWORK_IDS = ("hipaa", "soc2", "hitrust", "pci_dss", "cis_aws")


class Severity(enum.StrEnum):
    """How bad a failing rule is; ordered from worst."""

    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"
    info = "info"

    @property
    def rank(self) -> int:
        """0 for critical up to 4 for info: sorts worst first."""
        return list(Severity).index(self)

    def at_least(self, other: Severity) -> bool:
        """True when self is as bad as `other` or worse."""
        return self.rank <= other.rank


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Remediation(_Strict):
    text: str = Field(min_length=1)
    cli: str | None = None
    url: str | None = None


class Examples(_Strict):
    pass_: Annotated[list[dict[str, Any]], Field(alias="pass", min_length=1)]
    fail: Annotated[list[dict[str, Any]], Field(min_length=1)]


class RuleFile(_Strict):
    """The YAML shape of one rule."""

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{2,79}$")]
    title: Annotated[str, Field(min_length=5, max_length=150)]
    severity: Severity
    resource_type: str
    rationale: str = Field(min_length=1)
    remediation: Remediation
    frameworks: dict[str, list[str]]
    condition: dict[str, Any]
    applies_to: dict[str, Any] | None = None
    detail: dict[str, Any] | None = None
    examples: Examples
    tags: list[str] = []

    @field_validator("frameworks")
    @classmethod
    def _some_controls(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not value or not any(value.values()):
            raise ValueError("cite at least one control, e.g. {soc2: [CC6.1]}")
        return value


class Control(_Strict):
    title: str = Field(min_length=1)
    section: str = Field(min_length=1)


class FrameworkFile(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    name: str
    version: str
    controls: dict[str, Control] = Field(min_length=1)


@dataclass(frozen=True)
class Rule:
    """A validated rule, ready to evaluate."""

    id: str
    title: str
    severity: Severity
    resource_type: str
    rationale: str
    remediation: Remediation
    frameworks: Mapping[str, tuple[str, ...]]
    condition: Condition
    applies_to: Condition | None
    examples: Examples
    source: str
    service: str
    tags: tuple[str, ...] = ()
    detail: DetailSpec | None = None

    def keys(self) -> set[str]:
        """Top-level resource keys the rule reads (what the scanner must collect)."""
        out = self.condition.root_keys()
        if self.applies_to is not None:
            out |= self.applies_to.root_keys()
        if self.detail is not None:
            out |= self.detail.root_keys()
        return out

    def controls(self) -> list[tuple[str, str]]:
        """(framework, control) pairs this rule serves."""
        return [(fw, c) for fw, ids in self.frameworks.items() for c in ids]


@dataclass(frozen=True)
class Framework:
    id: str
    name: str
    version: str
    controls: Mapping[str, Control]
    source: str


@dataclass
class Catalog:
    """All frameworks and (enabled) rules, after user overrides."""

    frameworks: dict[str, Framework] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)
    disabled: dict[str, Rule] = field(default_factory=dict)

    def select(
        self, *, rule_ids: Iterable[str] | None = None, framework: str | None = None
    ) -> list[Rule]:
        """Enabled rules, optionally only the named ones or those citing one framework."""
        chosen = list(self.rules.values())
        if rule_ids:
            wanted = set(rule_ids)
            unknown = wanted - set(self.rules)
            if unknown:
                raise CatalogError("--rule", f"unknown or disabled rule(s): {sorted(unknown)}")
            chosen = [r for r in chosen if r.id in wanted]
        if framework:
            self.require_framework(framework)
            chosen = [r for r in chosen if r.frameworks.get(framework)]
        return sorted(chosen, key=lambda r: r.id)

    def rule(self, rule_id: str) -> Rule | None:
        """The rule of a finding, enabled or disabled since (None: gone from the catalog)."""
        return self.rules.get(rule_id) or self.disabled.get(rule_id)

    def controls_of(self, rule_id: str) -> list[tuple[str, list[str]]]:
        """The controls a rule serves: (framework name, control ids), in the rule's order."""
        rule = self.rule(rule_id)
        if rule is None:
            return []
        return [
            (self.frameworks[fw].name if fw in self.frameworks else fw, list(ids))
            for fw, ids in rule.frameworks.items()
        ]

    def require_framework(self, framework: str) -> Framework:
        """The framework, or an error listing the known ones."""
        if framework not in self.frameworks:
            raise CatalogError(
                "--framework",
                f"unknown framework {framework!r}; known: {', '.join(sorted(self.frameworks))}",
            )
        return self.frameworks[framework]

    def needs(self, rules: Iterable[Rule]) -> dict[str, set[str]]:
        """{resource type: keys to collect} for the given rules."""
        out: dict[str, set[str]] = {}
        for rule in rules:
            out.setdefault(rule.resource_type, set()).update(rule.keys())
        return out


def _pydantic_error(doc: YamlDoc, exc: ValidationError) -> CatalogError:
    # A misspelt key also leaves the real one "missing": the typo is the useful message.
    first = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc = tuple("pass" if p == "pass_" else p for p in first["loc"])
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field (check the spelling)"
    elif first["type"] == "missing":
        message = "required field is missing"
    elif first["type"] == "enum":
        message = f"{message}; got {first.get('input')!r}"
    return doc.error(loc, message)


def _condition(doc: YamlDoc, raw: Any, key: str) -> Condition:
    try:
        return parse_condition(raw, (key,))
    except ConditionError as exc:
        raise doc.error(exc.path, exc.message) from exc


_M = TypeVar("_M", RuleFile, FrameworkFile)


def _load_model(path: Path, model_cls: type[_M], what: str) -> tuple[YamlDoc, _M]:
    """Parse and validate one YAML file whose `id` must equal its file name."""
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise CatalogError(str(path), f"a {what} file must be a mapping")
    try:
        model = model_cls.model_validate(doc.data)
    except ValidationError as exc:
        raise _pydantic_error(doc, exc) from exc
    if model.id != path.stem:
        raise doc.error(("id",), f"id {model.id!r} must match the file name {path.stem!r}")
    return doc, model


def load_framework(path: Path) -> Framework:
    """One framework file, validated."""
    _doc, model = _load_model(path, FrameworkFile, "framework")
    return Framework(
        id=model.id,
        name=model.name,
        version=model.version,
        controls=model.controls,
        source=str(path),
    )


def load_rule(
    path: Path, *, frameworks: Mapping[str, Framework], resource_types: Iterable[str]
) -> Rule:
    """One rule file, validated against the known frameworks and resource types."""
    doc, model = _load_model(path, RuleFile, "rule")
    types = set(resource_types)
    if model.resource_type not in types:
        raise doc.error(
            ("resource_type",),
            f"unknown resource type {model.resource_type!r}; known: {', '.join(sorted(types))}",
        )
    for fw, controls in model.frameworks.items():
        if fw not in frameworks:
            raise doc.error(
                ("frameworks", fw),
                f"unknown framework {fw!r}; known: {', '.join(sorted(frameworks))}",
            )
        for i, control in enumerate(controls):
            if control not in frameworks[fw].controls:
                raise doc.error(
                    ("frameworks", fw, i),
                    f"unknown {fw} control {control!r} (see {frameworks[fw].source})",
                )
    condition = _condition(doc, model.condition, "condition")
    applies_to = _condition(doc, model.applies_to, "applies_to") if model.applies_to else None
    detail = None
    if model.detail is not None:
        try:
            detail = parse_detail(model.detail, condition)
        except ConditionError as exc:
            raise doc.error(exc.path, exc.message) from exc
    service = path.parent.name
    return Rule(
        id=model.id,
        title=model.title,
        severity=model.severity,
        resource_type=model.resource_type,
        rationale=model.rationale.strip(),
        remediation=model.remediation,
        frameworks={fw: tuple(c) for fw, c in model.frameworks.items() if c},
        condition=condition,
        applies_to=applies_to,
        examples=model.examples,
        source=str(path),
        service=service,
        tags=tuple(model.tags),
        detail=detail,
    )


def rule_files(root: Path) -> list[Path]:
    """Rule YAML files below `root`, skipping framework and task folders."""
    skip = {"frameworks", "tasks"}
    return sorted(p for p in root.rglob("*.yaml") if not skip & set(p.relative_to(root).parts))


def load_catalog(
    *,
    extra_paths: Iterable[Path] = (),
    disabled: Iterable[str] = (),
    severity_overrides: Mapping[str, Severity] | None = None,
    resource_types: Iterable[str] | None = None,
    include_builtin: bool = True,
) -> Catalog:
    """Built-in rules and frameworks plus the user's directories, with overrides applied.

    A user directory may hold its own `frameworks/*.yaml`; a user rule with a built-in id
    replaces the built-in one.
    """
    if resource_types is None:
        from scanners.types import resource_types as known_types

        resource_types = known_types()
    types = set(resource_types)
    roots = ([BUILTIN_DIR] if include_builtin else []) + [Path(p) for p in extra_paths]
    for root in roots:
        if not root.is_dir():
            raise CatalogError(str(root), "rule directory does not exist")
    catalog = Catalog()
    for root in roots:
        for path in sorted((root / "frameworks").glob("*.yaml")):
            fw = load_framework(path)
            catalog.frameworks[fw.id] = fw
    for root in roots:
        for path in rule_files(root):
            rule = load_rule(path, frameworks=catalog.frameworks, resource_types=types)
            catalog.rules[rule.id] = rule
    for rule_id in disabled:
        if rule_id not in catalog.rules:
            raise CatalogError("rules.disabled", f"unknown rule id {rule_id!r}")
        catalog.disabled[rule_id] = catalog.rules.pop(rule_id)
    for rule_id, severity in (severity_overrides or {}).items():
        if rule_id not in catalog.rules and rule_id not in catalog.disabled:
            raise CatalogError("rules.severity", f"unknown rule id {rule_id!r}")
        if rule_id in catalog.rules:
            import dataclasses

            catalog.rules[rule_id] = dataclasses.replace(
                catalog.rules[rule_id], severity=Severity(severity)
            )
    return catalog


def validate_paths(paths: Iterable[Path]) -> list[Rule]:
    """Validate the given rule files or directories against the built-in frameworks."""
    from scanners.types import resource_types

    catalog = load_catalog()
    types = resource_types()
    out = []
    for path in paths:
        files = rule_files(path) if path.is_dir() else [path]
        if not path.exists():
            raise CatalogError(str(path), "no such file or directory")
        frameworks = dict(catalog.frameworks)
        if path.is_dir():
            for fw_path in sorted((path / "frameworks").glob("*.yaml")):
                fw = load_framework(fw_path)
                frameworks[fw.id] = fw
        for file in files:
            out.append(load_rule(file, frameworks=frameworks, resource_types=types))
    return out
