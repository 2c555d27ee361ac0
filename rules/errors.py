"""compliancebot's own exceptions: each names the file, key or argument at fault."""

from __future__ import annotations


class CompliancebotError(Exception):
    """Base of every error we show to a user instead of a traceback."""


class CatalogError(CompliancebotError):
    """A rule, framework or task file is invalid."""

    def __init__(self, file: str, message: str, *, line: int | None = None, field: str = ""):
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class ConditionError(CompliancebotError):
    """A condition is malformed; `path` is the location inside the condition."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        self.path, self.message = path, message
        super().__init__(f"{format_path(path)}: {message}")


def format_path(path: tuple[str | int, ...]) -> str:
    """('condition', 'all', 0, 'op') -> 'condition.all[0].op'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
