"""Table + key -> tags: the default, templates, NULLs, missing columns, hashing, TRUNCATE."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sidecar.cdc.changes import Op, RowChange
from sidecar.cdc.mapping import (
    MappingError,
    TableMap,
    TableRule,
    Template,
    load_map_file,
    parse_map,
    safe_tag,
)


def change(op: Op, *images: dict[str, str | None], keys: tuple[str, ...] = ("id",)) -> RowChange:
    return RowChange(op, "public", "products", keys, tuple(images))


def tags(rule: TableRule, c: RowChange) -> list[str]:
    found = TableMap([rule]).tags(rule, c)
    assert found.problems == []
    return found.tags


def test_default_tag_is_table_and_key() -> None:
    rule = TableRule("products")
    assert tags(rule, change(Op.UPDATE, {"id": "42", "sku": "a"})) == ["products:42"]
    both = change(Op.UPDATE, {"id": "6"}, {"id": "600", "sku": "a"})
    assert tags(rule, both) == ["products:6", "products:600"]
    composite = change(Op.DELETE, {"b": "3", "a": "7"}, keys=("a", "b"))
    assert tags(TableRule("lines"), composite) == ["lines:7,3"]
    # a configured key fixes the order
    assert tags(TableRule("lines", key=("b", "a")), composite) == ["lines:3,7"]
    assert tags(TableRule("sales.products"), change(Op.INSERT, {"id": "1"})) == ["sales.products:1"]


def test_templates_render_columns_and_skip_nulls() -> None:
    rule = parse_map("products=product:{id},sku:{sku},{{lit}}:{id}")
    c = change(Op.INSERT, {"id": "42", "sku": "AB-1"})
    assert tags(rule, c) == ["product:42", "sku:AB-1", "{lit}:42"]
    assert tags(rule, change(Op.INSERT, {"id": "42", "sku": None})) == [
        "product:42",
        "{lit}:42",
    ]


def test_a_missing_column_is_a_problem_not_a_crash() -> None:
    rule = parse_map("products=product:{id},sku:{sku}")
    found = TableMap([rule]).tags(rule, change(Op.DELETE, {"id": "5"}))
    assert found.tags == ["product:5"]
    assert found.problems == ["products: sku:{sku}: column 'sku' not in the row (has id)"]
    keyless = TableMap([TableRule("t")]).tags(
        TableRule("t"), change(Op.INSERT, {"a": "1"}, keys=())
    )
    assert keyless.tags == [] and "no key columns" in keyless.problems[0]


def test_values_that_cannot_make_a_tag_are_hashed() -> None:
    rule = TableRule("products")
    found = TableMap([rule]).tags(rule, change(Op.INSERT, {"id": "caf\u00e9 au lait"}))
    digest = hashlib.sha256("caf\u00e9 au lait".encode()).hexdigest()
    assert found.tags == [f"products#{digest}"] and found.hashed == 1
    long = "x" * 300
    assert safe_tag(f"t:{long}") == "t#" + hashlib.sha256(long.encode()).hexdigest()
    assert safe_tag("no colon here") == "tag#" + hashlib.sha256(b"no colon here").hexdigest()
    assert safe_tag("\udcff:x").startswith("tag#")  # bytes that were not UTF-8
    assert safe_tag("ok:1") == "ok:1"


def test_truncate_purges_the_table_tags() -> None:
    assert tags(TableRule("products"), change(Op.TRUNCATE)) == ["products"]
    rule = TableRule("products", truncate_tags=("catalog", "products"))
    assert tags(rule, change(Op.TRUNCATE)) == ["catalog", "products"]
    assert tags(TableRule("products", truncate_tags=()), change(Op.TRUNCATE)) == []


def test_qualified_names_win_and_unqualified_match_any_schema() -> None:
    plain, qualified = TableRule("products"), TableRule("sales.products")
    mapping = TableMap([plain, qualified])
    assert mapping.rule_for("sales", "products") is qualified
    assert mapping.rule_for("public", "products") is plain
    assert TableMap([qualified]).rule_for("public", "products") is None
    assert mapping.rule_for("public", "orders") is None


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("products", "expected TABLE=TEMPLATE"),
        ("products=", "expected TABLE=TEMPLATE"),
        ("bad name=x:{id}", "not a \\[schema.\\]table name"),
        ("a.b.c=x:{id}", "not a \\[schema.\\]table name"),
        ("products=x:{id", "opens no"),
        ("products=x:{}", "opens no"),
        ("products=x:}", "lone"),
        ("products=a,,b", "empty tag template"),
    ],
)
def test_bad_map_specs(spec: str, words: str) -> None:
    with pytest.raises(MappingError, match=words):
        parse_map(spec)


def test_a_table_mapped_twice_or_none_is_refused() -> None:
    with pytest.raises(MappingError, match="mapped twice"):
        TableMap([TableRule("a"), TableRule("a")])
    with pytest.raises(MappingError, match="no table"):
        TableMap([])
    with pytest.raises(MappingError, match="truncate tag"):
        TableRule("a", truncate_tags=("has space",))


def test_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text(
        '[tables.products]\ntags = ["product:{id}", "pair:{id},{sku}"]\nkey = ["id"]\n'
        'truncate_tags = ["catalog"]\n[tables."sales.orders"]\n'
    )
    products, orders = load_map_file(path)
    assert products.templates == (Template.parse("product:{id}"), Template.parse("pair:{id},{sku}"))
    assert (products.key, products.on_truncate()) == (("id",), ("catalog",))
    assert (orders.name, orders.templates, orders.on_truncate()) == (
        "sales.orders",
        (),
        ("sales.orders",),
    )
    path.write_text('[tables.products]\ntagz = ["x"]\n')
    with pytest.raises(MappingError, match="unknown keys"):
        load_map_file(path)
    path.write_text("[tables.products\n")
    with pytest.raises(MappingError, match=r"map\.toml"):
        load_map_file(path)
    with pytest.raises(MappingError, match="No such file"):
        load_map_file(tmp_path / "absent.toml")
