"""Which tags a row change purges: table + key -> tags, per table, configurable.

* **Default**: ``<table>:<key>`` -- the table as configured (``products``, or
  ``sales.orders`` when configured schema-qualified) and the key columns' values joined with
  ``,`` in key-column order (``products:42``, ``order_lines:7,3``). Key columns come from the
  source (the replica identity of the pgoutput Relation, in table column order; the Debezium
  message key, in its field order) unless the table's rule names them (``key``), which is
  the way to fix the order of a composite key for both sources.
* **Templates**: ``--map 'products=product:{id},sku:{sku}'`` (templates separated by
  ``,``, so a template given there cannot hold one; the TOML file can) or a TOML file::

      [tables.products]
      tags = ["product:{id}", "sku:{sku}"]   # default: ["products:{<key>}"]
      key = ["id"]                             # default: the source's key columns
      truncate_tags = ["products"]             # default: ["products"]

  ``{column}`` is the column's text; ``{{`` and ``}}`` are literal braces. A column that is
  NULL makes no tag from that template (not an error). A column that is not in the row image
  (a DELETE's non-key column without REPLICA IDENTITY FULL; on the Debezium path, where no
  catalog is read, a misspelt name -- the slot path refuses one at start:
  `sidecar.cdc.catalog`) makes no tag either, and is reported (`Tags.problems`: counted and
  logged by the caller).
* **Every image** of the row is rendered (an UPDATE that changed the key: old and new).
* **TRUNCATE** purges only the table's ``truncate_tags`` (default: the table's name, as
  configured): per-row tags are not purged, since the rows are not known. Stamp list pages
  and other entries that depend on the whole table with that tag.
* **Table names** match as stored in the catalog (lower case unless created quoted). A
  qualified name (``sales.orders``) matches that schema only and wins over an unqualified
  one, which matches the table in any schema.
* **Tag rules**: a tag is 1-256 printable ASCII characters without spaces (the sidecar's
  rule). A rendered tag that breaks it is hashed: ``<head>#<sha256 hex of the rest>`` where
  ``<head>`` is the text before its first ``:`` (``product:caf\u00e9`` -> ``product#`` and
  the SHA-256 of ``caf\u00e9`` in UTF-8), or ``tag#<sha256 hex of the whole tag>`` when there
  is no usable head. Applications that stamp such values must stamp the same hash.

Not guaranteed: that the tags exist on any entry (the application stamps them); values are
PostgreSQL's text output (pgoutput) or the JSON value (Debezium: numbers as written, strings
as is, booleans ``t``/``f`` like PostgreSQL), so a type whose Debezium encoding differs from
its text (``numeric`` as bytes, timestamps as epoch numbers) maps to different tags.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from sidecar.cdc.changes import Image, Op, RowChange
from sidecar.events.tagging import MAX_TAG_CHARS

__all__ = [
    "MappingError",
    "TableMap",
    "TableRule",
    "Tags",
    "Template",
    "load_map_file",
    "parse_map",
    "rules_from_toml",
    "safe_tag",
    "valid_tag",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}(?:\.[A-Za-z_][A-Za-z0-9_$]{0,62})?")
_TAG = re.compile(r"[!-~]+")
_HEAD = re.compile(r"[!-~]{1,64}")


class MappingError(ValueError):
    """A mapping that cannot be used; the message names the table or template."""


def valid_tag(text: str) -> bool:
    return len(text) <= MAX_TAG_CHARS and _TAG.fullmatch(text) is not None


def safe_tag(text: str) -> str:
    """`text` if it is a valid tag, else its hashed form (see the module)."""
    if valid_tag(text):
        return text
    head, colon, rest = text.partition(":")
    if not (colon and _HEAD.fullmatch(head)):
        head, rest = "tag", text
    return f"{head}#{hashlib.sha256(rest.encode('utf-8', 'surrogateescape')).hexdigest()}"


@dataclass(frozen=True, slots=True)
class Template:
    """A tag template: literal text and ``{column}`` fields."""

    text: str
    parts: tuple[tuple[str, str | None], ...]  # (literal, column or None)

    @classmethod
    def parse(cls, text: str) -> Template:
        if not text:
            raise MappingError("empty tag template")
        parts: list[tuple[str, str | None]] = []
        literal: list[str] = []
        i = 0
        while i < len(text):
            ch = text[i]
            if ch in "{}" and text[i + 1 : i + 2] == ch:
                literal.append(ch)
                i += 2
            elif ch == "{":
                end = text.find("}", i)
                name = text[i + 1 : end] if end > 0 else ""
                if end < 0 or not name or "{" in name:
                    raise MappingError(f"template {text!r}: '{{' at {i} opens no {{column}}")
                parts.append(("".join(literal), name))
                literal = []
                i = end + 1
            elif ch == "}":
                raise MappingError(f"template {text!r}: lone '}}' at {i} (write '}}}}')")
            else:
                literal.append(ch)
                i += 1
        parts.append(("".join(literal), None))
        return cls(text, tuple(parts))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.parts if name is not None)

    def render(self, image: Image) -> str | None:
        """The tag text for `image`; None when a column is NULL. KeyError(column) when a
        column is not in the image."""
        out = []
        for literal, name in self.parts:
            out.append(literal)
            if name is not None:
                value = image[name]
                if value is None:
                    return None
                out.append(value)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class TableRule:
    """The tags of one table. `templates` empty: the default ``<name>:<key>``."""

    name: str
    templates: tuple[Template, ...] = ()
    key: tuple[str, ...] = ()
    truncate_tags: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise MappingError(f"table {self.name!r}: not a [schema.]table name")
        for tag in self.truncate_tags or ():
            if not valid_tag(tag):
                raise MappingError(f"table {self.name}: truncate tag {tag!r} is not a valid tag")

    @property
    def schema(self) -> str | None:
        return self.name.split(".")[0] if "." in self.name else None

    @property
    def table(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    def on_truncate(self) -> tuple[str, ...]:
        return (self.name,) if self.truncate_tags is None else self.truncate_tags


@dataclass(slots=True)
class Tags:
    """What a change purges, and what could not be rendered (one line each)."""

    tags: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    hashed: int = 0


class TableMap:
    """The rules of every table, looked up by schema and table name."""

    def __init__(self, rules: Iterable[TableRule]) -> None:
        self._rules: dict[str, TableRule] = {}
        for rule in rules:
            if rule.name in self._rules:
                raise MappingError(f"table {rule.name} is mapped twice")
            self._rules[rule.name] = rule
        if not self._rules:
            raise MappingError("no table is mapped")

    @property
    def rules(self) -> tuple[TableRule, ...]:
        return tuple(self._rules.values())

    def rule_for(self, schema: str, table: str) -> TableRule | None:
        return self._rules.get(f"{schema}.{table}") or self._rules.get(table)

    def tags(self, rule: TableRule, change: RowChange) -> Tags:
        out = Tags()
        if change.op is Op.TRUNCATE:
            out.tags.extend(rule.on_truncate())
            return out
        keys = rule.key or change.key_columns
        for image in change.images:
            if rule.templates:
                for template in rule.templates:
                    _add(out, rule, image, template.text, partial(template.render, image))
            elif not keys:
                out.problems.append(f"{rule.name}: no key columns (set key in the mapping)")
            else:
                _add(out, rule, image, "<key>", partial(_default, rule.name, keys, image))
        return out


def _add(
    out: Tags, rule: TableRule, image: Image, what: str, render: Callable[[], str | None]
) -> None:
    try:
        text = render()
    except KeyError as missing:
        out.problems.append(
            f"{rule.name}: {what}: column {missing.args[0]!r} not in the row "
            f"(has {', '.join(sorted(image)) or 'nothing'})"
        )
        return
    if text is None:
        return
    tag = safe_tag(text)
    out.hashed += tag != text
    if tag not in out.tags:
        out.tags.append(tag)


def _default(name: str, keys: Sequence[str], image: Image) -> str | None:
    values = [image[k] for k in keys]
    if any(v is None for v in values):
        return None
    return f"{name}:{','.join(v for v in values if v is not None)}"


def parse_map(spec: str) -> TableRule:
    """``table=template,template`` (the ``--map`` flag)."""
    name, eq, templates = spec.partition("=")
    if not eq or not templates:
        raise MappingError(f"{spec!r}: expected TABLE=TEMPLATE[,TEMPLATE...]")
    return TableRule(name.strip(), tuple(Template.parse(t) for t in templates.split(",")))


def _strings(table: str, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MappingError(f"table {table}: {key} must be a list of strings")
    return tuple(value)


def rules_from_toml(data: Mapping[str, object], where: str) -> list[TableRule]:
    """The rules of a parsed TOML document (``[tables.<name>]`` tables)."""
    unknown = set(data) - {"tables"}
    if unknown:
        raise MappingError(f"{where}: unknown top-level keys {sorted(unknown)}")
    tables = data.get("tables", {})
    if not isinstance(tables, dict):
        raise MappingError(f"{where}: [tables] must be a table")
    rules = []
    for name, body in tables.items():
        if not isinstance(body, dict):
            raise MappingError(f"{where}: tables.{name} must be a table")
        extra = set(body) - {"tags", "key", "truncate_tags"}
        if extra:
            raise MappingError(f"{where}: tables.{name}: unknown keys {sorted(extra)}")
        templates = _strings(name, "tags", body.get("tags", []))
        truncate = body.get("truncate_tags")
        rules.append(
            TableRule(
                name,
                tuple(Template.parse(t) for t in templates),
                _strings(name, "key", body.get("key", [])),
                None if truncate is None else _strings(name, "truncate_tags", truncate),
            )
        )
    return rules


def load_map_file(path: Path) -> list[TableRule]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise MappingError(f"{path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: {exc}") from exc
    return rules_from_toml(data, str(path))
