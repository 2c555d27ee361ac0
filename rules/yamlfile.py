"""The one loader of user YAML (config, secrets, rules, frameworks, tasks): bounded, with lines.

Every file a user or an attacker can hand us goes through `load_yaml`, which refuses before
reading anything that is not a regular file or is larger than `MAX_BYTES`, and composes the
document with limits on depth, aliases and expanded size, so memory and time are bounded by
construction. Each key keeps its line, so every error points at file:line.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from rules.errors import CatalogError

PathKey = tuple[str | int, ...]

# The largest built-in file (a framework's controls) is ~45 KB and ~1,500 nodes; a config file
# is a few hundred nodes. The limits leave room for big catalogs while keeping the worst case
# (every limit reached) well under a second and a few MB.
MAX_BYTES = 1024 * 1024
MAX_DEPTH = 50
MAX_NODES = 20_000
# Aliases are allowed: `<<: *defaults` is how people share settings between AWS targets. What
# makes them dangerous (a "billion laughs" file: a few dozen aliases to aliases expand to 10^9
# nodes) is bounded by MAX_NODES and MAX_DEPTH counted on the expanded document; the count limit
# only keeps the error short and obvious for a file built to attack.
MAX_ALIASES = 100

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"

try:  # libyaml scans in C: a 1 MB scalar costs milliseconds, not a second of pure Python
    from yaml._yaml import CParser as _Parser

    _POSITIONS_IN_BYTES = True  # libyaml reports where it stopped as an offset into UTF-8

    class _ParserBase(Composer, _Parser):
        def __init__(self, text: str) -> None:
            _Parser.__init__(self, text)
            Composer.__init__(self)

except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    _POSITIONS_IN_BYTES = False

    class _ParserBase(Reader, Scanner, Parser, Composer):  # type: ignore[no-redef]
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)


class _Marked(Protocol):
    line: int


class _RefusedError(Exception):
    """A limit or rule of ours was broken at `mark`."""

    def __init__(self, mark: _Marked | None, message: str) -> None:
        super().__init__(message)
        self.line = mark.line + 1 if mark is not None else None
        self.message = message


class _BoundedLoader(_ParserBase, SafeConstructor, Resolver):
    """SafeLoader composing with limits: depth, aliases, expanded size, string keys."""

    def __init__(self, text: str) -> None:
        _ParserBase.__init__(self, text)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._aliases = 0
        self._nodes = 0  # nodes of the document as consumers will see it, aliases expanded
        self._tallest: list[int] = [0]  # per open node: the height of its tallest child so far
        self._composed: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height)

    def _count(self, nodes: int, mark: _Marked | None) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise _RefusedError(
                mark, f"the document has more than {MAX_NODES} values (aliases counted expanded)"
            )

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        mark = event.start_mark if event is not None else None
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _RefusedError(mark, f"more than {MAX_ALIASES} aliases (*name)")
            node = super().compose_node(parent, index)
            done = self._composed.get(id(node))
            if done is None:  # the anchor is still open: the alias is inside what it names
                raise _RefusedError(mark, "an alias refers to a value that contains it")
            size, height = done
            if self._depth + height > MAX_DEPTH:
                raise _RefusedError(
                    mark, f"nested more than {MAX_DEPTH} levels deep (through aliases)"
                )
            self._count(size, mark)
            self._tallest[-1] = max(self._tallest[-1], height)
            return node
        # Checked before descending: Composer recurses, so 3,000 levels would be a RecursionError.
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _RefusedError(mark, f"nested more than {MAX_DEPTH} levels deep")
        self._count(1, mark)
        before = self._nodes
        self._tallest.append(0)
        node = super().compose_node(parent, index)
        height = 1 + self._tallest.pop()
        self._tallest[-1] = max(self._tallest[-1], height)
        self._depth -= 1
        if isinstance(node, yaml.MappingNode):
            _check_keys(node)
        if node is not None:
            self._composed[id(node)] = (self._nodes - before + 1, height)
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError) as exc:  # e.g. the date 2024-13-45
            shown = str(node.value)[:40] if isinstance(node, yaml.ScalarNode) else node.tag
            raise _RefusedError(node.start_mark, f"{shown!r} cannot be read: {exc}") from exc


_KEY_KINDS = {"int": "a number", "float": "a number", "bool": "true/false", "null": "null"}


def _check_keys(node: yaml.MappingNode) -> None:
    seen: set[str] = set()
    for key_node, _value in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
            raise _RefusedError(key_node.start_mark, f"a key is a {kind}; keys must be names")
        if key_node.tag != _STR_TAG:
            text = " ".join(str(key_node.value).split())[:40]  # one line, whatever it holds
            kind = key_node.tag.rsplit(":", 1)[-1]
            raise _RefusedError(
                key_node.start_mark,
                f"key {text} is read as {_KEY_KINDS.get(kind, kind)}, not a name: "
                f"quote it ('{text}') if it is one",
            )
        if key_node.value in seen:
            raise _RefusedError(key_node.start_mark, f"key {key_node.value!r} appears twice")
        seen.add(key_node.value)


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


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int]) -> None:
    # Bounded by the loader: at most MAX_NODES visits (aliases expanded) and MAX_DEPTH deep.
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), lines)


def _line_at(text: str, position: int) -> int:
    if _POSITIONS_IN_BYTES:
        return text.encode("utf-8", "replace").count(b"\n", 0, max(position, 0)) + 1
    return text.count("\n", 0, max(position, 0)) + 1


def parse_yaml(text: str, file: str) -> YamlDoc:
    """Parse one YAML document within the limits; every problem is a CatalogError at file:line."""
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the pure-Python reader already checks characters
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _RefusedError as exc:
        raise CatalogError(file, exc.message, line=exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "unreadable"
        if exc.context and what.startswith("but "):  # "expected one document ... but found"
            what = f"{exc.context} {what}"
        raise CatalogError(
            file, f"not valid YAML: {what}", line=mark.line + 1 if mark else None
        ) from None
    except yaml.reader.ReaderError as exc:  # a control character: binary data, not text
        code = ord(exc.character) if isinstance(exc.character, str) else int(exc.character)
        raise CatalogError(
            file,
            f"not a text file: character U+{code:04X} is not allowed in YAML",
            line=_line_at(text, exc.position),
        ) from None
    except yaml.YAMLError as exc:
        raise CatalogError(file, f"not valid YAML: {str(exc).splitlines()[0]}") from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[PathKey, int] = {(): 1}
    if node is not None:
        _walk(node, (), lines)
    return YamlDoc(file=file, data=data, lines=lines)


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _refuse_unless_regular(mode: int, size: int, file: str) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise CatalogError(file, f"is {kind}, not a YAML file")
    if size > MAX_BYTES:
        raise CatalogError(file, f"is {size} bytes; a YAML file here may have {MAX_BYTES} at most")


def read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_BYTES, else a CatalogError saying why not."""
    file = str(path)
    try:
        # stat first: opening a device or a FIFO can block or have side effects.
        before = path.stat()
        _refuse_unless_regular(before.st_mode, before.st_size, file)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise CatalogError(file, "no such file") from None
    except OSError as exc:
        raise CatalogError(file, f"cannot be read: {exc.strerror or exc}") from None
    try:
        now = os.fstat(fd)  # what we opened, in case the path was swapped since the stat
        _refuse_unless_regular(now.st_mode, now.st_size, file)
        chunks: list[bytes] = []
        left = MAX_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise CatalogError(file, f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_BYTES:
        raise CatalogError(file, f"grew past {MAX_BYTES} bytes while being read")
    return data


def load_yaml(path: Path) -> YamlDoc:
    """Read and parse a YAML file within the limits above."""
    data = read_bounded(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(
            str(path),
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            line=data.count(b"\n", 0, exc.start) + 1,
        ) from None
    return parse_yaml(text, str(path))
