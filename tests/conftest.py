"""Shared fixtures: short unix socket paths, the services env, a manual clock
(`clock`, from tests/support/clock.py)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Fixtures every test module may ask for without defining them.
pytest_plugins = ["tests.support.clock", "tests.support.generation_engines", "tests.support.kafka"]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path (unix socket paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="strata-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def sidecar_env() -> dict[str, str]:
    """The environment for a sidecar subprocess: ours minus any STRATA_ settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
