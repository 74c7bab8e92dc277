"""One line per event, as key=value (default) or JSON: greppable by people, parseable by machines.

Use `event(logger, "dhcp.ack", mac=..., ip=...)`; the formatter writes
`ts=... level=info logger=bootsrv.dhcp event=dhcp.ack mac=... ip=...`. An event about a bug,
`failure(logger, "dhcp.handler_failed", ...)` inside the `except` block, carries the exception
as `error` and its whole traceback as `traceback`, still on one line (quoted, its newlines
escaped). The level is positional only, so every keyword is a field of the event.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import Any

_FIELDS = "bootsrv_fields"


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


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return json.dumps(text)
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_quote(v)}" for k, v in _pairs(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_pairs(record), default=str)


def setup(level: str = "info", fmt: str = "kv", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger("bootsrv")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
