"""The shared tiers' server limits, read with their usage: Redis `maxmemory`, memcached
`limit_maxbytes` (what shared admission measures room against, `sidecar.engine.budgets`)."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.tiers.base import WrappedTier
from sidecar.tiers.redis import _maxmemory


@pytest.mark.parametrize(
    ("info", "limit"),
    [
        ({"used_memory": 5, "maxmemory": 1000}, 1000),
        ({"used_memory": 5, "maxmemory": 0}, None),  # no limit
        ({"used_memory": 5}, None),  # not said
        ({"n1": {"maxmemory": 10}, "n2": {"maxmemory": 20}}, 30),  # a cluster: summed
        ({"n1": {"maxmemory": 10}, "n2": {"maxmemory": 0}}, None),  # one node unlimited
        ("not a dict", None),
    ],
)
def test_redis_maxmemory_from_an_info_reply(info: Any, limit: int | None) -> None:
    assert _maxmemory(info) == limit


def test_a_wrapper_reports_its_inner_tier_s_limit() -> None:
    class Inner:
        name = "redis"
        server_limit_bytes = 4096

    class Plain:
        name = "memory"

    assert WrappedTier(Inner()).server_limit_bytes == 4096  # type: ignore[arg-type]
    assert WrappedTier(Plain()).server_limit_bytes is None  # type: ignore[arg-type]
