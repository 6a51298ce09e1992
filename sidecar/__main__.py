"""`python -m sidecar` is `strata-sidecar`."""

from sidecar.cli import entry

entry()
