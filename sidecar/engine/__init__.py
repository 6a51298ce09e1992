"""Read-through, store, purge, coalescing and placement over the tiers; transport-agnostic."""
