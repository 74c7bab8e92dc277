"""Table tests of the pure DNS answer over a zone built from a config and store-like hosts."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from dnslib import CLASS, EDNS0, OPCODE, QTYPE, RCODE, DNSLabel, DNSQuestion, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from bootsrv.config import parse
from bootsrv.dns.answer import answer, max_udp_size, truncate
from bootsrv.dns.zone import Host, build_zones, qualify, reverse_name, reverse_zones, valid_hostname

CONFIG = parse(
    """
[server]
name = "boot1"
[dns]
address = "10.20.1.2"
zones = ["lab.example"]
ttl = 120
[[networks]]
name = "public"
subnet = "10.20.1.0/24"
domain = "lab.example"
[[networks]]
name = "backend"
subnet = "10.20.2.0/23"
domain = "be.lab.example"
""",
    "test",
)

HOSTS = [
    Host("hv1", IPv4Address("10.20.1.11"), "public"),
    Host("vm-host1", IPv4Address("10.20.1.50"), "public"),
    Host("vm-host1-be", IPv4Address("10.20.2.50"), "backend"),
    Host("db.lab.example", IPv4Address("10.20.1.60"), None),
    Host("Bad_Name!", IPv4Address("10.20.1.61"), "public"),  # not a host name: never published
]
ZONES = build_zones(CONFIG, HOSTS, serial=7)


def ask(name: str, qtype: str = "A", **kw) -> DNSRecord:
    return answer(DNSRecord.question(name, qtype, **kw), ZONES)


def rdatas(reply: DNSRecord, section: str = "rr") -> list[str]:
    return sorted(str(rr.rdata) for rr in getattr(reply, section))


@pytest.mark.parametrize(
    "name, qtype, rcode, answers",
    [
        ("hv1.lab.example", "A", RCODE.NOERROR, ["10.20.1.11"]),
        ("HV1.Lab.Example.", "A", RCODE.NOERROR, ["10.20.1.11"]),
        ("vm-host1.lab.example", "A", RCODE.NOERROR, ["10.20.1.50"]),
        ("vm-host1-be.be.lab.example", "A", RCODE.NOERROR, ["10.20.2.50"]),
        ("db.lab.example", "A", RCODE.NOERROR, ["10.20.1.60"]),
        ("boot1.lab.example", "A", RCODE.NOERROR, ["10.20.1.2"]),  # our own NS name, from dns.address
        ("11.1.20.10.in-addr.arpa", "PTR", RCODE.NOERROR, ["hv1.lab.example."]),
        ("50.2.20.10.in-addr.arpa", "PTR", RCODE.NOERROR, ["vm-host1-be.be.lab.example."]),
        ("lab.example", "NS", RCODE.NOERROR, ["boot1.lab.example."]),
        ("nosuch.lab.example", "A", RCODE.NXDOMAIN, []),
        ("bad_name!.lab.example", "A", RCODE.NXDOMAIN, []),
        ("99.1.20.10.in-addr.arpa", "PTR", RCODE.NXDOMAIN, []),
        ("hv1.lab.example", "PTR", RCODE.NOERROR, []),  # NODATA: the name exists, not this type
        ("be.lab.example", "A", RCODE.NOERROR, []),  # empty non-terminal (RFC 8020): NODATA
        ("hv1.lab.example", "AAAA", RCODE.NOERROR, []),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else None,
)
def test_answers_inside_the_zone(name, qtype, rcode, answers):
    reply = ask(name, qtype)
    assert reply.header.rcode == rcode
    assert reply.header.aa == 1 and reply.header.ra == 0 and reply.header.qr == 1
    assert rdatas(reply) == answers
    if not answers:
        # RFC 2308: negative answers carry the SOA of the zone, TTL capped by SOA minimum.
        assert [rr.rtype for rr in reply.auth] == [QTYPE.SOA]
        assert reply.auth[0].ttl <= 120


@pytest.mark.parametrize(
    "name, qtype",
    [
        ("example.com", "A"),
        ("www.google.com", "A"),
        ("lab.example.com", "A"),  # shares a suffix string, not a zone
        ("xlab.example", "A"),
        (".", "NS"),
        ("8.8.8.8.in-addr.arpa", "PTR"),
        ("1.3.20.10.in-addr.arpa", "PTR"),  # 10.20.3.x is not one of our subnets' zones... (see below)
    ],
    ids=str,
)
def test_names_outside_our_zones_are_refused(name, qtype):
    if name.startswith("1.3.20.10"):
        # 10.20.2.0/23 covers 10.20.3.0/24 too, so that reverse zone is ours: NXDOMAIN, not REFUSED.
        reply = ask(name, qtype)
        assert reply.header.rcode == RCODE.NXDOMAIN and reply.header.aa == 1
        return
    reply = ask(name, qtype)
    assert reply.header.rcode == RCODE.REFUSED
    assert reply.header.aa == 0 and reply.header.ra == 0
    assert not reply.rr and not reply.auth


def test_soa_at_the_apex():
    reply = ask("lab.example", "SOA")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1
    (soa,) = reply.rr
    assert soa.rtype == QTYPE.SOA
    assert str(soa.rdata.mname) == "boot1.lab.example."
    assert soa.rdata.times[0] == 7


def test_reverse_zone_has_soa_and_ns():
    reply = ask("1.20.10.in-addr.arpa", "SOA")
    assert reply.header.rcode == RCODE.NOERROR and [rr.rtype for rr in reply.rr] == [QTYPE.SOA]
    reply = ask("1.20.10.in-addr.arpa", "NS")
    assert rdatas(reply) == ["boot1.lab.example."]
    assert rdatas(reply, "ar") == ["10.20.1.2"]  # glue


def test_id_rd_and_question_case_are_kept():
    query = DNSRecord.question("Hv1.LAB.example", "A")
    query.header.id = 4242
    reply = answer(query, ZONES)
    assert reply.header.id == 4242 and reply.header.rd == 1
    assert str(reply.rr[0].rname) == "Hv1.LAB.example."
    query.header.rd = 0
    assert answer(query, ZONES).header.rd == 0


def test_any_at_a_host_and_at_the_apex():
    assert rdatas(ask("hv1.lab.example", "ANY")) == ["10.20.1.11"]
    types = sorted(QTYPE.get(rr.rtype) for rr in ask("lab.example", "ANY").rr)
    assert types == ["NS", "SOA"]


@pytest.mark.parametrize(
    "mutate, rcode",
    [
        (lambda q: setattr(q.header, "opcode", OPCODE.UPDATE), RCODE.NOTIMP),
        (lambda q: setattr(q.header, "opcode", OPCODE.STATUS), RCODE.NOTIMP),
        (lambda q: q.questions.clear(), RCODE.FORMERR),
        (lambda q: q.add_question(q.questions[0]), RCODE.FORMERR),
        (lambda q: setattr(q.questions[0], "qclass", CLASS.CS), RCODE.REFUSED),
        (lambda q: setattr(q.questions[0], "qtype", QTYPE.AXFR), RCODE.REFUSED),
        (lambda q: setattr(q.questions[0], "qtype", QTYPE.IXFR), RCODE.REFUSED),
    ],
    ids=["update", "status", "no-question", "two-questions", "chaos-class", "axfr", "ixfr"],
)
def test_unsupported_queries(mutate, rcode):
    query = DNSRecord.question("hv1.lab.example", "A")
    mutate(query)
    reply = answer(query, ZONES)
    assert reply.header.rcode == rcode and not reply.rr


def test_edns_is_echoed_and_sizes_the_udp_limit():
    query = DNSRecord.question("hv1.lab.example", "A")
    assert max_udp_size(query) == 512
    query.add_ar(EDNS0(udp_len=4096))
    reply = answer(query, ZONES)
    assert any(rr.rtype == QTYPE.OPT for rr in reply.ar)
    assert max_udp_size(query) == 1232  # we never promise more than our own payload size


def test_truncation_sets_tc_and_empties_sections():
    many = [Host("multi", IPv4Address(f"10.20.1.{i}"), "public") for i in range(1, 120)]
    zones = build_zones(CONFIG, many, serial=1)
    reply = answer(DNSRecord.question("multi.lab.example", "A"), zones)
    assert len(reply.rr) == 119
    wire = truncate(reply, 512)
    cut = DNSRecord.parse(wire)
    assert cut.header.tc == 1 and not cut.rr and len(wire) <= 512
    assert DNSRecord.parse(truncate(reply, 65535)).header.tc == 0


def test_changed_hosts_change_the_answer():
    moved = build_zones(CONFIG, [Host("hv1", IPv4Address("10.20.1.99"), "public")], serial=8)
    assert rdatas(answer(DNSRecord.question("hv1.lab.example"), moved)) == ["10.20.1.99"]
    assert answer(DNSRecord.question("vm-host1.lab.example"), moved).header.rcode == RCODE.NXDOMAIN


@pytest.mark.parametrize(
    "subnet, zones",
    [
        ("10.20.1.0/24", ["1.20.10.in-addr.arpa"]),
        ("10.20.2.0/23", ["2.20.10.in-addr.arpa", "3.20.10.in-addr.arpa"]),
        ("10.20.1.128/25", ["1.20.10.in-addr.arpa"]),
        ("172.16.0.0/16", ["16.172.in-addr.arpa"]),
        ("10.0.0.0/8", ["10.in-addr.arpa"]),
        ("10.0.0.0/7", ["10.in-addr.arpa", "11.in-addr.arpa"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_reverse_zones_follow_octet_boundaries(subnet, zones):
    assert reverse_zones(IPv4Network(subnet)) == zones


@pytest.mark.parametrize(
    "hostname, domain, fqdn",
    [
        ("vm1", "lab.example", "vm1.lab.example"),
        ("vm1", "be.lab.example", "vm1.be.lab.example"),
        ("vm1", "other.org", "vm1.lab.example"),  # a domain we are not the authority for: first zone
        ("vm1", "", "vm1.lab.example"),
        ("VM1.Lab.Example.", "", "vm1.lab.example"),
        ("vm1.other.org", "", "vm1.other.org.lab.example"),
        ("-bad", "lab.example", None),
        ("a" * 64, "lab.example", None),
        ("under_score", "lab.example", None),
        ("", "lab.example", None),
    ],
    ids=lambda v: str(v)[:20] if isinstance(v, str) else None,
)
def test_qualify(hostname, domain, fqdn):
    assert qualify(hostname, domain, ["lab.example"]) == fqdn


def test_helpers():
    assert reverse_name(IPv4Address("10.20.1.11")) == "11.1.20.10.in-addr.arpa"
    assert valid_hostname("vm-host1-be.lab.example")
    assert not valid_hostname("vm..x")


def test_loopback_listener_gets_no_glue():
    cfg = parse('[server]\nname = "boot1"\n[dns]\naddress = "127.0.0.1"\n', "test")
    zones = build_zones(cfg, [], serial=1)
    reply = answer(DNSRecord.question("lab.example", "NS"), zones)
    assert rdatas(reply) == ["boot1.lab.example."] and not reply.ar
    assert answer(DNSRecord.question("boot1.lab.example"), zones).header.rcode == RCODE.NXDOMAIN


# Any question name and type: an answer with a sane rcode, never an exception; REFUSED exactly
# when the name is outside our zones.

_labels = st.lists(st.binary(min_size=1, max_size=63), min_size=0, max_size=6)
_suffix = st.sampled_from(
    [(), (b"lab", b"example"), (b"be", b"lab", b"example"), (b"1", b"20", b"10", b"in-addr", b"arpa"), (b"com",)]
)


@settings(max_examples=500, deadline=None)
@given(_labels, _suffix, st.integers(0, 65535), st.integers(0, 65535))
def test_any_question_gets_a_sane_answer(labels, suffix, qtype, qclass):
    query = DNSRecord()
    query.add_question(DNSQuestion(DNSLabel(list(labels) + list(suffix)), qtype, qclass))
    reply = answer(query, ZONES)
    assert reply.header.qr == 1 and reply.header.ra == 0
    assert reply.header.rcode in (RCODE.NOERROR, RCODE.NXDOMAIN, RCODE.REFUSED)
    inside = bool(suffix) and suffix != (b"com",)
    if not inside:
        assert reply.header.rcode == RCODE.REFUSED
    elif qclass in (1, 255) and qtype not in (251, 252):
        assert reply.header.rcode != RCODE.REFUSED and reply.header.aa == 1


@pytest.mark.parametrize(
    "labels, rcode",
    [
        ([b"foo.lab", b"example"], RCODE.REFUSED),  # text "foo.lab.example." but zone "example"
        ([b"a.b", b"lab", b"example"], RCODE.NXDOMAIN),  # inside our zone, cannot exist
        ([b"hv1", b"LAB", b"example"], RCODE.NOERROR),
        ([b"hv\xc31", b"lab", b"example"], RCODE.NXDOMAIN),
        ([], RCODE.REFUSED),  # the root
    ],
    ids=["dot-in-label-outside", "dot-in-label-inside", "case", "non-ascii", "root"],
)
def test_zone_membership_is_by_labels(labels, rcode):
    query = DNSRecord()
    query.add_question(DNSQuestion(DNSLabel(labels), QTYPE.A))
    assert answer(query, ZONES).header.rcode == rcode
