"""bench gateway's pure parts: variants and their plugin-server commands, /proc CPU fields,
process trees, ratios and targets."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest

from bench.gateway_report import TARGETS, ratio, scaling, variant_figures
from bench.gateway_stack import Variant, parse_variants
from bench.procs import children_of, cpu_seconds, parse_cpu_ticks
from kongsim.protocol.spec import PluginServerSpec


def test_variants_parse_in_order_and_build_kongsims_plugin_server_option() -> None:
    variants = parse_variants("kong-pdk/1, strata/2,default")
    assert [v.name for v in variants] == ["kong-pdk/1", "strata/2", "default"]
    spec = PluginServerSpec.parse(variants[1].plugin_server_option())
    assert spec.name == "strata-cache"
    assert spec.start_cmd.endswith("--socket-name strata-cache.socket --engine strata --workers 2")
    assert spec.query_cmd == "{python} -m kong_plugin --dump"
    assert "--engine" not in Variant().start_command()


@pytest.mark.parametrize(
    "text", ["strata", "strata/0", "nginx/1", "strata/x", "", "strata/1,strata/1"]
)
def test_bad_variants_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="variant"):
        parse_variants(text)


def _stat(ppid: int, utime: int, stime: int, cutime: int, cstime: int) -> list[str]:
    # the fields after "(comm)": state, ppid, pgrp, session, tty, tpgid, flags, minflt,
    # cminflt, majflt, cmajflt, utime, stime, cutime, cstime, ...
    head = ["S", str(ppid), *["0"] * 9]
    return [*head, str(utime), str(stime), str(cutime), str(cstime), "20"]


def test_cpu_ticks_and_process_trees() -> None:
    fields = _stat(1, 10, 5, 7, 3)
    assert parse_cpu_ticks(fields, reaped_children=False) == 15
    assert parse_cpu_ticks(fields, reaped_children=True) == 25
    table = {10: _stat(1, 0, 0, 0, 0), 11: _stat(10, 0, 0, 0, 0), 12: _stat(11, 0, 0, 0, 0)}
    table[13] = _stat(1, 0, 0, 0, 0)
    assert sorted(children_of(table, 10)) == [11, 12]
    assert children_of(table, 12) == []


def test_cpu_seconds_of_this_process_grows_and_includes_a_busy_child() -> None:
    own = cpu_seconds(os.getpid(), tree=False)
    assert cpu_seconds(os.getpid(), tree=True) >= own
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child burns ~0.2 s of CPU, then exits
        end = os.times().elapsed + 0.2
        while os.times().elapsed < end:
            pass
        os._exit(0)
    os.waitpid(pid, 0)
    # the reaped child's CPU is in this process's cutime: counted with tree=True only
    assert cpu_seconds(os.getpid(), tree=True) - cpu_seconds(os.getpid(), tree=False) >= 0.1


def _summary(p50: float, ops: float) -> dict[str, float]:
    return {"p50_us": p50, "p99_us": p50 * 2, "ops_s": ops, "n": 100}


def _figures(
    hit_ops: float, trips: tuple[int, int], vis_p99: float, hit_p50: float = 1200
) -> dict[str, Any]:
    seq = {k: _summary(p, 1) for k, p in {"no_plugin": 800, "hit": hit_p50}.items()}
    conc = {
        "no_plugin": _summary(1, 4000),
        "hit": _summary(1, hit_ops),
        "miss": _summary(1, 500),
        "no_plugin_upstream_10ms": _summary(1, 600),
    }
    pdk = {"hit": {"step_round_trips": trips[0]}, "miss": {"step_round_trips": trips[1]}}
    vis = {"p99_ms": vis_p99, "not_visible_within_s": {"count": 0}}
    return variant_figures(seq, conc, pdk, vis)


def test_variant_figures_are_ratios_against_the_same_runs_baselines() -> None:
    good = _figures(2400, (4, 7), 9.0)
    assert good["ratios"]["hit_ops_vs_no_plugin"] == 0.6
    assert good["ratios"]["hit_ops_vs_10ms_upstream"] == 4.0
    assert good["hit_added_p50_us"] == 400
    assert all(good["meets"].values())
    bad = _figures(1000, (5, 8), 11.0, hit_p50=1301)
    assert not any(bad["meets"].values())
    assert TARGETS["hit_step_round_trips_max"] == 4


def test_ratio_of_missing_figures_is_nan_and_meets_no_target() -> None:
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(float("nan"), 1.0))
    assert not _figures(2400, (4, 7), float("nan"))["meets"]["store_visibility_p99"]


def test_scaling_compares_variants_with_the_first_and_workers_within_an_engine() -> None:
    def variant(ops: float, cpu: float) -> dict[str, Any]:
        return {
            "clients": 8,
            "clients_8": {"hit": {"ops_s": ops}},
            "cpu_ms_per_request": {"hit": {"plugin_server": cpu}},
        }

    out = scaling(
        {
            "kong-pdk/1": variant(500, 2.0),
            "strata/1": variant(1000, 1.0),
            "strata/2": variant(1500, 1.1),
        }
    )
    assert out["baseline_variant"] == "kong-pdk/1"
    assert out["hit_ops_vs_baseline"] == {"kong-pdk/1": 1.0, "strata/1": 2.0, "strata/2": 3.0}
    assert out["plugin_server_cpu_per_hit_vs_baseline"]["strata/1"] == 0.5
    assert out["hit_ops_more_workers"] == {"strata/2 vs strata/1": 1.5}


def test_visibility_meets_when_every_entry_was_there_for_the_first_lookup() -> None:
    seq = {k: _summary(p, 1) for k, p in {"no_plugin": 800, "hit": 1000}.items()}
    conc = {k: _summary(1, 1000) for k in ("no_plugin", "hit", "miss", "no_plugin_upstream_10ms")}
    pdk = {"hit": {"step_round_trips": 4}, "miss": {"step_round_trips": 7}}
    vis = {"n": 200, "p99_ms": 18.0, "found_at_first_lookup": 200}
    assert variant_figures(seq, conc, pdk, {**vis, "not_visible_within_s": {"count": 0}})["meets"][
        "store_visibility_p99"
    ]
    # one entry the first lookup missed: the 18 ms upper bound is what counts
    vis["found_at_first_lookup"] = 199
    assert not variant_figures(seq, conc, pdk, {**vis, "not_visible_within_s": {"count": 0}})[
        "meets"
    ]["store_visibility_p99"]
