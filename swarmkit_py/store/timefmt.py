"""Timestamps as the Docker CLI parses them: RFC 3339 with an explicit zone.

A naive `isoformat()` breaks every CLI command (see notes/docker-api.md, pitfall 7), so all
stored times are timezone-aware UTC and always render with a trailing `Z`. Docker sends
nanoseconds; Python keeps microseconds, which is finer than anything we schedule on.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(Z|z|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(value: str) -> datetime:
    """Parse RFC 3339 (any number of fractional digits, Z or offset) into aware UTC."""
    text = value.strip()
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"invalid RFC 3339 timestamp: {value!r}")
    if len(text) == 27 and text[10] == "T" and text[26] == "Z":
        # format_rfc3339's own spelling (every stored time, three per task in each Raft
        # entry): microseconds and Z, which fromisoformat reads as they are, to the same
        # aware UTC datetime, at a tenth of the cost of the general path below
        return datetime.fromisoformat(text)
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = "+00:00" if zone in ("Z", "z") else zone
    dt = datetime.fromisoformat(
        f"{year}-{month}-{day}T{hour}:{minute}:{second}.{micro:06d}{tz}"
    )
    return dt.astimezone(UTC)


def to_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC: the store never deals in local time."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_rfc3339(value: datetime) -> str:
    """Always six fractional digits, so equal times always encode to equal bytes (snapshots
    of two members must compare equal)."""
    if value.tzinfo is not UTC:
        value = to_utc(value)
    # isoformat, not strftime: the same text at half the cost (every task render and
    # every Raft entry of a task writes two of these: 8 % of a leader's CPU during a fill)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def utcnow() -> datetime:
    return datetime.now(UTC)
