"""What a reader sees of our markup: small models of Jira's wiki renderer and of CommonMark.

Tests use them to say "the ticket shows exactly this text, and nothing in it is markup".
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

from integrations.markup import JIRA_SPECIAL

_ENTITY = re.compile(r"&#(\d+);")
_JIRA_BLOCK = re.compile(r"^\s*(h[1-6]|bq)\.", re.MULTILINE)


def jira_text(wiki: str) -> str:
    """The text Jira shows for wiki markup: backslash escapes and numeric entities resolved."""

    def one(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return chr(int(m.group(1)))
        return m.group(2) if m.group(2) in JIRA_SPECIAL else m.group()

    return re.sub(r"&#(\d+);|\\(.)", one, wiki, flags=re.DOTALL)


def jira_active(wiki: str) -> list[str]:
    """Markup Jira would act on: an unescaped special character, a `\\\\` line break, a heading
    or quote at the start of a line. Empty for text made only of escaped data."""
    found = []
    i = 0
    while i < len(wiki):
        c = wiki[i]
        entity = _ENTITY.match(wiki, i)
        if entity:
            i = entity.end()
            continue
        if c == "\\":
            if i + 1 >= len(wiki) or wiki[i + 1] not in JIRA_SPECIAL:
                found.append(f"bare backslash at {i}")
            i += 2
            continue
        if c in JIRA_SPECIAL:
            found.append(f"{c!r} at {i}")
        i += 1
    found += [f"block {m.group()!r}" for m in _JIRA_BLOCK.finditer(wiki)]
    return found


_MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
# What a paragraph of plain text turns into; anything else (a link, an image, emphasis, a
# heading, a list, a quote, HTML, an entity decoded) is markup that data switched on.
_PLAIN = {"paragraph_open", "paragraph_close", "inline", "code_block"}
_PLAIN_INLINE = {"text", "softbreak", "hardbreak"}


def markdown_shown(source: str) -> tuple[str, set[str]]:
    """(the text a CommonMark renderer shows, the kinds of markup it found beyond plain text)."""
    kinds: set[str] = set()
    shown: list[str] = []
    for token in _MD.parse(source):
        if token.type not in _PLAIN:
            kinds.add(token.type)
        if token.type == "code_block":
            shown.append(token.content)
        for child in token.children or []:
            if child.type not in _PLAIN_INLINE:
                kinds.add(child.type)
            shown.append(child.content if child.type == "text" else "\n")
        shown.append("\n")
    return "".join(shown), kinds


def same_words(a: str, b: str) -> bool:
    """Equal but for whitespace, which renderers fold."""
    return a.split() == b.split()


def as_lines(text: str) -> str:
    """Text as a tracker keeps it: line breaks as `\\n`, other control characters as U+FFFD."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub("[\x00-\x08\x0b-\x1f\x7f-\x9f]", "\ufffd", text)


def unescaped(source: str, char: str) -> list[int]:
    """Positions of `char` in backslash-escaped markup that no backslash escapes."""
    found, i = [], 0
    while i < len(source):
        if source[i] == "\\":
            i += 2
            continue
        if source[i] == char:
            found.append(i)
        i += 1
    return found
