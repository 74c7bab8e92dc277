"""Solaris SUNWfiles dhcp_network tables, read and written (pure: text in, records out).

A site migrating from Solaris in.dhcpd brings one table per network, named after the network
address (`SUNWfiles1_10_0_0_0` for 10.0.0.0), as the files module of libdhcpsvc writes it and
pntadm(1M) maintains it: comment lines starting with '#', then one record per line in
dhcp_network(4) order:

    client_ip|client_id|flags|server_ip|lease|signature|macro|comment
    10.0.0.5|01080020C2A5E3|00|10.0.0.1|1054838493|4190127648727482369|inet11|
    10.0.0.6|00|00|10.0.0.1|0|0|inet11|

client_id "00" is an address nobody holds; flags are the decimal sum of DYNAMIC 0, PERMANENT 1,
MANUAL 2, UNUSABLE 4, BOOTP 8; lease is the expiry in Unix seconds, -1 for "never"; server_ip is
the owning server (OWNER_IP). The comment is the rest of the line. Solaris keeps host names in the
hosts table, not here, so imported records have none (add them with `bootsrv lease modify`).
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network

from bootsrv.errors import InvalidInput
from bootsrv.leases import rules
from bootsrv.leases.model import Flag, Pool, Record

NAME = re.compile(r"^SUNWfiles1_(\d{1,3})_(\d{1,3})_(\d{1,3})_(\d{1,3})$")


def table_name(subnet: IPv4Network) -> str:
    return "SUNWfiles1_" + str(subnet.network_address).replace(".", "_")


def network_address_of(file_name: str) -> IPv4Address | None:
    """The network a table is named after (SUNWfiles1_10_0_0_0 -> 10.0.0.0), or None."""
    m = NAME.match(file_name)
    if not m:
        return None
    try:
        return IPv4Address(".".join(m.groups()))
    except ValueError:
        return None


def parse(text: str, pool: Pool, source: str = "table") -> list[Record]:
    """Every record of a table for `pool`'s network; InvalidInput names the line and the field of
    the first bad one (`source:line: field: rule`, nothing is returned then, so nothing gets
    half-imported). Each record is held to the store's rules (bootsrv.leases.rules), the same as
    `lease add` and the store's own files."""
    records: list[Record] = []
    seen: dict[IPv4Address, int] = {}
    # Lines end at LF only (CRLF tolerated): str.splitlines() would also cut at the control
    # characters FS, GS, RS, NEL and U+2028, hiding them from the comment's rule.
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{source}:{number}"
        rec = _record(line, pool, where)
        if rec.ip in seen:
            raise InvalidInput(f"{where}: client_ip", f"{rec.ip} already on line {seen[rec.ip]}")
        seen[rec.ip] = number
        records.append(rec)
    return records


def _record(line: str, pool: Pool, where: str) -> Record:
    """One line's record (every field checked), or InvalidInput naming `where` and the field."""

    def bad(field: str, rule: str) -> InvalidInput:
        return InvalidInput(f"{where}: {field}", rule)

    fields = line.split("|", 7)
    if len(fields) != 8:
        raise bad(
            "record",
            f"{len(fields)} fields; expected client_ip|client_id|flags|server_ip|lease|signature|macro|comment",
        )
    client_ip, client_id, flags, server_ip, lease, signature, macro, comment = fields
    try:
        ip = IPv4Address(client_ip.strip())
    except ValueError:
        raise bad("client_ip", f"{rules.shown(client_ip)} is not an IPv4 address") from None
    client_id = client_id.strip().upper()
    if client_id == rules.NO_CLIENT:
        client_id = ""
    if not re.fullmatch(r"[0-9]{1,2}", flags.strip()) or int(flags) > 15:
        raise bad(
            "flags", f"{rules.shown(flags)} is not a sum of 0 DYNAMIC, 1 PERMANENT, 2 MANUAL, 4 UNUSABLE, 8 BOOTP"
        )
    try:
        owner = IPv4Address(server_ip.strip())
    except ValueError:
        raise bad("server_ip", f"{rules.shown(server_ip)} is not an IPv4 address") from None
    # ASCII digits first, then the rule: int() also takes underscores and other scripts' digits,
    # and refuses thousands of digits (or takes long over them).
    lease = lease.strip()
    digits = re.fullmatch(r"-?[0-9]{1,20}", lease) is not None
    expiry = int(lease) if digits else 0
    if (why := rules.expiry_rule(expiry if digits else lease)) is not None:
        raise bad("lease", why)
    signature = signature.strip()
    if not re.fullmatch(r"[0-9]{1,20}", signature) or rules.signature_rule(int(signature)) is not None:
        raise bad("signature", f"{rules.shown(signature)} is not an unsigned 64-bit decimal number")
    # The signature is not kept: a write always makes a new one.
    rec = Record(pool.network, ip, client_id, Flag(int(flags)), owner, expiry, 0, macro, "", comment)
    found = rules.broken(rec, pool)
    if found is not None:
        raise bad(_FIELD_NAMES.get(found.field, found.field), found.rule)
    return rec


# The record's field names where the SUNWfiles header calls them otherwise.
_FIELD_NAMES = {"ip": "client_ip", "owner": "server_ip", "expiry": "lease"}


HEADER = """\
# {name}
#
# dhcp_network(4) table for network {network} ({subnet}), exported by bootsrv.
# Format: client_ip|client_id|flags|server_ip|lease|signature|macro|comment
#
"""


def render(records: list[Record], pool: Pool) -> str:
    """The table as pntadm's files module writes it (hostnames are not part of the format)."""
    out = [HEADER.format(name=table_name(pool.subnet), network=pool.network, subnet=pool.subnet)]
    for r in sorted(records, key=lambda r: int(r.ip)):
        comment = r.comment.replace("\n", " ").replace("\r", " ")
        out.append(
            f"{r.ip}|{r.client_id or '00'}|{int(r.flags):02d}|{r.owner}|{r.expiry}|{r.signature}|{r.macro}|{comment}\n"
        )
    return "".join(out)
