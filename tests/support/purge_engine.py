"""`FakePurgeEngine`: the purge surface of the engine (`sidecar.invalidation.apply.PurgeEngine`)
recording every call, for tests of invalidation without tiers.

It keeps the contract's `once` rule as a shared record (`shared_once`, standing for Redis):
a `purge_tags` / `purge_all` with an id already there counts as `skipped_shared`, so a test
can tell "applied again here" from "bumped twice cluster-wide". Pass one `shared_once` set
to two fakes to stand for two nodes over one Redis.
"""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.core.limits import Limits, check_key, check_tag


class FakePurgeEngine:
    def __init__(
        self, limits: Limits | None = None, shared_once: set[str] | None = None, dropped: int = 1
    ) -> None:
        self._limits = limits or Limits()
        self.shared_once = shared_once if shared_once is not None else set()
        self.dropped = dropped
        self.calls: list[tuple[object, ...]] = []
        self.skipped_shared: list[str] = []

    @property
    def limits(self) -> Limits:
        return self._limits

    def _once(self, once: str) -> bool:
        """Whether `once` is new (a bump would be made)."""
        if once and once in self.shared_once:
            self.skipped_shared.append(once)
            return False
        if once:
            self.shared_once.add(once)
        return True

    async def purge_event(
        self, tags: Sequence[str] | None, *, soft: bool = False, once: str = ""
    ) -> tuple[int, bool]:
        if tags is None:
            bumped = self._once(once)
            self.calls.append(("purge_all", soft, once))
            return self.dropped, bumped
        for tag in tags:
            check_tag(tag, self._limits)
        bumped = bool(tags) and self._once(once)
        self.calls.append(("purge_tags", tuple(tags), soft, once))
        return self.dropped, bumped

    async def purge_tags(self, tags: Sequence[str], *, soft: bool = False, once: str = "") -> int:
        for tag in tags:
            check_tag(tag, self._limits)
        self._once(once)
        self.calls.append(("purge_tags", tuple(tags), soft, once))
        return self.dropped

    async def purge_all(self, *, soft: bool = False, once: str = "") -> int:
        self._once(once)
        self.calls.append(("purge_all", soft, once))
        return self.dropped

    async def invalidate_key(self, key: bytes, *, local_only: bool = False) -> int:
        check_key(key, self._limits)
        self.calls.append(("invalidate_key", key) + (("local",) if local_only else ()))
        return self.dropped

    async def invalidate_prefix(self, prefix: bytes, *, local_only: bool = False) -> int:
        check_key(prefix, self._limits, "prefix")
        self.calls.append(("invalidate_prefix", prefix) + (("local",) if local_only else ()))
        return self.dropped
