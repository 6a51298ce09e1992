"""The engine's side of placement: a `Placement` over its tiers, within byte budgets.

`Placer.placed` asks the placement which tiers an entry belongs in, leaving out the tiers
over their byte budget (`sidecar.engine.budgets`) and reporting each one so left out as
``observer.placement_skipped(tier, "budget")``. `Placer.frequency` is the lookup count of a
key placement decides by (`sidecar.engine.placement.Frequencies`).
"""

from __future__ import annotations

from sidecar.core.model import CachedResponse
from sidecar.core.observer import Observer
from sidecar.engine.budgets import ByteBudgets
from sidecar.engine.placement import MAX_SHARED_MIN_HITS, Frequencies, Placement, entry_size
from sidecar.tiers.base import Tier

__all__ = ["Placer"]


class Placer:
    """Which of the engine's tiers (by index) an entry is written and backfilled to."""

    def __init__(
        self,
        tiers: tuple[Tier, ...],
        placement: Placement,
        budgets: ByteBudgets,
        frequencies: Frequencies,
        observer: Observer,
    ) -> None:
        self._tiers = tiers
        self.placement = placement
        self.budgets = budgets
        self.frequencies = frequencies
        self._observer = observer

    def frequency(self, key: bytes) -> int:
        return self.frequencies.frequency(key)

    def placed(self, entry: CachedResponse, frequency: int) -> frozenset[int]:
        """Indexes of the tiers `entry` belongs in, its key looked up `frequency` times."""
        size = entry_size(entry)
        over, roomy = self.budgets.over_budget(), self.budgets.roomy()
        names = self.placement.tiers_for(size, frequency, self._tiers, over, roomy)
        if over:
            wanted = self.placement.tiers_for(size, frequency, self._tiers, roomy=roomy)
            for name in sorted(wanted - names):
                self._observer.placement_skipped(name, "budget")
        if roomy:
            for name in names & roomy:
                self.budgets.note_placed(name, size)
        return frozenset(i for i, tier in enumerate(self._tiers) if tier.name in names)

    def refused_cold(self, entry: CachedResponse, frequency: int) -> frozenset[str]:
        """Names of the tiers placement keeps `entry` out of only because its key is not
        looked up often enough yet (it would go there were the key hot): the shared RAM
        tiers' admission. Empty when placement does not read frequencies."""
        if not self.placement.needs_frequencies or frequency >= MAX_SHARED_MIN_HITS:
            return frozenset()
        size, over = entry_size(entry), self.budgets.over_budget()
        now = self.placement.tiers_for(size, frequency, self._tiers, over, self.budgets.roomy())
        return self.placement.tiers_for(size, MAX_SHARED_MIN_HITS, self._tiers, over) - now
