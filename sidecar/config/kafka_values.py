"""Checks of the Kafka settings: bootstrap servers, topic names and the node id.

Each raises ValueError with a phrase that `sidecar.config.loading` prefixes with the
setting's name and source. Not checked: that a broker answers (the bus retries in the
background, a broker down at start is not a failed start) or that a host name resolves.
"""

from __future__ import annotations

import re

__all__ = [
    "check_bootstrap",
    "check_dead_letter_topic",
    "check_node_id",
    "check_topic",
]

#: Kafka's topic rule: 1-249 of these characters, and not "." or "..".
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
#: `sidecar.cluster.kafka_bus.KafkaBusConfig`'s node id rule.
_NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")


def check_bootstrap(value: str) -> None:
    """Empty (no Kafka), or ``host:port[,host:port...]``; an IPv6 address in brackets."""
    if not value:
        return
    for i, item in enumerate(value.split(",")):
        host, sep, port = item.strip().rpartition(":")
        good_port = port.isascii() and port.isdigit() and 0 < int(port) <= 65535
        if not sep or not _HOST.fullmatch(host) or not good_port:
            raise ValueError(
                f"server {i + 1} of the list, {item.strip()[:80]!r}, is not HOST:PORT "
                "(expected host:port[,host:port...])"
            )


def check_topic(value: str) -> None:
    """A Kafka topic name: 1-249 of ``A-Z a-z 0-9 . _ -``, not ``.`` or ``..``."""
    if not _TOPIC.fullmatch(value) or value in {".", ".."}:
        raise ValueError(
            f"{value[:80]!r} is not a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -, "
            "not '.' or '..')"
        )


def check_dead_letter_topic(value: str) -> None:
    """Empty (no dead-letter topic) or a Kafka topic name."""
    if value:
        check_topic(value)


def check_node_id(value: str) -> None:
    """Empty (derived from the host name and ``listen``) or 1-200 of ``A-Z a-z 0-9 . _ -``."""
    if value and not _NODE_ID.fullmatch(value):
        raise ValueError(
            f"{value[:80]!r} is not a node id (1-200 of A-Z a-z 0-9 . _ -; empty: derived "
            "from the host name and listen)"
        )
