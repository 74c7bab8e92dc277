"""One line per event whatever a value holds (bootsrv.log): a table of values a client on the boot
segment can send (a host name, a file name, a query name), through both formats. No line holds
a character that ends it, forges a field or drives a terminal; each value reads back as it was
(cut when over-long, with a marker); plain values stay bare so `grep key=value` finds them."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from bootsrv.log import CUT_MARK, TRACEBACK_LIMIT, VALUE_LIMIT, JsonFormatter, KeyValueFormatter, event, failure

# (id, value, how the kv format writes it)
VALUES = [
    ("plain-name", "node1", "node1"),
    ("mac", "52:54:00:aa:bb:cc", "52:54:00:aa:bb:cc"),
    ("any-script-stays-greppable", "café-東京", "café-東京"),
    ("empty", "", '""'),
    ("space", "a b", '"a b"'),
    ("equals-forges-a-field", "x level=error", '"x level=error"'),
    ("quote", 'a"b', '"a\\"b"'),
    ("backslash-is-quoted", "a\\u001bb", '"a\\\\u001bb"'),  # never mistaken for an escape
    ("newline-forges-an-event", "x\nts=0 level=error event=forged", '"x\\nts=0 level=error event=forged"'),
    ("carriage-return", "ok\roverwritten", '"ok\\roverwritten"'),
    ("tab", "a\tb", '"a\\tb"'),
    ("nul", "a\x00b", '"a\\u0000b"'),
    ("esc-clear-screen", "\x1b[2J\x1b[H", '"\\u001b[2J\\u001b[H"'),
    ("osc-window-title", "\x1b]0;owned\x07", '"\\u001b]0;owned\\u0007"'),
    ("del", "a\x7fb", '"a\\u007fb"'),
    ("c1-nel", "a\x85b", '"a\\u0085b"'),
    ("c1-csi", "a\x9b31mb", '"a\\u009b31mb"'),
    ("line-separator", "a\u2028b", '"a\\u2028b"'),
    ("paragraph-separator", "a\u2029b", '"a\\u2029b"'),
    ("bidi-override", "txt\u202eexe", '"txt\\u202eexe"'),
    ("no-break-space", "a\u00a0b", '"a\\u00a0b"'),
    ("lone-surrogate-from-bytes", b"a\xffb".decode("ascii", "surrogateescape"), '"a\\udcffb"'),
    ("emoji-outside-the-bmp", "ok\U0001f600", "ok\U0001f600"),
    ("format-character-outside-the-bmp", "a\U000e0001b", '"a\\udb40\\udc01b"'),
    ("bytes", b"\x1b[31m", "\"b'\\\\x1b[31m'\""),
    ("number", 42, "42"),
]


def line(formatter: logging.Formatter, name: str = "test.event", **fields) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("bootsrv.test_log")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        event(logger, name, **fields)
    finally:
        logger.handlers[:] = []
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)  # one line, whatever the values
    return text[:-1]


KV_PAIR = re.compile(r'([^ =]+)=("(?:[^"\\]|\\.)*"|[^ "]*)(?: |$)')


def kv_fields(text: str) -> dict[str, str]:
    pairs = KV_PAIR.findall(text)
    assert " ".join(f"{k}={v}" for k, v in pairs) == text, "every byte of the line is in a pair"
    return {k: json.loads(v) if v.startswith('"') else v for k, v in pairs}


def assert_safe(text: str) -> None:
    bad = [c for c in text if not c.isprintable()]
    assert not bad, f"unprintable characters written raw: {bad!r}"


@pytest.mark.parametrize("value, written", [v[1:] for v in VALUES], ids=[v[0] for v in VALUES])
def test_key_value_format_escapes_every_value(value, written):
    text = line(KeyValueFormatter(), hostname=value, mac="52:54:00:aa:bb:cc")
    assert_safe(text)
    assert f" hostname={written} mac=52:54:00:aa:bb:cc" in text
    fields = kv_fields(text)
    assert fields["hostname"] == str(value)  # reads back as it was sent
    assert list(fields) == ["ts", "level", "logger", "event", "hostname", "mac"]  # nothing forged


@pytest.mark.parametrize("value", [v[1] for v in VALUES], ids=[v[0] for v in VALUES])
def test_json_format_escapes_every_value(value):
    text = line(JsonFormatter(), hostname=value)
    assert_safe(text)
    assert text.isascii()
    fields = json.loads(text)
    assert fields["hostname"] == (value if isinstance(value, int) else str(value))
    assert fields["event"] == "test.event" and fields["level"] == "info"


@pytest.mark.parametrize("formatter", [KeyValueFormatter(), JsonFormatter()], ids=["kv", "json"])
def test_over_long_values_are_cut_with_a_marker(formatter):
    value = "\x1b" + "A" * (1 << 20)  # a megabyte from the network
    text = line(formatter, hostname=value, mac="52:54:00:aa:bb:cc")
    assert_safe(text)
    read = kv_fields(text)["hostname"] if isinstance(formatter, KeyValueFormatter) else json.loads(text)["hostname"]
    assert read == value[:VALUE_LIMIT] + CUT_MARK.format(len(value))
    assert len(text) < 2 * VALUE_LIMIT
    assert "...(cut: 1048577 characters)" in text  # greppable marker


def test_keys_and_the_event_name_cannot_break_the_line():
    text = line(KeyValueFormatter(), "dhcp.reply\nforged=1", **{"a b=c\n": "x"})
    assert_safe(text)
    assert 'event="dhcp.reply\\nforged=1"' in text and " a_b_c_=x" in text


def test_a_traceback_stays_whole_on_one_line_up_to_its_own_limit():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter())
    logger = logging.getLogger("bootsrv.test_log.failure")
    logger.handlers[:] = [handler]
    logger.propagate = False
    try:
        raise KeyError("x\x1b" * 3000)
    except KeyError:
        failure(logger, "test.failed", mac="52:54:00:aa:bb:cc")
    finally:
        logger.handlers[:] = []
    text = stream.getvalue()[:-1]
    assert "\n" not in text and "\x1b" not in text
    fields = kv_fields(text)
    assert fields["traceback"].startswith("Traceback (most recent call last)")
    assert len(fields["traceback"]) <= TRACEBACK_LIMIT + 40
    assert fields["error"].endswith(CUT_MARK.format(len(repr(KeyError("x\x1b" * 3000)))))
