"""The start-up checks of mapped tables, from catalog rows built here (no database)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from sidecar.cdc import catalog
from sidecar.cdc.debezium_consumer import DebeziumConfig, DebeziumRunner
from sidecar.cdc.mapping import TableMap, TableRule, parse_map
from sidecar.cdc.publish import BrokerUnavailableError, Publisher, PublisherConfig
from sidecar.cdc.translate import CdcStats, Translator
from tools.services.procs import free_port

COLS = ["id", "sku", "price"]


def check(
    rule: TableRule,
    ident: str,
    primary: list[str],
    index: Sequence[str] = (),
    ins: bool = False,
) -> TableRule:
    row = ("public", "products", ident, COLS, primary, list(index))
    return catalog._check(catalog._info(row, rule, ins))


@pytest.mark.parametrize(
    ("ident", "primary", "index", "why"),
    [
        ("d", [], [], "DEFAULT without a key"),
        ("n", ["id"], [], "NOTHING"),
        ("i", ["id"], [], "USING INDEX without a key"),
    ],
)
def test_no_replica_identity_is_refused_naming_the_table(
    ident: str, primary: list[str], index: list[str], why: str
) -> None:
    rule = parse_map("products=p:{sku}")
    with pytest.raises(catalog.SetupError) as info:
        check(rule, ident, primary, index)
    assert info.value.option == "--tables"
    assert "table public.products has no replica identity" in str(info.value) and why in str(
        info.value
    )
    assert check(rule, ident, primary, index, ins=True) == rule  # opted in


def test_identity_full_or_index_is_enough_and_the_default_key_comes_from_the_catalog() -> None:
    assert check(TableRule("products"), "f", ["id"]).key == ("id",)  # not every column
    assert check(TableRule("products"), "i", [], ["sku"]).key == ("sku",)
    with pytest.raises(catalog.SetupError, match="no primary key for its default tag"):
        check(TableRule("products"), "f", [])
    assert check(TableRule("products", key=("sku",)), "f", []).key == ("sku",)


def test_a_missing_template_or_key_column_is_named() -> None:
    with pytest.raises(catalog.SetupError) as info:
        check(parse_map("products=p:{id},x:{nosuchcol}"), "d", ["id"])
    assert info.value.option == "--map"
    assert "table public.products has no column 'nosuchcol'" in str(info.value)
    with pytest.raises(catalog.SetupError, match="no column 'k'"):
        check(TableRule("products", key=("k",)), "d", ["id"])


def test_debezium_once_gives_up_when_no_partition_is_assigned() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    stats = CdcStats()
    translator = Translator(TableMap([TableRule("products")]), "out", stats)
    publisher = Publisher(PublisherConfig(nowhere, "out"))
    config = DebeziumConfig(nowhere, ("dbz.src",), assign_timeout_s=0.5)
    try:
        with pytest.raises(BrokerUnavailableError, match=r"no partition of dbz\.src assigned"):
            DebeziumRunner(config, translator, publisher, threading.Event()).run(once=True)
    finally:
        publisher.close()
