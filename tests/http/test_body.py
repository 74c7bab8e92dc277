"""Request bodies (bootsrv.http.body): nesting counted on the bytes, before any parsing, as a
table; one JSON object out of a body, or the rule it breaks."""

from __future__ import annotations

import time

import pytest

from bootsrv.errors import InvalidInput
from bootsrv.http.body import MAX_DEPTH, json_object, nesting

NESTING = [
    ("scalar", b"1", 0),
    ("empty array", b"[]", 1),
    ("empty object", b"{}", 1),
    ("an enrollment's shape", b'{"token": "T", "facts": {"nics": [{"name": "fe0"}]}}', 4),
    ("siblings are not deeper", b"[[], [], [[]]]", 3),
    ("brackets in a string", b'["[[[{{{"]', 1),
    ("escaped quote in a string", b'["a\\"[[[", []]', 2),
    ("escaped backslash ends the string", b'["a\\\\", [[]]]', 3),
    ("unterminated string hides the rest", b'["abc[[[[', 1),
    ("unbalanced opens", b"[[[[", 4),
    ("closes first", b"]]][[", 0),
]


@pytest.mark.parametrize("raw, depth", [c[1:] for c in NESTING], ids=[c[0] for c in NESTING])
def test_nesting(raw, depth):
    assert nesting(raw) == depth


@pytest.mark.parametrize(
    "raw",
    [
        b'"' + b'\\"' * 32000,  # one unterminated string of escaped quotes
        b'"' * 65536,
        b"[" * 65536,
        b'["a",' * 10000,
    ],
    ids=["escaped-quotes", "quotes", "brackets", "strings"],
)
def test_nesting_is_linear_on_hostile_bodies(raw):
    # A pattern that needs a closing quote retried from every later quote: 8 kB of escaped
    # quotes took over a second, 64 kB would take over a minute. Linear: well under a second.
    start = time.perf_counter()
    nesting(raw)
    assert time.perf_counter() - start < 1.0


JSON_OBJECT = [
    ("object", b'{"a": 1}', False, {"a": 1}),
    ("empty optional", b"  ", True, {}),
    ("empty required", b"", False, "is not valid JSON"),
    ("not JSON", b"token=abc", False, "is not valid JSON"),
    ("not UTF-8", b'{"a": "\xff"}', False, "is not valid JSON"),
    ("array", b"[1]", False, "must be a JSON object, got list"),
    ("deep", b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), False, f"more than {MAX_DEPTH} deep"),
    ("as deep as allowed", b'{"a":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}", False, dict),
]


@pytest.mark.parametrize("raw, optional, expected", [c[1:] for c in JSON_OBJECT], ids=[c[0] for c in JSON_OBJECT])
def test_json_object(raw, optional, expected):
    if isinstance(expected, str):
        with pytest.raises(InvalidInput) as err:
            json_object(raw, optional)
        assert err.value.field == "body" and expected in err.value.rule
    elif expected is dict:
        assert isinstance(json_object(raw, optional), dict)
    else:
        assert json_object(raw, optional) == expected
