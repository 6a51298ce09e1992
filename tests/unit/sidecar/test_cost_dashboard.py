"""The Grafana dashboard's "Strata against the naive way" panel computes the naive side as
`strata cost` does: the memory tier's logical bytes (the largest node's) per node, no shared
tier's whole-server usage scaled up (issue 15, finding 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy/grafana/dashboards/strata.json"


def _panel() -> dict[str, Any]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (panel,) = (
        p
        for p in dashboard["panels"]
        if p.get("title") == "Estimated monthly cost: Strata against the naive way"
    )
    return dict(panel)


def test_the_naive_storage_is_the_largest_nodes_memory_logical_bytes_per_node() -> None:
    panel = _panel()
    (naive,) = (t for t in panel["targets"] if t["legendFormat"] == "naive storage")
    expr = naive["expr"]
    assert expr.startswith('max(strata_tier_logical_bytes{job="strata-sidecar"')
    assert 'tier="memory"}) * count(strata_tier_bytes{' in expr
    # no shared tier's usage (the whole server's) and no written-bytes ratio
    assert "tier!=" not in expr and "strata_tier_written_bytes_total" not in expr
    assert expr.endswith("/ 1073741824 * $ram_price_gb_month")


def test_the_panel_says_what_each_side_overstates_or_leaves_out() -> None:
    description = _panel()["description"]
    assert "whole server's usage" in description and "overstates Strata" in description
    assert "a lower bound, since shared tiers are left out" in description
