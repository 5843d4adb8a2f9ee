"""List filters shared by the node, service and task endpoints (dockerd's `filters` query).

Unknown keys are refused with Docker's wording; `label`-style filters accept `key` (the key is
present) or `key=value` (exact match).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import InvalidArgument

Filters = Mapping[str, Sequence[str]]


def validate_filters(filters: Filters | None, accepted: frozenset[str]) -> dict[str, list[str]]:
    """Copy of `filters` with every key checked; Docker's wording for unknown keys."""
    out: dict[str, list[str]] = {}
    for key, values in (filters or {}).items():
        if key not in accepted:
            raise InvalidArgument(f"Invalid filter '{key}'", plain=True)
        out[key] = [str(v) for v in values]
    return out


def parse_labels(values: Sequence[str]) -> dict[str, str | None]:
    """`key=value` must match exactly; a bare `key` only needs the key present."""
    out: dict[str, str | None] = {}
    for v in values:
        key, sep, value = v.partition("=")
        out[key] = value if sep else None
    return out


def labels_match(have: Mapping[str, str] | None, want: Mapping[str, str | None]) -> bool:
    have = have or {}
    for key, value in want.items():
        if key not in have:
            return False
        if value is not None and have[key] != value:
            return False
    return True
