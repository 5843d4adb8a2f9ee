"""The `filters` query parameter of list endpoints.

Docker clients send two forms and both must work: the map form `{"role":{"manager":true}}`
(the CLI) and the older list form `{"role":["manager"]}` (the SDK). As in Go's
filters.FromJSON, every key of the map form counts whatever its boolean. The result is
`{key: [values]}`; which keys are allowed is the endpoint's business (unknown -> 400).
"""

from __future__ import annotations

from .errors import bad_request
from .params import loads


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    if raw is None or not raw.strip():
        return {}
    data = loads(raw, "filters")
    if not isinstance(data, dict):
        raise bad_request('invalid filters: expected a JSON object like {"key":{"value":true}}')
    out: dict[str, list[str]] = {}
    for key, values in data.items():
        if isinstance(values, dict):
            if not all(isinstance(v, bool) for v in values.values()):
                raise bad_request(
                    f"invalid filter '{key}': map values must be booleans, "
                    'as in {"' + key + '":{"value":true}}'
                )
            out[key] = list(values)
        elif isinstance(values, list):
            if not all(isinstance(v, str) for v in values):
                raise bad_request(f"invalid filter '{key}': list values must be strings")
            out[key] = list(values)
        else:
            raise bad_request(f'invalid filter \'{key}\': expected {{"value":true}} or ["value"]')
    return out
