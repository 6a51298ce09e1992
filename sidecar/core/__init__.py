"""The sidecar's vocabulary: entries, errors, clock, limits, observer seam, setting units.

Imports nothing else of the sidecar."""
