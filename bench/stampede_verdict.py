"""What `bench stampede` concludes from its bursts: per-burst checks, per-mode summaries, the
verdict and the headline rows. Pure: no processes, no I/O, so every rule is unit-tested.

A burst is N concurrent requests for one cold URL; its figure is how many of them reached the
origin (`Burst.fetches`, counted by the origin on arrival). A burst is *correct* when every
client got 200 and a body the origin really answered for that URL (`wrong_bodies` counts the
others), and it *overlapped* when the last request was sent before the first answer came
back (otherwise a count of 1 could be a plain cache hit, not request collapsing).

Not guaranteed: that "overlapped" means the requests overlapped inside the gateway (it is
judged from the client's clock: sent before the first answer arrived); that a mode's
expected count holds for bursts that spread over fewer nodes than the mode has.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The route kinds a burst can go through.
CACHED = "cached"  # the /slow route with the strata-cache plugin (kong.yml)
NO_CACHE = "no-cache"  # the same path on a route without any cache plugin (the baseline)


@dataclass(frozen=True)
class ModeSpec:
    """One cluster shape: `nodes` gateway nodes, `shared` tiers or memory only, and the
    origin fetches per burst expected of it (`expected`), with a word on why."""

    name: str
    nodes: int
    shared: bool
    expected: int
    why: str
    #: whether the issue's target ("1") applies to this mode (a headline row with a verdict)
    targeted: bool


MODES: tuple[ModeSpec, ...] = (
    ModeSpec("1-node", 1, False, 1, "one node coalesces its own misses", True),
    ModeSpec("2-node-shared", 2, True, 1, "the fill lease is shared through Redis", True),
    ModeSpec(
        "2-node-memory",
        2,
        False,
        2,
        "memory tier only: each node coalesces alone, so one fetch per node",
        False,
    ),
)
MODE_NAMES = tuple(m.name for m in MODES)


def mode(name: str) -> ModeSpec:
    """The `ModeSpec` called `name` (ValueError naming the known ones otherwise)."""
    for spec in MODES:
        if spec.name == name:
            return spec
    raise ValueError(f"unknown mode {name!r}: expected one of {', '.join(MODE_NAMES)}")


@dataclass(frozen=True)
class Reply:
    """One client's outcome: HTTP status (0: no answer, `error` says why), body,
    ``X-Cache-Status`` and RFC 9211 ``Cache-Status`` ('' when absent), and when it was sent
    and answered (seconds, one monotonic clock)."""

    status: int
    body: bytes
    cache: str
    sent: float
    done: float
    error: str = ""
    cache_status: str = ""


def cache_label(x_cache_status: str, cache_status: str) -> str:
    """``X-Cache-Status``, with the ``detail`` of ``Cache-Status`` when it has one
    (``"Bypass (sidecar-unavailable)"``): why a request went to the origin shows in the
    burst's mix. '' when neither header is there."""
    detail = ""
    for part in cache_status.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "detail":
            detail = value.strip().strip('"')
    if not x_cache_status:
        return ""
    return f"{x_cache_status} ({detail})" if detail else x_cache_status


@dataclass(frozen=True)
class Burst:
    """N concurrent requests for one cold URL and what the origin saw of them."""

    mode: str
    entry: str  # "direct" (straight at the nodes, spread evenly) or "nginx"
    route: str  # CACHED or NO_CACHE
    n: int
    path: str
    fetches: int
    statuses: Mapping[int, int]
    cache: Mapping[str, int]
    wrong_bodies: int
    overlapped: bool
    slowest_ms: float
    errors: Sequence[str] = field(default_factory=tuple)

    @property
    def correct(self) -> bool:
        """Every client got 200 and a body the origin answered for this URL."""
        return dict(self.statuses) == {200: self.n} and self.wrong_bodies == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "entry": self.entry,
            "route": self.route,
            "n": self.n,
            "path": self.path,
            "fetches": self.fetches,
            "correct": self.correct,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "x_cache_status": dict(sorted(self.cache.items())),
            "wrong_bodies": self.wrong_bodies,
            "overlapped": self.overlapped,
            "slowest_ms": self.slowest_ms,
            "errors": list(self.errors),
        }


def wrong_bodies(replies: Iterable[Reply], answered: Sequence[bytes]) -> int:
    """How many 200 replies carry a body the origin did not answer for this URL (a reply
    that is not a 200 is counted by its status, not here)."""
    known = set(answered)
    return sum(1 for r in replies if r.status == 200 and r.body not in known)


def overlapped(replies: Sequence[Reply]) -> bool:
    """Whether the last request was sent before the first answer arrived."""
    if not replies:
        return False
    return max(r.sent for r in replies) < min(r.done for r in replies)


def burst_of(
    mode_name: str,
    entry: str,
    route: str,
    path: str,
    replies: Sequence[Reply],
    fetches: int,
    answered: Sequence[bytes],
) -> Burst:
    """The `Burst` for `replies` to `path`, given the origin's count and bodies for it."""
    first_sent = min((r.sent for r in replies), default=0.0)
    slowest = max((r.done - first_sent for r in replies), default=0.0)
    return Burst(
        mode=mode_name,
        entry=entry,
        route=route,
        n=len(replies),
        path=path,
        fetches=fetches,
        statuses=dict(Counter(r.status for r in replies)),
        cache=dict(
            Counter(label for r in replies if (label := cache_label(r.cache, r.cache_status)))
        ),
        wrong_bodies=wrong_bodies(replies, answered),
        overlapped=overlapped(replies),
        slowest_ms=round(slowest * 1000, 1),
        errors=tuple(sorted({r.error for r in replies if r.error})),
    )


def _cell(bursts: Sequence[Burst]) -> dict[str, Any]:
    fetches = [b.fetches for b in bursts]
    return {
        "bursts": len(bursts),
        "fetches": fetches,
        "max_fetches": max(fetches, default=0),
        "mean_fetches": round(sum(fetches) / len(fetches), 2) if fetches else 0.0,
        "all_correct": all(b.correct for b in bursts),
        "all_overlapped": all(b.overlapped for b in bursts),
        "slowest_ms_max": max((b.slowest_ms for b in bursts), default=0.0),
    }


def summary(bursts: Sequence[Burst]) -> dict[str, Any]:
    """Per mode, route and N (as a string key): the fetch counts of its bursts (every
    entry together), their maximum and mean, and whether all were correct and overlapped."""
    out: dict[str, Any] = {}
    for b in bursts:
        out.setdefault(b.mode, {}).setdefault(b.route, {}).setdefault(str(b.n), [])
    for m, routes in out.items():
        for route, cells in routes.items():
            for n in cells:
                cells[n] = _cell(
                    [b for b in bursts if (b.mode, b.route, str(b.n)) == (m, route, n)]
                )
    return out


def mode_verdict(spec: ModeSpec, bursts: Sequence[Burst]) -> dict[str, Any]:
    """Whether every cached burst of `spec` reached the origin exactly `spec.expected` times
    with every client served right (`as_expected`), and whether every baseline burst made
    N fetches (`baseline_is_n`: the "N" of Kong's proxy-cache, measured)."""
    cached = [b for b in bursts if b.mode == spec.name and b.route == CACHED]
    baseline = [b for b in bursts if b.mode == spec.name and b.route == NO_CACHE]
    return {
        "expected_fetches": spec.expected,
        "why": spec.why,
        "cached_bursts": len(cached),
        "as_expected": bool(cached)
        and all(b.fetches == spec.expected and b.correct for b in cached),
        "all_correct": all(b.correct for b in cached + baseline),
        "all_overlapped": all(b.overlapped for b in cached + baseline),
        "baseline_bursts": len(baseline),
        "baseline_is_n": bool(baseline) and all(b.fetches == b.n for b in baseline),
    }


def _baseline_text(baseline: Sequence[Burst]) -> str:
    """``"no cache (route without the plugin), same run: 8 / 32 fetches for N = 8 / 32"``
    with the worst (fewest) count of each N."""
    ns = sorted({b.n for b in baseline})
    if not ns:
        return "no baseline measured"
    least = [min(b.fetches for b in baseline if b.n == n) for n in ns]
    return (
        "no cache (the same path on a route without the plugin), same run: "
        f"{' / '.join(str(x) for x in least)} fetches per burst for "
        f"N = {' / '.join(str(n) for n in ns)}"
    )


def headline(bursts: Sequence[Burst]) -> list[dict[str, Any]]:
    """One row per mode measured: the worst origin fetches per cold burst (every N, URL and
    entry), against the no-cache bursts of the same cluster. Target "1" for the targeted
    modes (met when every cached burst made 1 fetch and served every client right); the
    memory-only pair has no target (it is expected to make 2, one per node)."""
    rows = []
    for spec in MODES:
        cached = [b for b in bursts if b.mode == spec.name and b.route == CACHED]
        if not cached:
            continue
        baseline = [b for b in bursts if b.mode == spec.name and b.route == NO_CACHE]
        ns = sorted({b.n for b in cached})
        verdict = mode_verdict(spec, bursts)
        label = "expected 2: each node coalesces alone" if not spec.targeted else "target 1"
        rows.append(
            {
                "name": f"stampede {spec.name}: origin fetches per cold burst, worst of "
                f"N = {'/'.join(str(n) for n in ns)} ({label})",
                "value": float(max(b.fetches for b in cached)),
                "unit": "fetches",
                "baseline": _baseline_text(baseline),
                "target": "1" if spec.targeted else None,
                "met": verdict["as_expected"] if spec.targeted else None,
            }
        )
    return rows
