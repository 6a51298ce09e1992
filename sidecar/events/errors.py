"""Why an event is refused: one exception type with a short, stable reason label."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EventError", "Reason"]


class Reason(StrEnum):
    """Why an event was refused; the values are metric labels and never change."""

    #: The message is larger than `MAX_EVENT_BYTES`.
    TOO_LARGE = "too_large"
    #: The bytes are not UTF-8 (UTF-16 and UTF-32 JSON included).
    BAD_ENCODING = "bad_encoding"
    #: Not one JSON text: syntax error, trailing data, NaN/Infinity, an empty message, a
    #: number with more digits than Python converts.
    MALFORMED_JSON = "malformed_json"
    #: Arrays and objects nested deeper than `MAX_DEPTH`.
    TOO_DEEP = "too_deep"
    #: A key appears twice in one object (readers disagree on which one wins).
    DUPLICATE_KEY = "duplicate_key"
    #: The JSON text is not an object.
    NOT_AN_OBJECT = "not_an_object"
    #: No ``"v"``.
    MISSING_VERSION = "missing_version"
    #: ``"v"`` is a number other than 1.
    UNSUPPORTED_VERSION = "unsupported_version"
    #: A known field (or an item of it) has the wrong JSON type.
    WRONG_TYPE = "wrong_type"
    #: An array has more than `MAX_ITEMS` items.
    TOO_MANY_ITEMS = "too_many_items"
    #: A string is longer than its field allows.
    TOO_LONG = "too_long"
    #: A string or number breaks its field's rules (characters, leading slash, range).
    BAD_VALUE = "bad_value"
    #: ``soft`` with ``keys`` or ``key_prefixes``: a key purge cannot mark entries stale.
    SOFT_KEY_PURGE = "soft_key_purge"
    #: Nothing to purge: no URL, tag, prefix, key, route or key prefix, and no flush.
    EMPTY = "empty"


class EventError(ValueError):
    """An event that is refused (by `parse`, by `InvalidationEvent` or by `encode`).

    `reason` is a `Reason` (a stable metric label); `message` says what is wrong and names
    the field (``tags[3]``), quoting at most a short, escaped piece of the offending value.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
