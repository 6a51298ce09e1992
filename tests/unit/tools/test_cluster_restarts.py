"""`make cluster` starts a part that exited again, within a start limit."""

from __future__ import annotations

from tools.cluster.__main__ import Restarts


def test_a_part_is_restarted_up_to_the_limit_per_window_then_left_down() -> None:
    restarts = Restarts(limit=3, window_s=60.0)
    assert [restarts.allowed("node-1 sidecar", t) for t in (0, 1, 2, 3)] == [
        True,
        True,
        True,
        False,
    ]
    assert restarts.allowed("node-2 sidecar", 3)  # each part has its own count
    assert not restarts.allowed("node-1 sidecar", 59.9)
    assert restarts.allowed("node-1 sidecar", 60.5)  # the first start left the window
