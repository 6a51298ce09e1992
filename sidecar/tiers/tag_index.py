"""The memory tier's tag index: which keys carry each tag, one string object per tag.

A tag carried by one key holds that key; by several, a set of them (a set costs ~200 bytes
more than a key, so it is made only when needed and undone when one key is left). The
index also interns tag strings: every entry carrying a tag can hold the index's one
object for it (`intern`). `sidecar.tiers.memory_cost` charges each entry, per tag, a dict
slot, a record and a set membership, whatever the sharing.

What it does NOT do: check that a key really carries the tags it is added or removed
under (the memory tier passes the entry's own tags), or anything thread-safe.
"""

from __future__ import annotations


class _Tag:
    """The record of one tag: its one string object (every entry carrying the tag holds
    this one) and the key, or the set of keys, carrying it."""

    __slots__ = ("keys", "name")

    def __init__(self, name: str, key: bytes) -> None:
        self.name = name
        self.keys: bytes | set[bytes] = key


class TagIndex:
    """Tag -> keys carrying it, for `delete_tag` in O(keys with the tag)."""

    __slots__ = ("_tags",)

    def __init__(self) -> None:
        self._tags: dict[str, _Tag] = {}

    def __len__(self) -> int:
        """Distinct tags indexed."""
        return len(self._tags)

    def intern(self, tags: tuple[str, ...]) -> tuple[str, ...]:
        """`tags` with each string replaced by the index's object for it, if any."""
        if not tags:
            return tags
        index = self._tags
        return tuple(r.name if (r := index.get(t)) is not None else t for t in tags)

    def add(self, key: bytes, tags: tuple[str, ...]) -> None:
        index = self._tags
        for tag in tags:
            record = index.get(tag)
            if record is None:
                index[tag] = _Tag(tag, key)
            elif isinstance(record.keys, bytes):
                if record.keys != key:
                    record.keys = {record.keys, key}
            else:
                record.keys.add(key)

    def remove(self, key: bytes, tags: tuple[str, ...]) -> None:
        index = self._tags
        for tag in tags:
            record = index.get(tag)
            if record is None:
                continue
            keys = record.keys
            if isinstance(keys, bytes):
                if keys == key:
                    del index[tag]
                continue
            keys.discard(key)
            if len(keys) == 1:
                record.keys = next(iter(keys))  # a set costs ~200 bytes more than a key
            elif not keys:
                del index[tag]

    def keys(self, tag: str) -> list[bytes]:
        """The keys carrying `tag` now (a copy: safe to drop them while iterating)."""
        record = self._tags.get(tag)
        if record is None:
            return []
        keys = record.keys
        return [keys] if isinstance(keys, bytes) else list(keys)

    def clear(self) -> None:
        self._tags.clear()
