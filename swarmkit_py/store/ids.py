"""Object IDs shaped like Swarm's, so IDs look familiar in `docker` output and prefix lookups
behave the same: 25 lowercase base36 characters (about 129 bits of entropy).

The RNG is injectable because seeded simulations and tests must produce the same IDs on every
run; production uses the OS's CSPRNG, as IDs double as unguessable handles in node certificates.
"""

from __future__ import annotations

import random
import secrets

ID_LENGTH = 25
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_SPACE = 36**ID_LENGTH
_SYSTEM_RNG = secrets.SystemRandom()


def new_id(rng: random.Random | None = None) -> str:
    """A fresh 25-character ID. Pass a seeded `random.Random` for reproducible runs."""
    n = (rng or _SYSTEM_RNG).randrange(_SPACE)
    out = []
    for _ in range(ID_LENGTH):
        n, digit = divmod(n, 36)
        out.append(_ALPHABET[digit])
    return "".join(reversed(out))


def is_valid_id(value: str) -> bool:
    """True for strings that could have come from `new_id`; lets callers tell an ID from a name."""
    return len(value) == ID_LENGTH and all(c in _ALPHABET for c in value)
