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
from bootsrv.leases.model import CLIENT_ID, MACRO, Flag, Pool, Record

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
    the first bad one (nothing is returned then, so nothing gets half-imported)."""
    records: list[Record] = []
    seen: dict[IPv4Address, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue

        def bad(field: str, rule: str, number: int = number) -> InvalidInput:
            return InvalidInput(f"{source}:{number}: {field}", rule)

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
            raise bad("client_ip", f"{client_ip!r} is not an IPv4 address") from None
        if ip not in pool.subnet:
            raise bad("client_ip", f"{ip} is outside network {pool.network!r} ({pool.subnet})")
        if ip in seen:
            raise bad("client_ip", f"{ip} already on line {seen[ip]}")
        seen[ip] = number
        client_id = client_id.strip().upper()
        if client_id == "00":
            client_id = ""
        elif not CLIENT_ID.match(client_id):
            raise bad("client_id", f"{client_id!r} is not hex octets (00 = no client)")
        try:
            flag_value = int(flags)
        except ValueError:
            flag_value = -1
        if not 0 <= flag_value <= 15:
            raise bad("flags", f"{flags!r} is not a sum of 0 DYNAMIC, 1 PERMANENT, 2 MANUAL, 4 UNUSABLE, 8 BOOTP")
        try:
            owner = IPv4Address(server_ip.strip())
        except ValueError:
            raise bad("server_ip", f"{server_ip!r} is not an IPv4 address") from None
        try:
            expiry = int(lease)
        except ValueError:
            expiry = -2
        if expiry < -1:
            raise bad("lease", f"{lease!r} is not Unix seconds (or -1 for never)")
        if not re.fullmatch(r"\d{1,20}", signature.strip()):
            raise bad("signature", f"{signature!r} is not a decimal number")
        if not MACRO.match(macro):
            raise bad("macro", f"{macro!r} is not a macro name (letters, digits, . _ -)")
        if "\n" in comment or "\r" in comment:
            raise bad("comment", "has a line break")
        records.append(Record(pool.network, ip, client_id, Flag(flag_value), owner, expiry, 0, macro, "", comment))
    return records


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
