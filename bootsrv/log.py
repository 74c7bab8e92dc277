"""One line per event, as key=value (default) or JSON: greppable by people, parseable by machines.

Use `event(logger, "dhcp.ack", mac=..., ip=...)`; the formatter writes
`ts=... level=info logger=bootsrv.dhcp event=dhcp.ack mac=... ip=...`. An event about a bug,
`failure(logger, "dhcp.handler_failed", ...)` inside the `except` block, carries the exception
as `error` and its whole traceback as `traceback`, still on one line (quoted, its newlines
escaped). The level is positional only, so every keyword is a field of the event.

Field values come from the network (a client's host name, a requested file name, a query name)
and a log line must show them, not act on them: no value's bytes reach the line raw when they
could end the line, forge a field, or drive the terminal (a newline starts a fake event, an ESC
sequence recolours or hides what follows). So a value is written bare only when it is printable,
without space, '"', '=' or '\\'; otherwise it is quoted as a JSON string whose unprintable
characters (C0 with newline and NUL, DEL, C1, line separators, format characters such as bidi
overrides, lone surrogates) are all \\u escapes, so `json.loads` reads every quoted value back.
Printable characters of any script are kept as they are, so `grep` finds a name as it was sent.
A value longer than VALUE_LIMIT characters is cut and marked with its length (CUT_MARK); only the
traceback of our own failure may be longer. The JSON format writes printable ASCII only: the
json module's ensure_ascii escapes C0, DEL and everything beyond ASCII; it only gains the cut.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from typing import Any

_FIELDS = "bootsrv_fields"
VALUE_LIMIT = 1024  # characters of one value; a DHCP option or a DNS name is at most 255 octets
TRACEBACK_LIMIT = 16384  # our own traceback: longer, but a RecursionError's is not kept whole
CUT_MARK = "...(cut: {} characters)"


def event(logger: logging.Logger, name: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """One event at `level` with `fields`."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={_FIELDS: fields})


def failure(logger: logging.Logger, name: str, /, **fields: Any) -> None:
    """A bug: an error event with the exception being handled and its traceback (call it in the
    `except` block)."""
    logger.error(name, exc_info=True, extra={_FIELDS: fields})


def _pairs(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
    }
    out.update(getattr(record, _FIELDS, {}))
    if record.exc_info:
        out["error"] = repr(record.exc_info[1])
        out["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return out


def cut(text: str, limit: int = VALUE_LIMIT) -> str:
    """`text`, or its first `limit` characters and CUT_MARK with the whole length."""
    return text if len(text) <= limit else text[:limit] + CUT_MARK.format(len(text))


def _unicode_escape(char: str) -> str:
    code = ord(char)
    if code > 0xFFFF:  # JSON has no escape above the BMP: a surrogate pair (RFC 8259 7)
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` with every unprintable character written as its escape (\\n, \\r, \\t, else
    \\uXXXX), printable ones as they are: for a line a person reads (a table cell, a message)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _SHORT.get(c) or _unicode_escape(c) for c in text)


def quoted(text: str) -> str:
    """`text` as a JSON string literal with no unprintable character in it (see the module doc)."""
    body = json.dumps(text, ensure_ascii=False)  # escapes '"', '\\' and C0
    if not body.isprintable():  # DEL, C1, separators, format characters, lone surrogates
        body = "".join(c if c.isprintable() else _unicode_escape(c) for c in body)
    return body


_NOT_BARE = re.compile(r'[ "=\\]')
_NOT_KEY = re.compile(r"[^A-Za-z0-9_.-]")


def _limit(key: str) -> int:
    return TRACEBACK_LIMIT if key == "traceback" else VALUE_LIMIT


def _kv(key: str, value: Any) -> str:
    text = cut(str(value), _limit(key))
    if not text or not text.isprintable() or _NOT_BARE.search(text):
        text = quoted(text)
    # Keys are the code's keywords; a key made from data still cannot break the line.
    return f"{_NOT_KEY.sub('_', key) or '_'}={text}"


def _json_value(key: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, list, tuple, dict)):
        return value
    return cut(str(value), _limit(key))


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(_kv(k, v) for k, v in _pairs(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # ensure_ascii (the default) writes C0, DEL and every non-ASCII character as \\u escapes.
        return json.dumps({k: _json_value(k, v) for k, v in _pairs(record).items()}, default=str)


def setup(level: str = "info", fmt: str = "kv", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger("bootsrv")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
