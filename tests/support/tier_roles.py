"""The sidecar's tiers as placement sees them: a name and what the tier declares about where
it keeps entries (`sidecar.tiers.base`: NODE_LOCAL, SHARED_RAM, DURABLE). Placement decides by
the declaration, never by the name; these give test tiers the declarations of the real ones.
"""

from __future__ import annotations

from sidecar.core.clock import Clock
from sidecar.tiers.base import DURABLE, NODE_LOCAL, PREFIX_DELETE, SHARED_RAM, TAG_DELETE
from tests.support.fakes import DictTier

#: What each of the sidecar's tiers declares; any other name declares nothing.
ROLE = {"memory": NODE_LOCAL, "redis": SHARED_RAM, "memcached": SHARED_RAM, "postgres": DURABLE}


class Described:
    """A tier as placement sees it: its name and the role of the real tier of that name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.capabilities = frozenset({ROLE[name]} if name in ROLE else ())


def described(names: tuple[str, ...] | list[str]) -> list[Described]:
    return [Described(name) for name in names]


def role_tier(name: str, clock: Clock) -> DictTier:
    """A `DictTier` named `name` that declares the real tier's role (and can delete by
    prefix and tag)."""
    role = {ROLE[name]} if name in ROLE else set()
    return DictTier(name, clock, capabilities=frozenset({PREFIX_DELETE, TAG_DELETE, *role}))
