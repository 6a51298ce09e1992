"""Storage tiers behind one `Tier` protocol (see `sidecar.tiers.base`)."""

from sidecar.tiers.base import SetStatus, Tier
from sidecar.tiers.memory import MemoryTier

__all__ = ["MemoryTier", "SetStatus", "Tier"]
