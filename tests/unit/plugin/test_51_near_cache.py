"""The near-cache (`kong_plugin.near_cache`): admission, the byte bound, Vary safety, the
ticket race, the age cap, freshness, disconnection, counters; no sidecar."""

from __future__ import annotations

import gc
import random
import threading
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kong_plugin.freshness import EntryTiming
from kong_plugin.headers import Headers
from kong_plugin.near_cache import MAX_MARKS, NearCache, entry_charge, variant_of
from kong_plugin.stored import Found, StoredEntry
from kong_plugin.vary import sidecar_lines
from sidecar.engine.variants import request_values


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stored(
    body: bytes = b"hello",
    *,
    ttl: int = 60,
    tags: tuple[str, ...] = (),
    vary: tuple[str, ...] = (),
    headers: dict[str, tuple[str, ...]] | None = None,
) -> StoredEntry:
    return StoredEntry(
        status=200,
        headers=Headers(headers if headers is not None else {"content-type": ("text/plain",)}),
        body=body,
        timing=EntryTiming(0.0, ttl),
        tags=tags,
        vary=vary,
    )


def hit(entry: StoredEntry, age_s: float = 0.0) -> Found:
    return Found(entry, age_s, False)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def near(clock: Clock) -> NearCache:
    cache = NearCache(max_bytes=1 << 20, max_entry_bytes=64 * 1024, max_age_s=1.0, clock=clock)
    cache.set_connected(True)
    return cache


def warm(near: NearCache, key: str, lines: list[tuple[bytes, bytes]] | None = None) -> None:
    """Ask for `key` twice (two misses): what admission needs."""
    for _ in range(2):
        assert near.get(key, lines or []) is None


def fill(near: NearCache, key: str, entry: StoredEntry, lines=None, age_s: float = 0.0) -> bool:
    lines = lines or []
    ticket = near.ticket()
    near.get(key, lines)
    return near.offer(key, lines, hit(entry, age_s), ticket)


# -- admission -------------------------------------------------------------------------


def test_a_key_asked_for_once_is_not_admitted_twice_is(near: NearCache) -> None:
    assert not fill(near, "k", stored())
    assert near.stats().rejections == 1
    assert fill(near, "k", stored())
    found = near.get("k", [])
    assert found is not None and found.entry == stored() and not found.fill_lease


def test_only_fresh_hits_without_a_lease_are_taken(near: NearCache) -> None:
    warm(near, "k")
    ticket = near.ticket()
    assert not near.offer("k", [], Found(None, 0.0, False), ticket)  # a miss
    assert not near.offer("k", [], Found(stored(), 0.0, True), ticket)  # holds the lease
    assert not near.offer("k", [], hit(stored(ttl=10), age_s=10.0), ticket)  # stale
    assert near.get("k", []) is None


def test_an_entry_over_max_entry_bytes_is_refused(near: NearCache) -> None:
    warm(near, "k")
    assert not fill(near, "k", stored(b"x" * 64 * 1024))
    assert fill(near, "k", stored(b"x" * 1024))


# -- bytes -----------------------------------------------------------------------------


def test_bytes_held_never_exceed_max_bytes_and_the_oldest_go_first(clock: Clock) -> None:
    near = NearCache(max_bytes=32 * 1024, max_entry_bytes=16 * 1024, clock=clock)
    near.set_connected(True)
    keys = [f"k{i}" for i in range(13)]
    for i, key in enumerate(keys):
        for _ in range(i + 1):  # each asked more than those before: admitted (TinyLFU)
            near.get(key, [])
        assert fill(near, key, stored(b"x" * 3000))  # fill asks once more
        assert near.stats().bytes <= 32 * 1024
    stats = near.stats()
    assert stats.evictions > 0
    assert stats.bytes == sum(entry_charge(k, stored(b"x" * 3000)) for k in keys[-stats.entries :])
    assert near.get(keys[-1], []) is not None
    assert near.get(keys[0], []) is None


def test_a_rarely_asked_key_does_not_push_out_a_popular_one(clock: Clock) -> None:
    near = NearCache(max_bytes=8 * 1024, max_entry_bytes=8 * 1024, clock=clock)
    near.set_connected(True)
    for _ in range(6):
        near.get("hot", [])
    assert fill(near, "hot", stored(b"x" * 5000))
    warm(near, "cold")
    assert not fill(near, "cold", stored(b"x" * 5000))  # asked 3 times, "hot" 7
    assert near.get("hot", []) is not None


def test_the_charge_covers_what_the_entries_hold_on_the_heap(clock: Clock) -> None:
    near = NearCache(max_bytes=1 << 30, max_entry_bytes=1 << 20, clock=clock, min_frequency=0)
    near.set_connected(True)
    rng = random.Random(7)
    specs = []
    for i in range(1500):
        names = [f"x-header-{j}" for j in range(rng.randrange(0, 30))]
        tags = tuple(f"tag-{i}-{t}" for t in range(rng.randrange(0, 6)))
        specs.append((f"v2:route:GET:example.com/p/{i}", names, tags, rng.randrange(0, 2000)))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key, names, tags, size in specs:
            headers: dict[str, tuple[str, ...]] = {n: (f"value of {n} for {key}",) for n in names}
            entry = stored(bytes(size), tags=tags, headers=headers)
            assert near.offer(key, [], hit(entry), near.ticket())
            del entry, headers
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held <= near.stats().bytes, (held, near.stats().bytes)
    assert held >= 0.6 * near.stats().bytes  # and not wildly above it either


# -- Vary ------------------------------------------------------------------------------


def test_a_variant_is_answered_only_to_requests_that_select_it(near: NearCache) -> None:
    gzip = [(b"accept-encoding", b"gzip, br")]
    same = [(b"Accept-Encoding", b"BR,gzip")]  # the same canonical value
    other = [(b"accept-encoding", b"identity")]
    absent: list[tuple[bytes, bytes]] = []
    warm(near, "k", gzip)
    assert fill(near, "k", stored(b"gz", vary=("accept-encoding",)), gzip)
    found = near.get("k", same)
    assert found is not None and found.entry is not None and found.entry.body == b"gz"
    assert near.get("k", other) is None
    assert near.get("k", absent) is None
    assert fill(near, "k", stored(b"id", vary=("accept-encoding",)), other)
    assert near.get("k", other).entry.body == b"id"  # type: ignore[union-attr]
    assert near.get("k", gzip).entry.body == b"gz"  # type: ignore[union-attr]


def test_an_entry_with_another_vary_list_drops_the_keys_other_variants(near: NearCache) -> None:
    lines = [(b"accept-encoding", b"gzip"), (b"accept-language", b"en")]
    warm(near, "k", lines)
    assert fill(near, "k", stored(b"a", vary=("accept-encoding",)), lines)
    assert fill(near, "k", stored(b"b", vary=("accept-language",)), lines)
    assert near.stats().entries == 1
    assert near.get("k", lines).entry.body == b"b"  # type: ignore[union-attr]
    assert near.get("k", [(b"accept-language", b"de")]) is None


def test_a_varied_entry_is_not_answered_for_a_request_without_vary_info(near: NearCache) -> None:
    warm(near, "k")
    assert fill(near, "k", stored(b"a", vary=("x-v",)), [(b"x-v", b"")])  # present, empty
    assert near.get("k", []) is None  # absent is not empty
    assert near.get("k", [(b"x-v", b"")]) is not None


_value = st.binary(max_size=12).map(lambda b: b.replace(b"\n", b" "))
_name = st.sampled_from([b"accept", b"Accept-Encoding", b"x-v", b"X-V", b"accept-language", b"y"])
_lines = st.lists(st.tuples(_name, _value), max_size=6)
_vary = st.lists(
    st.sampled_from(["accept", "accept-encoding", "x-v", "accept-language"]),
    max_size=3,
    unique=True,
).map(lambda names: tuple(sorted(names)))


@settings(max_examples=300, deadline=None)
@given(vary=_vary, a=_lines, b=_lines)
def test_variants_match_exactly_when_the_sidecar_would_select_the_same_one(
    vary: tuple[str, ...], a: list[tuple[bytes, bytes]], b: list[tuple[bytes, bytes]]
) -> None:
    def sidecar(lines: list[tuple[bytes, bytes]]) -> list[bytes]:
        return request_values(vary, tuple(sidecar_lines(lines)))

    assert list(variant_of(vary, a)) == sidecar(a)
    assert (variant_of(vary, a) == variant_of(vary, b)) == (sidecar(a) == sidecar(b))


# -- time ------------------------------------------------------------------------------


def test_nothing_is_answered_longer_than_max_age_after_its_lookup(
    near: NearCache, clock: Clock
) -> None:
    warm(near, "k")
    assert fill(near, "k", stored(ttl=3600))
    clock.now += 1.0
    assert near.get("k", []) is not None
    clock.now += 0.001
    assert near.get("k", []) is None
    assert near.stats().expired == 1 and near.stats().entries == 0


def test_the_age_is_the_sidecars_plus_the_time_since_the_ticket(
    near: NearCache, clock: Clock
) -> None:
    warm(near, "k")
    ticket = near.ticket()
    clock.now += 0.2  # the lookup took this long
    assert near.offer("k", [], hit(stored(ttl=10), age_s=3.0), ticket)
    clock.now += 0.3
    found = near.get("k", [])
    assert found is not None and found.age_s == pytest.approx(3.5)


def test_an_entry_that_turns_stale_is_left_to_the_sidecar(near: NearCache, clock: Clock) -> None:
    warm(near, "k")
    assert fill(near, "k", stored(ttl=5), age_s=4.5)
    clock.now += 0.4
    assert near.get("k", []) is not None
    clock.now += 0.2  # 5.1 s old: stale
    assert near.get("k", []) is None


def test_an_answer_whose_lookup_took_longer_than_max_age_is_not_taken(
    near: NearCache, clock: Clock
) -> None:
    warm(near, "k")
    ticket = near.ticket()
    clock.now += 1.5
    assert not near.offer("k", [], hit(stored()), ticket)


# -- invalidations and the ticket race -------------------------------------------------


def test_invalidations_drop_by_key_tag_and_prefix(near: NearCache) -> None:
    entries = {
        "v2:a:/1": stored(tags=("t1", "route:v2:a:")),
        "v2:a:/2": stored(tags=("t2", "route:v2:a:")),
        "v2:b:/1": stored(tags=("t1",)),
        "v2:b:/2": stored(),
    }
    for key, entry in entries.items():
        warm(near, key)
        assert fill(near, key, entry)
    assert near.invalidate(tags=["t1"]) == 2
    assert near.get("v2:a:/1", []) is None and near.get("v2:b:/1", []) is None
    assert near.invalidate(prefixes=["v2:a:"]) == 1
    assert near.invalidate_key("v2:b:/2") == 1
    assert near.stats().entries == 0 and near.stats().bytes == 0
    assert near.stats().invalidations == 4


def test_an_offer_ticketed_before_an_invalidation_of_its_key_is_dropped(near: NearCache) -> None:
    warm(near, "k")
    warm(near, "other")
    ticket = near.ticket()  # the lookup starts
    near.invalidate_key("k")  # the invalidation is applied while the lookup runs
    assert not near.offer("k", [], hit(stored(b"old")), ticket)  # the answer arrives
    assert near.offer("other", [], hit(stored()), ticket)  # not touched by it
    assert near.stats().races == 1
    assert fill(near, "k", stored(b"new"))  # a lookup started after it is taken


@pytest.mark.parametrize(
    ("invalidation", "touched"),
    [
        (lambda n: n.invalidate(tags=["t"]), True),
        (lambda n: n.invalidate(tags=["u"]), False),
        (lambda n: n.invalidate(prefixes=["v2:a:"]), True),
        (lambda n: n.invalidate(prefixes=["v2:b:"]), False),
        (lambda n: n.invalidate_all(), True),
        (lambda n: n.set_connected(True), True),  # a reconnection
    ],
)
def test_an_offer_overtaken_by_any_invalidation_touching_it_is_dropped(
    near: NearCache, invalidation, touched: bool
) -> None:
    warm(near, "v2:a:/1")
    ticket = near.ticket()
    invalidation(near)
    assert near.offer("v2:a:/1", [], hit(stored(tags=("t",))), ticket) is not touched


def test_forgetting_old_marks_voids_older_tickets_instead(near: NearCache) -> None:
    warm(near, "k")
    ticket = near.ticket()
    near.invalidate_key("k")
    for i in range(MAX_MARKS):
        near.invalidate_key(f"x{i}")  # the mark of "k" is forgotten
    assert not near.offer("k", [], hit(stored()), ticket)
    assert not near.offer("unrelated", [], hit(stored()), ticket)  # void: safe
    assert fill(near, "k", stored())


def test_nothing_is_answered_or_taken_while_disconnected(near: NearCache) -> None:
    warm(near, "k")
    assert fill(near, "k", stored())
    near.set_connected(False)
    assert near.get("k", []) is None
    assert not fill(near, "k", stored())
    near.set_connected(True)
    assert near.get("k", []) is None  # flushed on the way down
    assert fill(near, "k", stored())


def test_counters_add_up(near: NearCache) -> None:
    warm(near, "k")  # 2 misses
    assert fill(near, "k", stored())  # 1 miss, 1 admission
    near.get("k", [])  # a hit
    near.invalidate_all()
    stats = near.stats()
    assert (stats.hits, stats.misses, stats.admissions) == (1, 3, 1)
    assert stats.flushes == 2  # connecting and the flush
    assert stats.invalidations == 1 and stats.entries == 0 and stats.connected


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="max_entry_bytes"):
        NearCache(max_bytes=10, max_entry_bytes=20)
    with pytest.raises(ValueError, match="max_age_s"):
        NearCache(max_age_s=0)


# -- threads ---------------------------------------------------------------------------


def test_no_thread_is_answered_a_copy_older_than_an_invalidation_it_saw_applied() -> None:
    """8 threads look up (near-cache first, else a "sidecar": a versioned dict, read then
    answered after a pause) and offer, while another one stores new versions and applies
    the invalidation after each. A reader that saw version v applied must never be
    answered an older one afterwards."""
    near = NearCache(max_bytes=1 << 20, max_entry_bytes=1 << 16, max_age_s=60.0)
    near.set_connected(True)
    keys = [f"k{i}" for i in range(4)]
    versions = dict.fromkeys(keys, 0)  # the sidecar's current version per key
    applied = dict.fromkeys(keys, 0)  # the version whose invalidation was applied
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []
    served = [0]

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            key = rng.choice(keys)
            floor = applied[key]  # delivered before this lookup starts
            ticket = near.ticket()
            found = near.get(key, [])
            if found is not None:
                served[0] += 1
            else:
                with lock:
                    version = versions[key]
                if rng.random() < 0.5:
                    threading.Event().wait(0.0001)  # the answer is on its way meanwhile
                found = hit(stored(str(version).encode()))
                near.offer(key, [], found, ticket)
            assert found.entry is not None
            if int(found.entry.body) < floor:
                errors.append(f"{key}: answered {found.entry.body!r} after {floor} was applied")

    def writer() -> None:
        rng = random.Random(99)
        while not stop.is_set():
            key = rng.choice(keys)
            with lock:
                versions[key] += 1
                version = versions[key]
            threading.Event().wait(0.0002)  # the push is on its way
            near.invalidate(keys=[key])
            applied[key] = version

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    threading.Event().wait(2.0)
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors, errors[:5]
    assert served[0] > 100  # the near-cache did answer meanwhile
    assert near.stats().races > 0  # and offers were overtaken
