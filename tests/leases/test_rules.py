"""The record rules (bootsrv.leases.rules) as one named table, and the same table through every
way a record enters the store: the store's writes (load, modify), a handle reading its own
files, and a SUNWfiles import. A value one way refuses, no other way lets in."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address as IP
from ipaddress import IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootsrv.errors import InvalidInput
from bootsrv.leases import Flag, Pool, Record
from bootsrv.leases.codec import decode, encode
from bootsrv.leases.files import FileStore
from bootsrv.leases.memory import MemoryStore
from bootsrv.leases.model import NEVER, evolve
from bootsrv.leases.rules import (
    EXPIRY_LAST,
    TableRules,
    broken,
    check,
    normalize_client_id,
    normalize_hostname,
)
from bootsrv.leases.sunwfiles import parse
from tests.leases.conftest import POOLS, A

PUBLIC = POOLS["public"]  # 10.0.0.0/24
GOOD = Record(
    "public", IP("10.0.0.60"), "01525400AABBCC", Flag.MANUAL | Flag.PERMANENT, A, NEVER, 0, "pxe", "vm1", "rack 4"
)

# The ways in that a case's values can take (a text format cannot carry a wrong Python type).
STORE, FILES, SUNW = "store", "files", "sunwfiles"
ALL = frozenset({STORE, FILES, SUNW})


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    changes: dict
    field: str
    words: str  # in the rule's text
    ways: frozenset = ALL


BROKEN = [
    Case("ip-outside-its-network", {"ip": IP("10.9.0.1")}, "ip", "10.9.0.1 is outside network 'public'"),
    Case("ip-broadcast", {"ip": IP("10.0.0.255")}, "ip", "network or broadcast address"),
    Case("ip-network-address", {"ip": IP("10.0.0.0")}, "ip", "network or broadcast address"),
    Case("ip-not-an-address", {"ip": "10.0.0.600"}, "ip", "not an IPv4 address"),
    Case("client-id-odd-length", {"client_id": "01A"}, "client_id", "not upper-case hex octets"),
    Case("client-id-lower-case", {"client_id": "01aabb"}, "client_id", "not upper-case hex octets", ALL - {SUNW}),
    Case("client-id-not-hex", {"client_id": "XYZW"}, "client_id", "not upper-case hex octets"),
    Case("client-id-with-a-newline", {"client_id": "01AA\x1b"}, "client_id", "not upper-case hex octets"),
    Case("client-id-00-means-nobody", {"client_id": "00"}, "client_id", "means no client", {STORE}),
    Case("client-id-256-octets", {"client_id": "01" * 256}, "client_id", "256 octets, at most 255 (RFC 2132 9.14)"),
    Case("client-id-a-megabyte", {"client_id": "AB" * (1 << 19)}, "client_id", "524288 octets, at most 255"),
    Case("flags-16", {"flags": Flag(16)}, "flags", "not a sum of 0 DYNAMIC"),
    Case("flags-not-a-flag", {"flags": 3}, "flags", "not a sum of 0 DYNAMIC", {STORE}),
    Case("owner-not-an-address", {"owner": "10.0.0.1"}, "owner", "not an IPv4 address", {STORE}),
    Case("owner-text", {"owner": "server"}, "owner", "not an IPv4 address"),
    Case("expiry-300-digits", {"expiry": 10**300 - 1}, "expiry", "(300 characters) is not Unix seconds"),
    Case("expiry-after-year-9999", {"expiry": EXPIRY_LAST + 1}, "expiry", "up to 253402300799"),
    Case("expiry-minus-2", {"expiry": -2}, "expiry", "-1 never or 0 none"),
    Case("expiry-a-fraction", {"expiry": 1.5}, "expiry", "is not Unix seconds"),
    Case("signature-65-bits", {"signature": 1 << 64}, "signature", "not an unsigned 64-bit number"),
    Case("signature-negative", {"signature": -5}, "signature", "not an unsigned 64-bit number"),
    Case("macro-with-a-space", {"macro": "bad macro"}, "macro", "is not a macro name"),
    Case("macro-65-characters", {"macro": "m" * 65}, "macro", "at most 64"),
    Case("macro-with-esc", {"macro": "pxe\x1b[2J"}, "macro", "is not a macro name"),
    Case("comment-a-megabyte", {"comment": "x" * (1 << 20)}, "comment", "1048576 characters, at most 1024"),
    Case("comment-1025-characters", {"comment": "é" * 1025}, "comment", "1025 characters, at most 1024"),
    Case("comment-newline", {"comment": "a\nts=0 forged"}, "comment", "unprintable character '\\n'", {STORE, FILES}),
    Case("comment-carriage-return", {"comment": "a\rb"}, "comment", "unprintable character '\\r'"),
    Case("comment-esc-sequence", {"comment": "\x1b[31mred"}, "comment", "unprintable character '\\x1b'"),
    Case("comment-nul", {"comment": "a\x00b"}, "comment", "unprintable character '\\x00'"),
    Case("comment-tab", {"comment": "a\tb"}, "comment", "unprintable character '\\t'"),
    Case("comment-del", {"comment": "a\x7fb"}, "comment", "unprintable character '\\x7f'"),
    Case("comment-c1-nel", {"comment": "a\x85b"}, "comment", "unprintable character '\\x85'"),
    Case("comment-c1-csi", {"comment": "a\x9b2Jb"}, "comment", "unprintable character '\\x9b'"),
    Case("comment-file-separator", {"comment": "a\x1cb"}, "comment", "unprintable character '\\x1c'"),
    Case("comment-line-separator", {"comment": "a\u2028b"}, "comment", "unprintable character '\\u2028'"),
    Case("comment-bidi-override", {"comment": "pay\u202etxt.exe"}, "comment", "unprintable character '\\u202e'"),
    Case("hostname-upper-case", {"hostname": "VM1"}, "hostname", "not a lower-case host name", {STORE, FILES}),
    Case("hostname-underscore", {"hostname": "bad_name"}, "hostname", "not a lower-case host name", {STORE, FILES}),
    Case("hostname-label-64", {"hostname": "a" * 64}, "hostname", "not a lower-case host name", {STORE, FILES}),
    Case("hostname-254", {"hostname": ("a" * 50 + ".") * 5 + "abc"}, "hostname", "253 at most", {STORE, FILES}),
    Case("hostname-esc", {"hostname": "vm\x1b[8m"}, "hostname", "not a lower-case host name", {STORE, FILES}),
    Case("hostname-trailing-dot", {"hostname": "vm1."}, "hostname", "not a lower-case host name", {STORE, FILES}),
    # A store looks a record's rules up by its network: only a table read into the wrong pool has this.
    Case("network-of-another-table", {"network": "backend"}, "network", "is not this table's network", frozenset()),
]

OBEYED = {
    "a-binding": {},
    "a-free-address": dict(client_id="", flags=Flag.DYNAMIC, expiry=0, macro="", hostname="", comment=""),
    "a-lease": dict(flags=Flag.DYNAMIC, expiry=1_700_003_600, signature=3222029062434661509),
    "client-id-255-octets": dict(client_id="01" * 255),
    "client-id-one-octet": dict(client_id="01"),
    "expiry-last-second-of-9999": dict(expiry=EXPIRY_LAST),
    "signature-largest": dict(signature=(1 << 64) - 1),
    "every-flag": dict(flags=Flag(15)),
    "macro-64": dict(macro="M._-" * 16),
    "comment-1024-of-any-script": dict(comment=("é 東京 ✓ " * 200)[:1024]),
    "comment-with-bars-and-backslashes": dict(comment="a | b \\ c"),
    "hostname-253": dict(hostname=("a" * 63 + ".") * 3 + "a" * 61),
    "hostname-qualified": dict(hostname="vm1.lab.example"),
    "owner-nobody": dict(owner=IP(0)),
}


def bad_record(case: Case) -> Record:
    return dataclasses.replace(GOOD, **case.changes)


@pytest.mark.parametrize("case", BROKEN, ids=lambda c: c.id)
def test_rule_table(case):
    found = broken(bad_record(case), PUBLIC)
    assert found is not None and found.field == case.field, found
    assert case.words in found.rule
    assert len(found.rule) < 200  # a megabyte value is not repeated in the message
    # The fast path a handle uses on every line of its files agrees, reason and all.
    assert TableRules(PUBLIC).broken(bad_record(case)) == found
    with pytest.raises(InvalidInput) as info:
        check(bad_record(case), PUBLIC, "where:7")
    assert str(info.value).startswith(f"where:7: {case.field}: ")


@pytest.mark.parametrize("changes", OBEYED.values(), ids=OBEYED.keys())
def test_records_that_obey_every_rule(changes):
    rec = dataclasses.replace(GOOD, **changes)
    assert broken(rec, PUBLIC) is None
    assert TableRules(PUBLIC).broken(rec) is None
    assert check(rec, PUBLIC) is rec


def test_a_31_bit_network_has_no_broadcast_address():
    # RFC 3021: both addresses of a /31 are hosts'.
    pool = Pool("p2p", IPv4Network("10.2.0.0/31"))
    for ip in ("10.2.0.0", "10.2.0.1"):
        rec = Record("p2p", IP(ip), "01AA")
        assert broken(rec, pool) is None and TableRules(pool).broken(rec) is None


# The fast path (TableRules) against the walk over RULES on records made of good and bad values.
FIELD_VALUES = {
    "ip": st.sampled_from([IP("10.0.0.60"), IP("10.0.0.0"), IP("10.0.0.255"), IP("10.0.1.1"), "10.0.0.60"]),
    "client_id": st.one_of(st.sampled_from(["", "00", "01AA", "01aa", "0" * 510, "0" * 512]), st.text(max_size=8)),
    "flags": st.sampled_from([Flag(0), Flag(15), Flag(16), 3]),
    "owner": st.sampled_from([A, IP(0), "10.0.0.1"]),
    "expiry": st.one_of(st.integers(-3, 2), st.integers(EXPIRY_LAST - 1, EXPIRY_LAST + 1), st.just(10**300)),
    "signature": st.sampled_from([0, 1, (1 << 64) - 1, 1 << 64, -1]),
    "macro": st.one_of(st.sampled_from(["", "pxe", "m" * 64, "m" * 65]), st.text(max_size=6)),
    "comment": st.one_of(st.text(max_size=12), st.just("x" * 1025)),
    "hostname": st.one_of(st.sampled_from(["", "vm1", "a" * 64, "a.b"]), st.text(max_size=8)),
    "network": st.sampled_from(["public", "backend"]),
}


@settings(max_examples=1000, deadline=None)
@given(st.fixed_dictionaries(FIELD_VALUES))
def test_the_fast_path_and_the_rule_walk_agree(values):
    rec = dataclasses.replace(GOOD, **values)
    assert TableRules(PUBLIC).broken(rec) == broken(rec, PUBLIC)


@pytest.mark.parametrize(
    "value, out",
    [("52:54:00:AA:bb:cc", "01525400AABBCC"), ("52-54-00-aa-bb-cc", "01525400AABBCC"), (" 01aa ", "01AA")],
)
def test_client_ids_are_normalized(value, out):
    assert normalize_client_id(value) == out


@pytest.mark.parametrize(
    "value, words",
    [
        ("zz", "'zz' is not a client id"),
        ("", "is not a client id"),
        ("00", "means no client"),
        ("01" * 256, "256 octets, at most 255"),
        ("01\x1b", "'01\\x1b' is not a client id"),
    ],
    ids=["not-hex", "empty", "nobody", "too-long", "control-character"],
)
def test_client_ids_refused(value, words):
    with pytest.raises(InvalidInput, match="client_id") as info:
        normalize_client_id(value)
    assert words in info.value.rule


def test_hostnames_are_normalized_or_refused():
    assert normalize_hostname(" VM1.Lab.Example. ") == "vm1.lab.example"
    assert normalize_hostname("") == ""
    with pytest.raises(InvalidInput, match="hostname"):
        normalize_hostname("vm\x1b1")


# ---- every way in ------------------------------------------------------------------------------
def _stores(tmp_path):
    return {
        "memory": lambda: MemoryStore(POOLS, (A,)),
        "file": lambda: FileStore(tmp_path / "store", POOLS, (A,)),
    }


MODIFIABLE = {"client_id", "flags", "owner", "expiry", "macro", "hostname", "comment"}
NORMALIZED = {
    "client-id-lower-case",
    "flags-not-a-flag",
    "owner-not-an-address",
    "hostname-upper-case",
    "hostname-trailing-dot",
}


@pytest.mark.parametrize("kind", ["memory", "file"])
@pytest.mark.parametrize("case", [c for c in BROKEN if STORE in c.ways], ids=lambda c: c.id)
def test_store_writes_refuse_and_write_nothing(tmp_path, kind, case):
    store = _stores(tmp_path)[kind]()
    try:
        before = store.records()
        with pytest.raises(InvalidInput) as info:
            store.load([bad_record(case)])  # `lease import`'s write
        assert info.value.field.endswith(case.field) and case.words in info.value.rule
        assert store.records() == before
        if case.field in MODIFIABLE:  # `lease modify`'s write, on a record that is there
            store.load([GOOD])
            held = store.records()
            try:
                store.modify("public", GOOD.ip, **case.changes)
            except InvalidInput as exc:
                assert exc.field == case.field
                assert store.records() == held
            else:  # modify normalizes what has one meaning (01aa, VM1, 3, "10.0.0.1"): the rules hold
                assert case.id in NORMALIZED
                assert [broken(r, PUBLIC) for r in store.records()] == [None]
    finally:
        store.close()


@pytest.mark.parametrize("case", [c for c in BROKEN if FILES in c.ways], ids=lambda c: c.id)
def test_a_line_that_passes_its_checksum_but_breaks_a_rule_is_skipped_and_reported(tmp_path, case):
    store = FileStore(tmp_path / "store", POOLS, (A,))
    stored = store.bind("public", GOOD.ip, GOOD.client_id, GOOD.hostname, macro="pxe", comment="rack 4")
    store.close()
    # What another writer (an older bootsrv, an editor keeping the checksum right) appended.
    bad = bad_record(case)
    line = encode(bad if case.field == "signature" else evolve(bad, signature=7))
    with (tmp_path / "store" / "leases.public").open("ab") as fh:
        fh.write(line)
    fresh = FileStore(tmp_path / "store", POOLS, (A,))
    try:
        assert fresh.records() == [stored]  # never served; the older line for the address stands
        (problem,) = fresh.problems
        assert "line skipped" in problem
        try:
            _ip, decoded = decode("public", line.rstrip(b"\n"))
        except ValueError:
            pass  # the codec refuses it already (a field it cannot even read)
        else:
            assert f"{case.field}: " in problem and case.words in problem, problem
    finally:
        fresh.close()


SUNW_FIELDS = {"ip": "client_ip", "owner": "server_ip", "expiry": "lease"}


def sunw_line(rec: Record) -> str:
    return (
        f"{rec.ip}|{rec.client_id or '00'}|{int(rec.flags):02d}|{rec.owner}|{rec.expiry}|{rec.signature}|"
        f"{rec.macro}|{rec.comment}"
    )


@pytest.mark.parametrize("case", [c for c in BROKEN if SUNW in c.ways], ids=lambda c: c.id)
def test_sunwfiles_import_refuses_naming_file_line_and_field(case):
    table = f"# SUNWfiles1_10_0_0_0\n{sunw_line(GOOD)}\n{sunw_line(bad_record(case))}\n"
    with pytest.raises(InvalidInput) as info:
        parse(table, PUBLIC, source="SUNWfiles1_10_0_0_0")
    assert info.value.field == f"SUNWfiles1_10_0_0_0:3: {SUNW_FIELDS.get(case.field, case.field)}"
    assert len(info.value.rule) < 200


@pytest.mark.parametrize(
    "line, field",
    [
        ("10.0.0.9|01AA|0_3|10.0.0.1|0|0|m|", "flags"),  # int() takes underscores
        ("10.0.0.9|01AA|٣|10.0.0.1|0|0|m|", "flags"),  # and other scripts' digits
        ("10.0.0.9|01AA|00|10.0.0.1|1_700_000_000|0|m|", "lease"),
        ("10.0.0.9|01AA|00|10.0.0.1|" + "9" * 5000 + "|0|m|", "lease"),  # beyond int()'s digit limit
        ("10.0.0.9|01AA|00|10.0.0.1|0|18446744073709551616|m|", "signature"),
    ],
    ids=["flags-underscore", "flags-arabic-indic-digit", "lease-underscores", "lease-5000-digits", "signature-2-64"],
)
def test_sunwfiles_numbers_are_ascii_decimal(line, field):
    with pytest.raises(InvalidInput) as info:
        parse(line + "\n", PUBLIC, source="t")
    assert info.value.field == f"t:1: {field}"


def test_sunwfiles_lines_end_at_lf_only():
    # str.splitlines() would end a line at FS (0x1c): the comment rule must see it.
    with pytest.raises(InvalidInput, match="comment"):
        parse("10.0.0.9|01AA|00|10.0.0.1|0|0|m|a\x1cb\n", PUBLIC, source="t")
    (rec,) = parse("10.0.0.9|01AA|00|10.0.0.1|0|0|m|crlf\r\n", PUBLIC, source="t")
    assert rec.comment == "crlf"
