"""Plain text made safe for the trackers' media: Jira wiki markup, Markdown, one-line fields.

Everything a ticket says about a finding is data (AWS names and tags, Slack notes, rule text),
so it is escaped here, once per medium, by the sink that sends it; callers pass plain text.

- Jira wiki markup (descriptions, comments): backslash escapes, the mechanism Jira's own renderer
  defines (`BackslashEscapeRendererComponent`: ``! [ ] ^ ~ + ? % { } ( ) * _ - | @ #``). A backslash
  cannot escape itself (``\\\\`` is a line break there), so it becomes the entity ``&#92;``; a line
  starting like a heading or a quote (``h1.``, ``bq.``) has its first letter written as an entity.
  Chosen over ``{noformat}`` blocks, which would turn every field into a monospaced box.
- Markdown (Trello card descriptions and comments, the framework report): CommonMark backslash
  escapes (valid before any ASCII punctuation) of what opens inline markup, everywhere, and of
  what opens a block (``#``, ``-``, ``1.``, ``>``...) at the start of a line, where alone it acts;
  ``&`` too, so no entity in data is decoded. Bare URLs stay text that renderers may link.
- One-line plain fields (a Jira summary, a Trello card name: neither renders markup): line breaks
  and control characters become spaces, and the length is bounded.
"""

from __future__ import annotations

import re

# C0/C1 control characters but tab and newline: trackers refuse some (XML-invalid) and none shows.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")

JIRA_SPECIAL = frozenset("!#%()*+-?@[]^_{|}~")
_JIRA_BLOCK_START = re.compile(r"^(\s*)(h[1-6]|bq)\.", re.MULTILINE)

# What opens markup anywhere in a line in CommonMark or its GitHub/Trello extensions (`~~`,
# tables, `@member`); `(` `)` `!` only act after a `[`, which is escaped.
MARKDOWN_SPECIAL = frozenset("\\`*[]<|~&@")
# `_` between two letters or digits can neither open nor close emphasis (CommonMark's flanking
# rule), so `ec2_volume_encrypted` stays readable; any other `_` is escaped.
_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
# What opens markup only at the start of a line: headings, lists, quotes, rules, "1." and "1)".
_MARKDOWN_LINE_START = re.compile(r"^([#+\-=>]|\d{1,9}[.)])", re.MULTILINE)
# Indentation: four spaces make a code block, which would show the escapes themselves.
_INDENT = re.compile(r"^[ \t]+", re.MULTILINE)


def _lines(text: str) -> str:
    """Line breaks as `\\n`; other control characters as U+FFFD (something was there)."""
    return _CONTROLS.sub("\ufffd", text.replace("\r\n", "\n").replace("\r", "\n"))


def jira_wiki(text: str) -> str:
    """Plain text as Jira wiki markup that shows exactly that text, with no markup active."""
    escaped = "".join(
        "&#92;" if c == "\\" else "\\" + c if c in JIRA_SPECIAL else c for c in _lines(text)
    )
    # "h1." and "bq." only mean something at the start of a line; an entity is still the letter.
    return _JIRA_BLOCK_START.sub(
        lambda m: f"{m.group(1)}&#{ord(m.group(2)[0])};{m.group(2)[1:]}.", escaped
    )


def markdown(text: str, *, mid_line: bool = False) -> str:
    """Plain text as Markdown (CommonMark) that shows exactly that text, with no markup active.

    `mid_line`: the text follows other text on its line, so its own start is no line start
    (`164.312` after a label needs no escape there; at a line's start "1." would be a list).
    """
    # A paragraph does not show a line's leading blanks anyway; dropped, no line is code.
    flat = _INDENT.sub("", _lines(text))
    escaped = _UNDERSCORE.sub(
        r"\\_", "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in flat)
    )
    head = ""
    if mid_line:  # the first line continues someone else's: only the next ones start lines
        first, newline, escaped = escaped.partition("\n")
        head = first + newline
    return head + _MARKDOWN_LINE_START.sub(
        lambda m: f"{m.group(1)[:-1]}\\{m.group(1)[-1]}", escaped
    )


def one_line(text: str, limit: int) -> str:
    """Plain text for a one-line field: no line breaks or controls, at most `limit` characters."""
    flat = " ".join(_lines(text).replace("\ufffd", " ").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
