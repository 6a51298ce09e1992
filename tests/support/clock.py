"""The `clock` fixture: a fresh `ManualClock` for each test (registered in tests/conftest.py,
so a test module asks for `clock` without defining it). It moves only when the test calls
`advance`; nothing here ties it to the system clock."""

from __future__ import annotations

import pytest

from sidecar.core.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
