"""Load YAML keeping the line of every key, so errors can point at file:line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rules.errors import CatalogError

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDoc:
    """A parsed YAML document and the line where each key path starts."""

    file: str
    data: Any
    lines: dict[PathKey, int]

    def line_of(self, path: PathKey) -> int | None:
        """The line of the longest known prefix of `path`."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    def error(self, path: PathKey, message: str) -> CatalogError:
        """A CatalogError pointing at `path` in this file."""
        from rules.errors import format_path

        return CatalogError(self.file, message, line=self.line_of(path), field=format_path(path))


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], file: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                raise CatalogError(
                    file, f"key '{key}' appears twice", line=key_node.start_mark.line + 1
                )
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), lines, file)


def parse_yaml(text: str, file: str) -> YamlDoc:
    """Parse one YAML document; syntax errors and duplicate keys become CatalogErrors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise CatalogError(
            file, f"not valid YAML: {exc.problem}", line=mark.line + 1 if mark else None
        ) from exc
    except yaml.YAMLError as exc:
        raise CatalogError(file, f"not valid YAML: {exc}") from exc
    lines: dict[PathKey, int] = {(): 1}
    if node is not None:
        _walk(node, (), lines, file)
    return YamlDoc(file=file, data=data, lines=lines)


def load_yaml(path: Path) -> YamlDoc:
    """Read and parse a YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(str(path), f"cannot be read: {exc}") from exc
    return parse_yaml(text, str(path))
