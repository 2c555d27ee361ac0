"""Files an attacker (or an accident) hands us where YAML is expected, and what we must say.

Each case makes the thing at a path (a file, a directory, a device link, a pipe) and names the
words the one-line error must hold. Config, rule and task tests all use the same cases, because
all three read through the same loader.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

# "Billion laughs": nine levels of nine aliases expand to 9^9 (~387 million) strings; the file
# is 600 bytes. PyYAML alone builds it as shared references; walking it expanded never ends.
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)
DEEP = "a: " + "[" * 3000 + "]" * 3000 + "\n"


def _text(text: str) -> Callable[[Path], object]:
    return lambda path: path.write_text(text)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _fifo(path: Path) -> None:
    os.mkfifo(path)  # nobody ever writes to it: reading it would wait forever


@dataclass(frozen=True)
class Hostile:
    """One hostile input: how to make it, and what the error says."""

    make: Callable[[Path], object]  # what it returns (bytes written) is ignored
    says: str
    line: int | None = None  # the line the error points at, when the file has lines


HOSTILE: dict[str, Hostile] = {
    "alias bomb": Hostile(_text(ALIAS_BOMB), "more than 20000 values", line=5),
    "3000-deep nesting": Hostile(_text(DEEP), "nested more than 50 levels deep", line=1),
    "number as a key": Hostile(_text("id: x\n1: one\n"), "key 1 is read as a number", line=2),
    "list as a key": Hostile(_text("? [a, b]\n: x\n"), "a key is a list", line=1),
    "recursive alias": Hostile(_text("a: &x [1, *x]\n"), "refers to a value that contains it", 1),
    "/dev/zero": Hostile(_dev_zero, "is a character device, not a YAML file"),
    "a directory": Hostile(Path.mkdir, "is a directory, not a YAML file"),
    "a named pipe": Hostile(_fifo, "is a named pipe, not a YAML file"),
    "a binary file": Hostile(
        lambda path: path.write_bytes(b"id: x\n" + bytes(range(128, 256))), "not UTF-8 text", line=2
    ),
    "NUL bytes": Hostile(_text("id: x\nt: \x00\x01\n"), "not a text file", line=2),
    "over 1 MiB": Hostile(
        lambda path: path.write_bytes(b"#" * (1024 * 1024 + 1)), "may have 1048576 at most"
    ),
}

hostile_cases = pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))


def limit_memory() -> None:
    """In a child process: a regression that expands a bomb fails fast instead of swapping."""
    resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))
