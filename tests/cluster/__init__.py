"""Tests of the loopback cluster of `make cluster` (`tools.cluster`): NGINX, two gateway nodes
with their own sidecars, the shared tiers of `make services-up`."""
