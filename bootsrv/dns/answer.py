"""The pure DNS answer: a parsed query and the zone data in, the response out. No sockets.

We are an authority only (RFC 1034 4.3.1): recursion is never offered (RA=0) and a name outside
our zones is REFUSED, so the server cannot be used as an open resolver or an amplifier.
"""

from __future__ import annotations

from dnslib import EDNS0, NS, OPCODE, PTR, QTYPE, RCODE, RR, SOA, A, DNSHeader, DNSQuestion, DNSRecord

from bootsrv.dns.zone import Apex, ZoneData, normalize

CLASS_IN, CLASS_ANY = 1, 255  # RFC 1035 3.2.4 and 3.2.5 (dnslib names ANY "*")

# Answers we give over UDP to a client that did not say more with EDNS (RFC 1035 4.2.1).
CLASSIC_UDP = 512
# Our advertised EDNS payload size (DNS flag day 2020: avoids IP fragmentation).
EDNS_PAYLOAD = 1232

_TRANSFERS = {QTYPE.AXFR, QTYPE.IXFR}


def _header(query: DNSRecord, rcode: int, aa: bool) -> DNSHeader:
    # RFC 1035 4.1.1: ID and RD are copied from the query; RA stays 0: no recursion here.
    return DNSHeader(
        id=query.header.id, qr=1, opcode=query.header.opcode, aa=int(aa), ra=0, rd=query.header.rd, rcode=rcode
    )


def _edns(query: DNSRecord) -> EDNS0 | None:
    # RFC 6891 7: a responder that understands EDNS includes an OPT record if the query had one.
    if any(rr.rtype == QTYPE.OPT for rr in query.ar):
        return EDNS0(udp_len=EDNS_PAYLOAD)
    return None


def max_udp_size(query: DNSRecord) -> int:
    """The largest UDP response this client accepts (RFC 6891 6.2.5: at least 512)."""
    for rr in query.ar:
        if rr.rtype == QTYPE.OPT:
            return max(CLASSIC_UDP, min(int(rr.rclass), EDNS_PAYLOAD))
    return CLASSIC_UDP


def error(query: DNSRecord, rcode: int) -> DNSRecord:
    """A response with only the header (and question, when there is exactly one) and `rcode`."""
    reply = DNSRecord(_header(query, rcode, aa=False))
    if len(query.questions) == 1:
        reply.add_question(query.questions[0])
    opt = _edns(query)
    if opt is not None:
        reply.add_ar(opt)
    return reply


def _soa(apex: Apex, ttl: int, owner=None) -> RR:
    return RR(
        owner or apex.origin + ".",
        QTYPE.SOA,
        ttl=ttl,
        rdata=SOA(
            apex.mname + ".", apex.rname + ".", (apex.serial, apex.refresh, apex.retry, apex.expire, apex.minimum)
        ),
    )


def answer(query: DNSRecord, zones: ZoneData) -> DNSRecord:
    """The authoritative response to `query` (already parsed) from `zones`."""
    if query.header.opcode != OPCODE.QUERY:
        return error(query, RCODE.NOTIMP)  # RFC 1035 4.1.1: only standard queries
    if len(query.questions) != 1:
        return error(query, RCODE.FORMERR)  # RFC 9619: QDCOUNT must be 1
    question: DNSQuestion = query.questions[0]
    labels = tuple(label.lower() for label in question.qname.label)
    apex = zones.zone_of_labels(labels)
    # Our names are host names (letters, digits, hyphen): a name with a dot inside a label or
    # bytes outside ASCII exists nowhere in our zones, whatever its text form looks like.
    if all(b"." not in label and label.isascii() for label in labels):
        qname = normalize(b".".join(labels).decode("ascii"))
    else:
        qname = ""
    if apex is None or question.qclass not in (CLASS_IN, CLASS_ANY):
        return error(query, RCODE.REFUSED)  # not our zone: we are nobody's resolver
    if question.qtype in _TRANSFERS:
        return error(query, RCODE.REFUSED)  # zone transfers are not offered

    owner = question.qname  # keep the client's spelling (0x20 case randomisation relies on it)
    ttl = zones.ttl
    records: list[RR] = []
    qtype = question.qtype

    def want(t: int) -> bool:
        return qtype == t or qtype == QTYPE.ANY

    if qname and qname == apex.origin:
        if want(QTYPE.SOA):
            records.append(_soa(apex, ttl, owner))
        if want(QTYPE.NS):
            records += [RR(owner, QTYPE.NS, ttl=ttl, rdata=NS(ns + ".")) for ns in zones.ns_names]
    if want(QTYPE.A):
        records += [RR(owner, QTYPE.A, ttl=ttl, rdata=A(str(ip))) for ip in zones.addresses.get(qname, ())]
    if want(QTYPE.PTR):
        records += [RR(owner, QTYPE.PTR, ttl=ttl, rdata=PTR(name + ".")) for name in zones.pointers.get(qname, ())]

    exists = bool(qname) and qname in zones.nodes
    reply = DNSRecord(_header(query, RCODE.NOERROR if exists else RCODE.NXDOMAIN, aa=True))
    reply.add_question(question)
    for rr in records:
        reply.add_answer(rr)
    if not records:
        # RFC 2308 3: NXDOMAIN and NODATA carry the zone's SOA in the authority section, with
        # the TTL capped by SOA MINIMUM so resolvers know how long to cache the negative answer.
        reply.add_auth(_soa(apex, min(ttl, apex.minimum)))
    elif any(rr.rtype == QTYPE.NS for rr in records):
        for ns in zones.ns_names:  # glue for our own name servers (RFC 1034 4.3.2 step 3)
            reply.add_ar(*[RR(ns + ".", QTYPE.A, ttl=ttl, rdata=A(str(ip))) for ip in zones.addresses.get(ns, ())])
    opt = _edns(query)
    if opt is not None:
        reply.add_ar(opt)
    return reply


def truncate(reply: DNSRecord, limit: int) -> bytes:
    """The wire form of `reply`, or with TC set and the sections emptied when it exceeds `limit`
    bytes over UDP (RFC 2181 9: the client then retries over TCP)."""
    wire = reply.pack()
    if len(wire) <= limit:
        return wire
    header = reply.header
    cut = DNSRecord(
        DNSHeader(id=header.id, qr=1, opcode=header.opcode, aa=header.aa, tc=1, ra=0, rd=header.rd, rcode=header.rcode),
        questions=list(reply.questions),
    )
    for rr in reply.ar:
        if rr.rtype == QTYPE.OPT:
            cut.add_ar(rr)
    return cut.pack()
