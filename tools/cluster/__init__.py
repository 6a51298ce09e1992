"""`make cluster`: NGINX from Debian in front of gateway nodes on loopback, each node a kongsim
process (with the real strata-cache plugin server) and a sidecar of its own, all sharing the
Redis, Memcached, PostgreSQL and Kafka broker of `make services-up`.

`python -m tools.cluster` runs it in the foreground (`tools.cluster.__main__`); `Cluster` is
the library the cluster tests use (free ports, shared or memory-only tiers, N nodes, parts
stopped and started one by one). `tools.cluster.nginx` writes and checks the NGINX
configuration, `tools.cluster.node` runs one node, `tools.cluster.origin` is the counting
example upstream, `tools.cluster.shared` reads the shared services' addresses.
"""

from __future__ import annotations

from tools.cluster.cluster import Cluster, Mode
from tools.cluster.nginx import Balancing, Nginx
from tools.cluster.node import GatewayNode
from tools.cluster.origin import CountingOrigin
from tools.cluster.processes import ChildError, leftovers
from tools.cluster.shared import ServicesDownError, shared_settings

__all__ = [
    "Balancing",
    "ChildError",
    "Cluster",
    "CountingOrigin",
    "GatewayNode",
    "Mode",
    "Nginx",
    "ServicesDownError",
    "leftovers",
    "shared_settings",
]
