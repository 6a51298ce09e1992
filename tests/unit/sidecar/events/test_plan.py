"""What an event asks of the cache: tag purges through the tag scheme, soft or hard."""

from __future__ import annotations

from sidecar.events import InvalidationEvent, PurgeAll, PurgeTag, parse, plan


def _tags(event: InvalidationEvent) -> list[str]:
    return [op.tag for op in plan(event) if isinstance(op, PurgeTag)]


def test_each_kind_of_item_maps_to_its_tags() -> None:
    event = InvalidationEvent(
        urls=("/products/42?lang=en",),
        prefixes=("/products",),
        tags=("products:42",),
        flush="catalog",
    )
    assert plan(event) == [
        PurgeTag("url:/products/42?lang=en", False, "urls[0]"),
        PurgeTag("path:/products/", False, "prefixes[0]"),
        PurgeTag("path:/products", False, "prefixes[0]"),
        PurgeTag("products:42", False, "tags[0]"),
        PurgeTag("route-name:catalog", False, "flush"),
        PurgeTag("service:catalog", False, "flush"),
    ]


def test_soft_marks_every_operation() -> None:
    event = InvalidationEvent(urls=("/a",), tags=("t",), soft=True)
    assert plan(event) and all(op.soft for op in plan(event))


def test_a_tag_reached_twice_is_purged_once_with_its_first_cause() -> None:
    event = InvalidationEvent(urls=("/a/",), prefixes=("/a/",), tags=("path:/a/", "url:/a/"))
    assert plan(event) == [
        PurgeTag("url:/a/", False, "urls[0]"),
        PurgeTag("path:/a/", False, "prefixes[0]"),
    ]


def test_mixed_case_urls_and_prefixes_are_also_purged_lower_cased() -> None:
    tags = _tags(InvalidationEvent(urls=("/Products/42",), prefixes=("/Shop/",)))
    assert tags == ["url:/Products/42", "url:/products/42", "path:/Shop/", "path:/shop/"]


def test_flush_all_is_one_operation() -> None:
    event = InvalidationEvent(flush="*", tags=("t",), urls=("/a",), soft=True)
    assert plan(event) == [PurgeAll(True, "flush")]


def test_tags_are_purged_as_given() -> None:
    assert _tags(parse(b'{"v":1,"tags":["products:42","Route:X"]}')) == [
        "Route:X",
        "products:42",
    ]


def test_a_deep_prefix_widens_to_its_ancestor_at_the_cap() -> None:
    deep = "/a/b/c/d/e/f/g/h/i/j"
    assert _tags(InvalidationEvent(prefixes=(deep,))) == ["path:/a/b/c/d/e/f/g/h/"]
