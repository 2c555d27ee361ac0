"""Hostile text for property tests: what an attacker puts in an AWS tag, a Slack note or a file.

Markup of every medium we write (rich, Slack mrkdwn, Jira wiki, Markdown), control characters,
and long strings, mixed with arbitrary text.
"""

from __future__ import annotations

from hypothesis import strategies as st

FRAGMENTS = [
    # rich markup and emoji codes
    "[/]",
    "[bold",
    "[bold red]x[/bold red]",
    "[link=https://evil]x[/link]",
    ":red_circle:",
    # Slack mrkdwn
    "<!channel>",
    "<!here|here>",
    "<@U123ABC>",
    "<#C123|general>",
    "<https://evil.example|click>",
    "<!subteam^S123>",
    "&",
    "&lt;",
    "&amp;",
    "*bold*",
    "_it_",
    "~strike~",
    "`code`",
    "```",
    # Jira wiki
    "[evil|http://x]",
    "[~admin]",
    "{code}",
    "{noformat}",
    "!image.png!",
    "h1. ",
    "bq. ",
    "\\\\",
    "\\",
    "-strike-",
    "+ins+",
    "^sup^",
    "??cite??",
    "(x)",
    ":)",
    "||a||b||",
    "@board",
    "&#92;",
    # Markdown
    "[click](https://evil)",
    "![i](https://evil/i.png)",
    "<b>",
    "<https://evil>",
    "# ",
    "1. ",
    "2) ",
    "> ",
    "- ",
    "---",
    "===",
    "| a | b |\n|---|---|",
    "    ",
    "\t",
    # line breaks and control characters
    "\n",
    "\r\n",
    "\r",
    "\n\n",
    "\x1b[2J",
    "\x1b]0;owned\x07",
    "\x00",
    "\x7f",
    "\x9b",
    "\u202e",
    "\u2066",
]

# Text an attacker controls: hostile fragments glued to arbitrary text.
hostile_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), min_size=1, max_size=8
).map("".join)

# Sometimes very long (a 100,000-character tag value, a note at Slack's limit).
long_hostile_text = st.one_of(
    hostile_text,
    st.tuples(hostile_text, st.integers(min_value=50, max_value=300)).map(lambda t: t[0] * t[1]),
)
