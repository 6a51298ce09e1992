"""The cost model of `strata cost`: what the cache holds, saves and costs, against the same
traffic cached the naive way. Pure: readings and prices in, a `CostReport` out, no I/O.

Inputs are what the sidecars and plugin servers export (`sidecar.observability`), read by
`sidecar.cost.sources`: per node, gauges now (bytes held by tier; the memory tier's exact
footprint) and counters over a window (lookups, body bytes served, bytes written by stage,
admission refusals, promotions' bytes, near-cache hits). The model:

* **Storage now, per month**: every tier's bytes held now, priced per GiB-month as RAM
  (``near``, ``memory``, ``redis``, ``memcached``) or disk (``postgres``). Node-local tiers
  (near, memory) are summed over nodes; a shared tier is counted once (the largest sample
  any node reports: they sample the same server). A shared RAM tier's bytes are its whole
  server's usage (Redis ``used_memory``, Memcached ``bytes``: other data and the server's
  own overhead too): that overstates Strata's side, and the report says so.
* **Origin, per month**: requests the cache answered (sidecar hits plus the plugins'
  near-cache hits) are origin requests avoided; the others (misses and stale answers) went
  to the origin. Egress avoided is the body bytes of the hits the sidecar served, plus
  near-cache hits at the sidecar's mean hit body; egress that still happened is estimated as
  the origin requests at that same mean body. Counts over the window are extrapolated to a
  30-day month from their rate.
* **The naive way** (Kong's proxy-cache): one uncompressed, undeduplicated copy of what is
  cached on every node, all in RAM. "What is cached" is taken as the memory tiers' exact
  logical bytes (the largest node's): a lower bound from facts Strata knows. Shared tiers
  are left out: what Strata wrote to them is known, but not how much of it they still hold
  (rewrites of a key, expiry, the server's evictions), and their usage is the whole
  server's. The naive cache is credited with Strata's hit ratio, so its origin and egress
  costs equal Strata's (which favours the naive side: per-node caches without a shared tier
  miss more).
* **Admission**: bytes refused by admission in the window, by tier; for a shared tier net
  of what promotion stored there in the window (a key kept out at its store goes in once it
  turns hot), floored at 0.
* **No cache**: every request goes to the origin, with its body.

What the model does NOT guarantee: the prices (examples unless given), that the window's
traffic is a typical month's, that a shared server holds only Strata's data, how far the
naive side's lower bound is below the truth (with a shared tier holding most entries, far),
or that the admission figure nets the same keys (a key refused before the window may be
promoted in it). Every assumption made is listed in `CostReport.assumptions`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields

__all__ = [
    "DISK_TIERS",
    "GIB",
    "MONTH_SECONDS",
    "NODE_LOCAL_TIERS",
    "RAM_TIERS",
    "STAGES",
    "WHOLE_SERVER_TIERS",
    "CostReport",
    "Flow",
    "MemoryFootprint",
    "NodeReading",
    "Prices",
    "Stages",
    "TierCost",
    "compute",
]

GIB = 1024**3
MONTH_SECONDS = 30 * 86400
RAM_TIERS = ("near", "memory", "redis", "memcached")
DISK_TIERS = ("postgres",)
NODE_LOCAL_TIERS = ("near", "memory")
#: Shared tiers whose bytes held are the whole server's usage, not Strata's alone.
WHOLE_SERVER_TIERS = {
    "redis": "Redis used_memory",
    "memcached": "Memcached stats bytes",
}
#: Windows shorter than this get a warning among the assumptions.
SHORT_WINDOW_S = 3600.0
#: The written-bytes stages (``strata_tier_written_bytes_total{stage}``).
STAGES = ("logical", "body", "body_new", "body_stored", "stored")


@dataclass(frozen=True, slots=True)
class Prices:
    """Prices in one currency (USD in the docs). The defaults are examples, not facts: RAM
    and disk as the Grafana dashboard's defaults, origin requests and egress at a typical
    cloud list price. GB means GiB (2^30 bytes) throughout."""

    ram_gb_month: float = 10.0
    disk_gb_month: float = 0.10
    origin_per_million: float = 0.40
    egress_per_gb: float = 0.09

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"price {f.name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Stages:
    """Bytes by stage of saving (`STAGES`), e.g. written to one tier over a window."""

    logical: float = 0.0
    body: float = 0.0
    body_new: float = 0.0
    body_stored: float = 0.0
    stored: float = 0.0

    def __add__(self, other: Stages) -> Stages:
        return Stages(*(getattr(self, s) + getattr(other, s) for s in STAGES))

    @property
    def dedup_saved(self) -> float:
        return self.body - self.body_new

    @property
    def compression_saved(self) -> float:
        return self.body_new - self.body_stored


@dataclass(frozen=True, slots=True)
class MemoryFootprint:
    """The memory tier's exact footprint now (``strata_tier_logical_bytes``,
    ``strata_tier_body_bytes``)."""

    logical: float = 0.0
    body: float = 0.0
    body_distinct: float = 0.0
    body_stored: float = 0.0

    def __add__(self, other: MemoryFootprint) -> MemoryFootprint:
        return MemoryFootprint(
            self.logical + other.logical,
            self.body + other.body,
            self.body_distinct + other.body_distinct,
            self.body_stored + other.body_stored,
        )


@dataclass(frozen=True, slots=True)
class NodeReading:
    """What one source (a sidecar or plugin server's /metrics, or a Prometheus server's
    cluster-wide sums) says: gauges now, counters over `window_s` seconds."""

    source: str
    window_s: float
    sidecar: bool = True
    held: Mapping[str, float] = field(default_factory=dict)
    footprint: MemoryFootprint | None = None
    #: The largest single node's memory-tier logical bytes (a Prometheus reading sums
    #: nodes in `footprint`); None: `footprint.logical`.
    largest_logical: float | None = None
    lookups: Mapping[str, float] = field(default_factory=dict)
    served: Mapping[str, float] = field(default_factory=dict)
    written: Mapping[str, Stages] = field(default_factory=dict)
    refused: Mapping[str, float] = field(default_factory=dict)
    #: Logical bytes promotions stored, by tier; None: the source does not say (older build).
    promoted: Mapping[str, float] | None = None
    near_hits: float = 0.0
    #: Sidecars this reading stands for (a Prometheus reading: all it saw).
    nodes: int = 1


@dataclass(frozen=True, slots=True)
class TierCost:
    tier: str
    kind: str
    held_bytes: float
    monthly: float
    #: The bytes are the whole server's usage (other data too), not Strata's alone.
    whole_server: bool = False


@dataclass(frozen=True, slots=True)
class Flow:
    """A quantity over the observed window and extrapolated to a month."""

    window: float
    month: float


@dataclass(frozen=True, slots=True)
class CostReport:
    window_s: float
    nodes: int
    prices: Prices
    tiers: tuple[TierCost, ...]
    memory_now: MemoryFootprint | None
    written: Mapping[str, Stages]
    refused: Mapping[str, float]
    #: Logical bytes promotions stored in the window, by tier (only when every sidecar said).
    promoted: Mapping[str, float]
    #: `refused` less `promoted` for each tier, at least 0: what admission kept out; None
    #: when a sidecar did not export its promotions (then `refused` is all there is).
    kept_out: Mapping[str, float] | None
    requests: Flow
    #: Requests the cache answered (sidecar hits + near-cache hits).
    origin_requests_avoided: Flow
    origin_requests: Flow
    egress_avoided_bytes: Flow
    egress_bytes: Flow
    naive_bytes_per_node: float
    strata_storage: float
    strata_origin: float
    strata_egress: float
    naive_storage: float
    no_cache_origin: float
    no_cache_egress: float
    assumptions: tuple[str, ...]

    @property
    def strata_total(self) -> float:
        return self.strata_storage + self.strata_origin + self.strata_egress

    @property
    def naive_total(self) -> float:
        return self.naive_storage + self.strata_origin + self.strata_egress

    @property
    def no_cache_total(self) -> float:
        return self.no_cache_origin + self.no_cache_egress

    @property
    def saving_vs_naive(self) -> float:
        return self.naive_total - self.strata_total

    @property
    def ratio_vs_naive(self) -> float | None:
        """Strata's monthly total over the naive way's (None when that is 0)."""
        return self.strata_total / self.naive_total if self.naive_total > 0 else None

    @property
    def storage_ratio_vs_naive(self) -> float | None:
        """Strata's monthly storage over the naive way's (None when that is 0): the part
        of the cost where the two differ."""
        return self.strata_storage / self.naive_storage if self.naive_storage > 0 else None


def _tier_kind(tier: str) -> str:
    return "disk" if tier in DISK_TIERS else "ram"


def _held(readings: Sequence[NodeReading]) -> dict[str, float]:
    held: dict[str, float] = {}
    for r in readings:
        for tier, value in r.held.items():
            if tier in NODE_LOCAL_TIERS:
                held[tier] = held.get(tier, 0.0) + value
            else:
                held[tier] = max(held.get(tier, 0.0), value)
    return held


def _rate(
    readings: Sequence[NodeReading], count: Callable[[NodeReading], float]
) -> tuple[float, float]:
    """(sum over the windows, sum of per-reading rates per second) of `count(reading)`."""
    total = rate = 0.0
    for r in readings:
        value = count(r)
        total += value
        rate += value / r.window_s if r.window_s > 0 else 0.0
    return total, rate


def compute(
    readings: Sequence[NodeReading], prices: Prices, *, nodes: int | None = None
) -> CostReport:
    """The report for `readings` at `prices`; `nodes` overrides the number of nodes the
    naive way keeps a copy on (default: the sidecars read). `ValueError` without a sidecar
    reading or with a window that is not positive."""
    sidecars = [r for r in readings if r.sidecar]
    if not sidecars:
        raise ValueError("no sidecar among the sources: the report needs one")
    if any(not r.window_s > 0 for r in readings):
        raise ValueError("every source needs a positive window")
    n_nodes = nodes if nodes is not None else sum(r.nodes for r in sidecars)
    if n_nodes < 1:
        raise ValueError("nodes must be at least 1")
    assumptions: list[str] = []
    scale = MONTH_SECONDS
    shortest = min(r.window_s for r in readings)
    if shortest < SHORT_WINDOW_S:
        assumptions.append(
            f"a window of {shortest:,.0f} s is short: the monthly traffic figures extrapolate "
            "it 30 days ahead (use a longer --window or --range)"
        )

    held = _held(readings)
    tiers = tuple(
        TierCost(
            tier,
            _tier_kind(tier),
            value,
            value / GIB * (prices.disk_gb_month if tier in DISK_TIERS else prices.ram_gb_month),
            whole_server=tier in WHOLE_SERVER_TIERS,
        )
        for tier, value in sorted(held.items(), key=lambda kv: _order(kv[0]))
    )

    written: dict[str, Stages] = {}
    refused: dict[str, float] = {}
    promoted: dict[str, float] = {}
    memory_now: MemoryFootprint | None = None
    largest_logical = 0.0
    for r in sidecars:
        for tier, stages in r.written.items():
            written[tier] = written.get(tier, Stages()) + stages
        for tier, value in r.refused.items():
            refused[tier] = refused.get(tier, 0.0) + value
        for tier, value in (r.promoted or {}).items():
            promoted[tier] = promoted.get(tier, 0.0) + value
        if r.footprint is not None:
            memory_now = r.footprint if memory_now is None else memory_now + r.footprint
            own = r.largest_logical if r.largest_logical is not None else r.footprint.logical
            largest_logical = max(largest_logical, own)

    lookups, lookup_rate = _rate(sidecars, lambda r: sum(r.lookups.values()))
    side_hits, side_hit_rate = _rate(sidecars, lambda r: r.lookups.get("hit", 0.0))
    hit_bytes, hit_bytes_rate = _rate(sidecars, lambda r: r.served.get("hit", 0.0))
    near, near_rate = _rate(readings, lambda r: r.near_hits)
    if not any(not r.sidecar for r in readings) and not any(r.near_hits for r in readings):
        assumptions.append(
            "near-cache hits not counted (no plugin server read): origin requests and egress "
            "avoided are understated"
        )
    mean_body = hit_bytes / side_hits if side_hits > 0 else 0.0
    if side_hits <= 0:
        assumptions.append("no sidecar hits in the window: mean body unknown, egress counted as 0")
    requests = Flow(lookups + near, (lookup_rate + near_rate) * scale)
    hits = Flow(side_hits + near, (side_hit_rate + near_rate) * scale)
    origin = Flow(requests.window - hits.window, requests.month - hits.month)
    avoided_bytes = Flow(
        hit_bytes + near * mean_body, (hit_bytes_rate + near_rate * mean_body) * scale
    )
    egress = Flow(origin.window * mean_body, origin.month * mean_body)
    assumptions.append(
        "origin egress of the requests that missed is estimated at the mean body of the "
        f"sidecar's hits ({mean_body:,.0f} bytes); near-cache hits are valued at it too"
    )
    assumptions.append(
        "stale answers and misses count as origin requests (a stale answer is refreshed); "
        "requests the plugin bypasses (uncacheable) are in neither side"
    )

    kept_out = _kept_out(refused, promoted, known=all(r.promoted is not None for r in sidecars))
    assumptions += _admission_notes(refused, kept_out)
    assumptions += _storage_notes(tiers, held, memory_now is not None)

    naive_per_node = largest_logical
    assumptions.append(
        "storage is priced at the bytes held now for a whole month; traffic is the window's "
        "rate for 30 days"
    )

    strata_storage = sum(t.monthly for t in tiers)
    origin_cost = origin.month / 1e6 * prices.origin_per_million
    egress_cost = egress.month / GIB * prices.egress_per_gb
    return CostReport(
        window_s=max(r.window_s for r in readings),
        nodes=n_nodes,
        prices=prices,
        tiers=tiers,
        memory_now=memory_now,
        written=written,
        refused=refused,
        promoted=promoted,
        kept_out=kept_out,
        requests=requests,
        origin_requests_avoided=hits,
        origin_requests=origin,
        egress_avoided_bytes=avoided_bytes,
        egress_bytes=egress,
        naive_bytes_per_node=naive_per_node,
        strata_storage=strata_storage,
        strata_origin=origin_cost,
        strata_egress=egress_cost,
        naive_storage=naive_per_node * n_nodes / GIB * prices.ram_gb_month,
        no_cache_origin=requests.month / 1e6 * prices.origin_per_million,
        no_cache_egress=(egress.month + avoided_bytes.month) / GIB * prices.egress_per_gb,
        assumptions=tuple(assumptions),
    )


def _order(tier: str) -> tuple[int, str]:
    known = (*RAM_TIERS, *DISK_TIERS)
    return (known.index(tier) if tier in known else len(known), tier)


def _kept_out(
    refused: Mapping[str, float], promoted: Mapping[str, float], *, known: bool
) -> dict[str, float] | None:
    """Per tier, `refused` less `promoted` (shared tiers only: promotion writes to them),
    floored at 0; None unless every sidecar said what it promoted."""
    if not known:
        return None
    return {
        tier: value if tier in NODE_LOCAL_TIERS else max(value - promoted.get(tier, 0.0), 0.0)
        for tier, value in refused.items()
    }


def _admission_notes(
    refused: Mapping[str, float], kept_out: Mapping[str, float] | None
) -> list[str]:
    shared = sorted(t for t in refused if t not in NODE_LOCAL_TIERS)
    if not shared:
        return []
    if kept_out is None:
        return [
            "admission's refusals for shared tiers are not net of promotion (a sidecar exports "
            "no strata_promoted_bytes_total: a build older than it): a refused key that turned "
            "hot was written later, so they overstate what admission kept out"
        ]
    return [
        "kept out by admission (shared tiers) = logical bytes refused less those promotion "
        "stored in the window, at least 0: an estimate (a key refused before the window may "
        "be promoted in it)"
    ]


def _storage_notes(tiers: Sequence[TierCost], held: Mapping[str, float], memory: bool) -> list[str]:
    notes = [
        f"{t.tier}: bytes held are the whole server's ({WHOLE_SERVER_TIERS[t.tier]}: other "
        "data and the server's own overhead too): this overstates Strata's storage, in the "
        "naive side's favour"
        for t in tiers
        if t.whole_server
    ]
    shared = sorted(t for t in held if t not in NODE_LOCAL_TIERS)
    basis = (
        "the naive way holds one uncompressed copy per node of the memory tier's exact "
        "logical bytes (the largest node's), all in RAM"
        if memory
        else "no memory tier was read: the naive way's storage has no lower bound from what "
        "Strata knows and is counted as 0"
    )
    if shared:
        basis += (
            f"; {', '.join(shared)} left out (Strata knows what it wrote there, not how much "
            "is still held), so the naive storage is a lower bound, possibly far below"
        )
    notes.append(
        basis + "; the naive way is credited with Strata's hit ratio (in the naive side's favour)"
    )
    return notes
