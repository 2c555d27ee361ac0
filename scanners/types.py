"""Every resource type a rule may judge: AWS's (scanners.aws.specs) and the hosts'."""

from __future__ import annotations


def resource_types() -> set[str]:
    """The known resource types, for validating a rule's `resource_type`."""
    from scanners.aws.specs import SPECS_BY_TYPE
    from scanners.host.types import HOST_TYPES

    return set(SPECS_BY_TYPE) | set(HOST_TYPES)
