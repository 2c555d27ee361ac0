"""Per-rule moto fixtures: each builds a resource that passes or fails one rule.

Importing this package imports every module in it, so each `@fixture` registers itself.
"""

import importlib
import pkgutil

from tests.aws_fixtures.registry import FIXTURES, Aws, Fixture, fixture

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["FIXTURES", "Aws", "Fixture", "fixture"]
