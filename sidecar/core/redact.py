"""Masking of credentials: in the secret settings themselves (Redis URLs, PostgreSQL DSNs)
and in any text that may quote them (log lines, error messages, tracebacks).

`redact(value)` masks, with ``***``:

* URL userinfo: ``user:pw@`` becomes ``user:***@`` (also ``redis://:pw@h``,
  ``unix://:pw@/path``, ``redis+cluster://:pw@h:p,h:p``); userinfo without a colon is
  masked whole (``***@``: some clients read it as a password or token);
* URL query parameters whose name looks secret (`is_secret_name`: ``password``, ``pass``,
  ``pwd``, ``auth...``, ``...secret...``, ``...token...``, case-insensitive);
* in a libpq ``key=value`` string, the value of every such key, quoted
  (``password='se cret\\'x'``) or not (``sslpassword=x``).

`secrets_in(value)` lists the secret substrings of a setting, as written and decoded;
`Scrubber` masks those literally (and a quoted piece of one, as drivers quote in their
errors), plus the patterns above, in arbitrary text;
`RedactingFormatter` applies a `Scrubber` to every formatted log record;
`quotes_masked(message)` masks every quoted piece of a parser's error message.

Not guaranteed: a secret quoted in another encoding (base64, split across lines, ...) is
not recognised; a secret shorter than `MIN_LITERAL` characters is masked only where a
pattern finds it, and patterns look at names of at most ~40 characters and userinfo of at
most 512; when an ``@`` appears after the host (in the path or query), everything
between ``://`` and that ``@`` is masked -- more than the secret, never less.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"
#: Configured secrets shorter than this are not masked literally (only by pattern).
MIN_LITERAL = 3

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# Bounded repetitions throughout: these run on every log line, so no pattern may backtrack
# quadratically over a long word.
_SECRET_NAME = (
    r"(?:[\w.\-]{0,40}(?:pass|pwd|secret|token|credential|api_?key)[\w.\-]{0,40}"
    r"|auth[\w.\-]{0,40})"
)
_SECRET_NAME_RE = re.compile(rf"^{_SECRET_NAME}$", re.IGNORECASE)
_QUERY_PARAM_RE = re.compile(rf"([?&;])({_SECRET_NAME})=([^&#;]*)", re.IGNORECASE)
# In free text: URL userinfo up to an '@' in the same word, and name=value pairs.
_TEXT_USERINFO_RE = re.compile(
    r"(?<![A-Za-z0-9+.\-])([A-Za-z][A-Za-z0-9+.\-]{0,30}://)([^\s@\"'<>]{0,512})@"
)
_TEXT_PARAM_RE = re.compile(
    rf"(?<![\w.\-])({_SECRET_NAME})(\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&#\"',;]*)",
    re.IGNORECASE,
)


def quotes_masked(message: str) -> str:
    """A driver's parse error with every quoted piece masked: libpq and URL parsers quote
    the part of the string they stumbled on, which may be a piece of a password."""
    return re.sub(r"\"[^\"]*\"|'[^']*'", '"***"', message)


def is_secret_name(name: str) -> bool:
    """True for parameter names that carry credentials (password, sslpassword, pwd, ...)."""
    return _SECRET_NAME_RE.match(name) is not None


def redact(value: str) -> str:
    """`value` (a URL or a libpq key=value string) with every secret replaced by ``***``."""
    if not value:
        return value
    if _URL_RE.match(value):
        return _redact_url(value)
    return _redact_keywords(value)


def secrets_in(value: str) -> list[str]:
    """The secret substrings of `value` as written and as a driver would decode them
    (percent-decoded in URLs, unquoted in key=value strings)."""
    if not value:
        return []
    found: list[str] = []
    if _URL_RE.match(value):
        rest = value.split("://", 1)[1]
        userinfo, at, _ = rest.rpartition("@")
        if at:
            _, colon, password = userinfo.partition(":")
            found += [password] if colon else [userinfo]
        found += [m.group(3) for m in _QUERY_PARAM_RE.finditer(value)]
        found += [unquote(s) for s in found]
    else:
        spans = _keyword_spans(value)
        if spans is None:  # not parseable: every secret-looking value, by pattern
            found += [_unquote_keyword(m.group(3)) for m in _TEXT_PARAM_RE.finditer(value)]
        else:
            for key, start, end in spans:
                if is_secret_name(key):
                    found += [value[start:end], _unquote_keyword(value[start:end])]
    return sorted({s for s in found if s}, key=len, reverse=True)


def _redact_url(value: str) -> str:
    scheme, rest = value.split("://", 1)
    userinfo, at, hostpart = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        rest = (f"{user}:{MASK}" if colon else MASK) + "@" + hostpart
    return scheme + "://" + _QUERY_PARAM_RE.sub(rf"\1\2={MASK}", rest)


def _redact_keywords(value: str) -> str:
    spans = _keyword_spans(value)
    if spans is None:
        return _TEXT_PARAM_RE.sub(rf"\1\2{MASK}", value)
    out, last = [], 0
    for key, start, end in spans:
        if is_secret_name(key):
            out += [value[last:start], MASK]
            last = end
    return "".join(out) + value[last:]


def _keyword_spans(text: str) -> list[tuple[str, int, int]] | None:
    """libpq key=value parsing: (key, value start, value end) per pair, the value span
    including its quotes; None if `text` is not in that form."""
    spans: list[tuple[str, int, int]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i == n:
            return spans
        start = i
        while i < n and text[i] != "=" and not text[i].isspace():
            i += 1
        key = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if not key or i == n or text[i] != "=":
            return None
        i += 1
        while i < n and text[i].isspace():
            i += 1
        start = i
        if i < n and text[i] == "'":
            i += 1
            while i < n and text[i] != "'":
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                return None  # unterminated quote
            i += 1
        else:
            while i < n and not text[i].isspace():
                i += 2 if text[i] == "\\" else 1
            i = min(i, n)
        spans.append((key, start, i))


def _unquote_keyword(raw: str) -> str:
    """A key=value value as libpq reads it: quotes removed, backslash escapes resolved."""
    if raw.startswith("'"):
        raw = raw[1:-1] if len(raw) > 1 and raw.endswith("'") else raw[1:]
    return re.sub(r"\\(.)", r"\1", raw)


_QUOTED_RE = re.compile(r"(['\"])([^'\"\s]{1,256})\1")


class Scrubber:
    """Masks known secrets (as written, JSON-escaped and repr-escaped) and anything that
    looks like a credential in a URL or a key=value pair, in arbitrary text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = [s for s in secrets if s]
        literals: set[str] = set()
        for secret in self._secrets:
            if len(secret) >= MIN_LITERAL:
                literals |= {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]}
        self._literals = sorted(literals, key=len, reverse=True)

    @classmethod
    def of_settings(cls, values: Iterable[str]) -> Scrubber:
        """A scrubber for the secrets inside secret setting `values` (URLs, DSNs)."""
        return cls(s for value in values for s in secrets_in(value))

    def scrub(self, text: str) -> str:
        for literal in self._literals:
            text = text.replace(literal, MASK)
        if self._secrets:  # a driver quoting a piece of a secret ("port ... as 'pa'")
            text = _QUOTED_RE.sub(self._mask_piece, text)
        text = _TEXT_USERINFO_RE.sub(_mask_userinfo, text)
        return _TEXT_PARAM_RE.sub(rf"\1\2{MASK}", text)

    def _mask_piece(self, m: re.Match[str]) -> str:
        piece = m.group(2)
        if any(piece in secret for secret in self._secrets):
            return f"{m.group(1)}{MASK}{m.group(1)}"
        return m.group(0)


def _mask_userinfo(m: re.Match[str]) -> str:
    user, colon, _ = m.group(2).partition(":")
    return m.group(1) + (f"{user}:{MASK}" if colon else MASK) + "@"


class RedactingFormatter(logging.Formatter):
    """Formats with `inner`, then scrubs the whole line (message, extra fields, traceback)."""

    def __init__(self, inner: logging.Formatter, scrubber: Scrubber) -> None:
        super().__init__()
        self._inner = inner
        self._scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        return self._scrubber.scrub(self._inner.format(record))
