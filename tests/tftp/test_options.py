"""Option negotiation (RFC 2347-2349, 7440) as a table: what the client asks -> OACK and settings."""

from __future__ import annotations

import pytest

from bootsrv.tftp.options import negotiate

SIZE = 123456

# (id, asked, expected OACK, expected (blksize, timeout, windowsize), ignored names)
CASES = [
    ("nothing asked: no OACK", {}, {}, (512, 1.0, 1), []),
    ("blksize 1468", {"blksize": "1468"}, {"blksize": "1468"}, (1468, 1.0, 1), []),
    ("blksize min 8", {"blksize": "8"}, {"blksize": "8"}, (8, 1.0, 1), []),
    ("blksize max 65464", {"blksize": "65464"}, {"blksize": "65464"}, (65464, 1.0, 1), []),
    ("blksize 65465 ignored", {"blksize": "65465"}, {}, (512, 1.0, 1), ["blksize"]),
    ("blksize 7 ignored", {"blksize": "7"}, {}, (512, 1.0, 1), ["blksize"]),
    ("blksize non-number ignored", {"blksize": "big"}, {}, (512, 1.0, 1), ["blksize"]),
    ("blksize hex ignored", {"blksize": "0x5bc"}, {}, (512, 1.0, 1), ["blksize"]),
    ("blksize signed ignored", {"blksize": "+1468"}, {}, (512, 1.0, 1), ["blksize"]),
    ("blksize empty ignored", {"blksize": ""}, {}, (512, 1.0, 1), ["blksize"]),
    ("tsize 0 answered with size", {"tsize": "0"}, {"tsize": str(SIZE)}, (512, 1.0, 1), []),
    ("tsize bogus ignored", {"tsize": "x"}, {}, (512, 1.0, 1), ["tsize"]),
    ("timeout 5", {"timeout": "5"}, {"timeout": "5"}, (512, 5.0, 1), []),
    ("timeout 0 ignored", {"timeout": "0"}, {}, (512, 1.0, 1), ["timeout"]),
    ("timeout 256 ignored", {"timeout": "256"}, {}, (512, 1.0, 1), ["timeout"]),
    ("windowsize 16", {"windowsize": "16"}, {"windowsize": "16"}, (512, 1.0, 16), []),
    ("windowsize capped at 64", {"windowsize": "1000"}, {"windowsize": "64"}, (512, 1.0, 64), []),
    ("windowsize 0 ignored", {"windowsize": "0"}, {}, (512, 1.0, 1), ["windowsize"]),
    ("windowsize 65536 ignored", {"windowsize": "65536"}, {}, (512, 1.0, 1), ["windowsize"]),
    # window * blksize stays under 1 MiB, whatever order the options come in
    (
        "windowsize before big blksize",
        {"windowsize": "64", "blksize": "65464"},
        {"windowsize": "16", "blksize": "65464"},
        (65464, 1.0, 16),
        [],
    ),
    ("unknown option ignored", {"multicast": "", "utimeout": "1000"}, {}, (512, 1.0, 1), ["multicast", "utimeout"]),
    (
        "client spelling kept",
        {"BLKSIZE": "1024", "TSize": "0"},
        {"BLKSIZE": "1024", "TSize": str(SIZE)},
        (1024, 1.0, 1),
        [],
    ),
    (
        "asked twice: first wins",
        {"blksize": "1024", "BlkSize": "2048"},
        {"blksize": "1024"},
        (1024, 1.0, 1),
        ["BlkSize"],
    ),
    ("UEFI probe", {"tsize": "0", "blksize": "1468"}, {"tsize": str(SIZE), "blksize": "1468"}, (1468, 1.0, 1), []),
    (
        "all",
        {"blksize": "1468", "tsize": "0", "timeout": "3", "windowsize": "16"},
        {"blksize": "1468", "tsize": str(SIZE), "timeout": "3", "windowsize": "16"},
        (1468, 3.0, 16),
        [],
    ),
]


@pytest.mark.parametrize("asked,oack,settings,ignored", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_negotiate(asked, oack, settings, ignored):
    got = negotiate(asked, SIZE)
    assert got.oack == oack
    assert list(got.oack) == list(oack)  # the client's order
    assert (got.blksize, got.timeout, got.windowsize) == settings
    assert sorted(got.ignored) == sorted(ignored)


def test_tsize_unknown_size_not_offered():
    got = negotiate({"tsize": "0"}, None)
    assert got.oack == {} and "tsize" in got.ignored


def test_oack_never_has_unasked_blksize():
    # stock tftpy adds blksize to every OACK; strict UEFI clients abort on an option they did not send
    assert "blksize" not in negotiate({"tsize": "0"}, SIZE).oack
