"""The DNS edge: bytes in, bytes or silence out; the zone cache follows its source; real sockets
on loopback (UDP and TCP)."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address

import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from bootsrv.app.dns import store_hosts
from bootsrv.config import parse
from bootsrv.dns.server import DnsServer, ZoneCache, respond
from bootsrv.dns.zone import Host, build_zones

CONFIG = parse(
    """
[server]
rescan_interval = 5
[dns]
zones = ["lab.example"]
[[networks]]
name = "public"
subnet = "10.30.0.0/24"
domain = "lab.example"
""",
    "test",
)
ZONES = build_zones(CONFIG, [Host("hv1", IPv4Address("10.30.0.11"), "public")], serial=1)
QUERY = DNSRecord.question("hv1.lab.example", "A").pack()


def _check_response(wire: bytes, out: bytes | None) -> None:
    if out is None:
        return
    reply = DNSRecord.parse(out)  # whatever we send must itself be a well-formed message
    assert reply.header.qr == 1 and reply.header.ra == 0
    assert reply.header.id == struct.unpack("!H", wire[:2])[0]
    assert len(out) <= 512


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash(wire):
    _check_response(wire, respond(wire, ZONES))


@settings(max_examples=1000, deadline=None)
@given(st.data())
def test_mutated_queries_never_crash(data):
    wire = bytearray(QUERY)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(wire) - 1))
        wire[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    wire = bytes(wire[:cut]) + data.draw(st.binary(max_size=8))
    _check_response(wire, respond(wire, ZONES))


@pytest.mark.parametrize(
    "wire, expect",
    [
        (b"", None),
        (b"\x12\x34\x01", None),  # shorter than a header: nothing to answer to
        (QUERY[:2] + b"\x81\x80" + QUERY[4:], None),  # a response (QR=1): never answered
        (b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05hv1", RCODE.FORMERR),  # name runs off the end
        (b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01", RCODE.FORMERR),  # pointer loop
    ],
    ids=["empty", "short", "response", "truncated-name", "pointer-loop"],
)
def test_malformed_messages(wire, expect):
    out = respond(wire, ZONES)
    if expect is None:
        assert out is None
    else:
        reply = DNSRecord.parse(out)
        assert reply.header.rcode == expect and reply.header.id == 0xABCD and reply.header.qr == 1


def test_zone_cache_follows_its_source_after_max_age():
    now = [1000.0]
    hosts = [Host("hv1", IPv4Address("10.30.0.11"), "public")]
    cache = ZoneCache(CONFIG, lambda: list(hosts), clock=lambda: now[0])
    first = cache.current()
    assert first.addresses["hv1.lab.example"] == (IPv4Address("10.30.0.11"),)
    hosts[0] = Host("hv1", IPv4Address("10.30.0.12"), "public")
    now[0] += 4.9
    assert cache.current() is first  # within the rescan interval: cached
    now[0] += 0.2
    second = cache.current()
    assert second.addresses["hv1.lab.example"] == (IPv4Address("10.30.0.12"),)
    assert second.apexes["lab.example"].serial > first.apexes["lab.example"].serial
    now[0] += 10
    assert cache.current().apexes["lab.example"].serial == second.apexes["lab.example"].serial  # unchanged


def test_zone_cache_keeps_the_last_view_when_the_source_fails():
    now = [0.0]
    state = {"fail": False}

    def source():
        if state["fail"]:
            raise OSError("store unreadable")
        return [Host("hv1", IPv4Address("10.30.0.11"), "public")]

    cache = ZoneCache(CONFIG, source, clock=lambda: now[0], max_age=1)
    good = cache.current()
    state["fail"] = True
    now[0] += 2
    assert cache.current() is good


class _Rec:
    def __init__(self, hostname, ip, network):
        self.hostname, self.ip, self.network = hostname, ip, network


def test_store_hosts_takes_records_with_a_hostname():
    recs = [
        _Rec("hv1", IPv4Address("10.30.0.11"), "public"),
        _Rec("", IPv4Address("10.30.0.12"), "public"),
        _Rec(None, IPv4Address("10.30.0.13"), "public"),
    ]
    assert store_hosts(lambda: recs)() == [Host("hv1", IPv4Address("10.30.0.11"), "public")]


def test_udp_and_tcp_on_loopback():
    cache = ZoneCache(CONFIG, lambda: [Host("hv1", IPv4Address("10.30.0.11"), "public")])
    server = DnsServer("127.0.0.1", 0, cache)
    server.start()
    try:
        reply = DNSRecord.parse(DNSRecord.question("hv1.lab.example").send("127.0.0.1", server.port, timeout=2))
        assert [str(rr.rdata) for rr in reply.rr] == ["10.30.0.11"] and reply.header.aa == 1
        reply = DNSRecord.parse(DNSRecord.question("example.com").send("127.0.0.1", server.port, timeout=2))
        assert reply.header.rcode == RCODE.REFUSED
        # TCP, two queries on one connection (RFC 7766 6.2.1).
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as conn:
            for name, qtype in (("lab.example", "SOA"), ("0.30.10.in-addr.arpa", "NS")):
                q = DNSRecord.question(name, qtype).pack()
                conn.sendall(struct.pack("!H", len(q)) + q)
                size = struct.unpack("!H", conn.recv(2))[0]
                data = b""
                while len(data) < size:
                    data += conn.recv(size - len(data))
                reply = DNSRecord.parse(data)
                assert reply.header.rcode == RCODE.NOERROR and reply.rr[0].rtype == getattr(QTYPE, qtype)
        # Garbage over UDP does not stop the server.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"\x00" * 5, ("127.0.0.1", server.port))
        reply = DNSRecord.parse(DNSRecord.question("hv1.lab.example").send("127.0.0.1", server.port, timeout=2))
        assert reply.header.rcode == RCODE.NOERROR
    finally:
        server.stop()
