"""Unit tests of the plugin talk to fake sidecar clients: the near-cache (whose feed would
open a Watch stream on the client) is off unless a test turns it on itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kong_plugin import runtime


@pytest.fixture(autouse=True)
def _no_near_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(runtime, "near_settings", runtime.NearSettings(max_bytes=0))
    runtime.stop_near_feeds()
    yield
    runtime.stop_near_feeds()
