"""Named checks for what the condition language cannot say; rules cite them by name.

Every check lives here: `rules.catalog` imports this module before it parses a rule, so a
rule citing `{check: <name>, args: {...}}` finds it registered. How to add one, with an example:
docs/writing-rules.md, "Checks in Python". None is needed by the built-in rules yet: a rule that
the condition language can say stays data (its YAML file and its test fixture, nothing else).
"""

from __future__ import annotations
