"""The outbox of the Kafka bus without a broker: bounds, order, overflow, settle, drain."""

from __future__ import annotations

import pytest

from sidecar.cluster.kafka_bus import KafkaBusConfig, default_node_id
from sidecar.cluster.kafka_outbox import RECORD_OVERHEAD, Outbox, OutMessage, describe


def put(box: Outbox, value: bytes, key: bytes | None = b"k") -> list[OutMessage]:
    return box.put(box.make("t", key, value, ()))


def values(messages: list[OutMessage]) -> list[bytes]:
    return [m.value for m in messages]


def test_messages_are_lent_in_publish_order_and_counted_sent() -> None:
    box = Outbox(10, 10_000)
    for i in range(5):
        assert put(box, f"e{i}".encode()) == []
    assert values(box.take(3)) == [b"e0", b"e1", b"e2"]
    assert box.take(3) == []  # one batch out at a time
    box.settle([])
    assert values(box.take(10)) == [b"e3", b"e4"]
    box.settle([])
    stats = box.stats
    assert (stats.enqueued, stats.sent, stats.queued, stats.queued_bytes) == (5, 5, 0, 0)
    assert len(box) == 0


def test_failed_messages_go_back_to_the_front_in_order() -> None:
    box = Outbox(10, 10_000)
    for i in range(4):
        put(box, f"e{i}".encode())
    batch = box.take(3)
    put(box, b"e4")  # published while the batch was out
    box.settle([batch[1], batch[2]])  # e0 delivered; e1, e2 not
    assert values(box.take(10)) == [b"e1", b"e2", b"e3", b"e4"]
    assert (box.stats.sent, box.stats.send_failures) == (1, 2)


def test_overflow_by_count_drops_the_oldest() -> None:
    box = Outbox(3, 10_000)
    for i in range(3):
        put(box, f"e{i}".encode())
    dropped = put(box, b"e3")
    assert values(dropped) == [b"e0"]
    assert values(box.take(10)) == [b"e1", b"e2", b"e3"]
    assert box.stats.dropped == 1 and box.stats.queued == 3


def test_overflow_by_bytes_drops_as_many_old_messages_as_needed() -> None:
    size = len(b"k") + 10 + RECORD_OVERHEAD
    box = Outbox(100, 3 * size)
    for i in range(3):
        put(box, b"x" * 9 + str(i).encode())
    dropped = put(box, b"y" * (10 + size))  # needs two messages' room
    assert len(dropped) == 2
    assert box.stats.queued_bytes <= 3 * size
    assert values(box.take(10))[-1].startswith(b"y")


def test_messages_lent_to_the_sender_are_never_dropped() -> None:
    box = Outbox(2, 10_000)
    put(box, b"e0")
    put(box, b"e1")
    lent = box.take(2)
    dropped = put(box, b"e2")  # no waiting message to make room with: the new one goes
    assert values(dropped) == [b"e2"]
    box.settle(lent)
    assert values(box.take(10)) == [b"e0", b"e1"]


def test_a_message_larger_than_the_byte_bound_is_dropped_alone() -> None:
    box = Outbox(10, 200)
    put(box, b"small")
    dropped = put(box, b"z" * 500)
    assert values(dropped) == [b"z" * 500]
    assert values(box.take(10)) == [b"small"]
    assert box.stats.dropped == 1


def test_discard_returns_everything_left_oldest_first_and_counts_it_dropped() -> None:
    box = Outbox(10, 10_000)
    for i in range(4):
        put(box, f"e{i}".encode())
    box.take(2)
    assert values(box.discard()) == [b"e0", b"e1", b"e2", b"e3"]
    assert (len(box), box.stats.queued, box.stats.queued_bytes, box.stats.dropped) == (0, 0, 0, 4)


def test_describe_truncates_and_escapes_the_value() -> None:
    box = Outbox(10, 10_000)
    message = box.make("strata.invalidations", None, b'{"tags":["a"]}\x00' + b"q" * 100, ())
    text = describe(message, 16)
    assert "topic=strata.invalidations key=None" in text
    assert "\\x00" in text and "\x00" not in text
    assert "(+99 bytes)" in text


def test_headers_count_against_the_byte_bound() -> None:
    message = OutMessage(0, "t", b"key", b"value", (("origin", b"node-1"),))
    assert message.size == 3 + 5 + 6 + 6 + RECORD_OVERHEAD


def test_bounds_must_leave_room() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Outbox(0, 100)


def test_the_default_node_id_is_stable_and_differs_by_socket() -> None:
    one = default_node_id("kong-1.example", "unix:/run/strata/a.sock")
    assert one == default_node_id("kong-1.example", "unix:/run/strata/a.sock")
    assert one != default_node_id("kong-1.example", "unix:/run/strata/b.sock")
    assert one.startswith("kong-1.example-")
    assert default_node_id("host with spaces/å", "x").startswith("host-with-spaces--")
    assert KafkaBusConfig(bootstrap="b:1", node_id=one).group_id == f"strata-{one}"


@pytest.mark.parametrize(
    ("field", "value"),
    [("node_id", "bad id"), ("node_id", ""), ("bootstrap", ""), ("fetch_wait_max_ms", -1)],
)
def test_bad_settings_are_refused_naming_the_field(field: str, value: object) -> None:
    settings: dict[str, object] = {"bootstrap": "b:1", "node_id": "n", field: value}
    with pytest.raises(ValueError, match=field.split("_", maxsplit=1)[0]):
        KafkaBusConfig(**settings)  # type: ignore[arg-type]
