"""Adapters of the engine's cluster seams (leases, generations) over Redis."""
