"""Request bodies: how big, how deep, and one JSON object out of them (pure).

Every body the API reads is JSON from a client that may be anyone on the network, so it is
bounded before it is parsed:

- size: MAX_BODY bytes, enforced by Flask (`MAX_CONTENT_LENGTH`, bootsrv.http.app) while the body
  is read, for a declared Content-Length and a chunked body alike: 413 `{"error":
  "RequestEntityTooLarge", "field": "body", ...}` (bootsrv.http.errors);
- nesting: MAX_DEPTH arrays and objects inside each other. Python's json parser recurses once per
  level, so `[[[[...` 30,000 deep (60 kB) raised RecursionError, a 500. The depth is counted
  first, without parsing, and anything deeper is a 400 naming the body and the rule. The deepest
  real body, an enrollment (the body -> facts -> nics -> one NIC), is 4 levels.
"""

from __future__ import annotations

import json
import re

from bootsrv.errors import InvalidInput

MAX_BODY = 64 * 1024  # an enrollment with 64 NICs and 256 disks is ~30 KiB of JSON
MAX_DEPTH = 32

# The tokens that matter for depth: a JSON string (brackets inside it are text, RFC 8259 7), or a
# bracket. A string runs to its closing quote or to the end of the input, and a backslash takes
# the next byte if there is one: so every match succeeds where it starts and the scan is linear.
# (A pattern that needs the closing quote retries from every later quote of an unterminated
# string: 8 kB of `"\"\"\"...` took over a second.)
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.?)*(?:"|\Z)|[\[\]{}]', re.DOTALL)
_OPEN = (ord("["), ord("{"))
_CLOSE = (ord("]"), ord("}"))


def nesting(raw: bytes) -> int:
    """How deeply arrays and objects nest in `raw`: 0 for a scalar, 1 for `[]` or `{}`. Counted
    on the bytes, without parsing; unbalanced input still gets a number (the parser refuses it)."""
    depth = deepest = 0
    for token in _TOKENS.findall(raw):
        if token[0] in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif token[0] in _CLOSE:
            depth -= 1
    return deepest


def json_object(raw: bytes, optional: bool = False) -> dict:
    """The JSON object in `raw`, or InvalidInput naming the body and the rule it breaks.

    `optional`: an empty body is `{}` (POST actions whose arguments are all optional)."""
    if not raw.strip() and optional:
        return {}
    # Fewer brackets than the limit cannot nest deeper than it: most bodies skip the scan.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and nesting(raw) > MAX_DEPTH:
        raise InvalidInput("body", f"nests arrays and objects more than {MAX_DEPTH} deep")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise InvalidInput("body", "is not valid JSON (Content-Type: application/json)") from None
    if not isinstance(data, dict):
        raise InvalidInput("body", f"must be a JSON object, got {type(data).__name__}")
    return data
