"""The tier contract (tests/support/tier_contract.py) against Redis, Memcached and
PostgreSQL, on the real servers of `make services-up`."""

from __future__ import annotations

import pytest

from tests.support.tier_contract import SERVER_CASES, TierContract

pytestmark = pytest.mark.integration


class TestTierContract(TierContract):
    cases = SERVER_CASES
