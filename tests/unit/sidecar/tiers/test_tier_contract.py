"""The tier contract (tests/support/tier_contract.py) against the memory tier and the fake
tiers: no servers needed."""

from __future__ import annotations

from tests.support.tier_contract import LOCAL_CASES, TierContract


class TestTierContract(TierContract):
    cases = LOCAL_CASES
