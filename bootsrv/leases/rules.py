"""The rules every lease record obeys, whichever way it enters the store (pure, no I/O).

A record enters the store by `bootsrv lease import` (bootsrv.leases.sunwfiles), by `lease add`
and `lease modify` and every other write of bootsrv.leases.store, by a DHCP client (its client
id, bootsrv.dhcp.engine), and by a handle reading the store's own files (bootsrv.leases.files),
which another process, an older bootsrv or a person with an editor wrote. Each of them asks
`broken(record, pool)` (or, for one value, the field's rule in RULES), so what one way refuses no
other way lets in: an import refuses the line (`file:line: field: rule`), a write raises
InvalidInput (`field: rule`), and a table line that passes its checksum but breaks a rule is
skipped and reported like a corrupt one, never served (docs/lease-store.md, "Record rules").

The limits are the protocols' where they have one, and generous where they do not: the store is
shared by the servers, DNS and every `lease list`, so a value none of them can use is refused
at the door instead of failing later in one of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from bootsrv.errors import InvalidInput
from bootsrv.leases.model import NEVER, Flag, Pool, Record, client_id_of_mac

# RFC 2132 9.14: option 61 carries its length in one octet, so a client id is at most 255
# octets (510 hex digits). Solaris keeps at most 64 (DN_MAX_CID_LEN): every SUNWfiles id fits.
CLIENT_ID_OCTETS = 255
NO_CLIENT = "00"  # how the files (Solaris' and ours) write "nobody": never a client's id
_HEX = "0123456789ABCDEF"
# dhcptab(4) macro names: bootsrv profiles are names of the same kind.
MACRO_LENGTH = 64
MACRO = re.compile(rf"[A-Za-z0-9._-]{{0,{MACRO_LENGTH}}}")
# RFC 1123 2.1 labels of at most 63 characters, a name of at most 253 (RFC 1035 2.3.4), stored
# lower-case without the final dot: what DNS answers.
HOSTNAME = re.compile(r"(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
# Solaris allows 48 characters (DN_MAX_COMMENT_LEN); bootsrv writes longer ones itself ("declined
# by <client id>", up to 522), so a kilobyte: a line of `lease list`, not a megabyte of it.
COMMENT_LENGTH = 1024
# The last second a four-digit ISO 8601 year shows (9999-12-31T23:59:59Z, what `lease list`
# prints). Far beyond any DHCP lease: RFC 2131's lease time is 32 bits, now + 2**32 s is 2162.
EXPIRY_LAST = 253_402_300_799
# dhcp_network(4) signatures are unsigned 64-bit numbers (bootsrv makes 62-bit ones).
SIGNATURE_LIMIT = 1 << 64


@dataclass(frozen=True)
class Broken:
    """The first rule a record breaks: the field and what it must be."""

    field: str
    rule: str

    def error(self, where: str = "") -> InvalidInput:
        """InvalidInput naming the field, after `where` if given (`file:line`)."""
        return InvalidInput(f"{where}: {self.field}" if where else self.field, self.rule)

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}"


def shown(value: object, limit: int = 40) -> str:
    """The value for a message: repr (so control characters show escaped), cut when long."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond int-to-text's digit limit (sys.set_int_max_str_digits)
        return f"a number of {value.bit_length()} bits"  # type: ignore[attr-defined]
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(value) if isinstance(value, str) else len(text)} characters)"


# ---- one rule per field: None when the value obeys it, else what it must be -------------------
def ip_rule(ip: object, pool: Pool) -> str | None:
    if type(ip) is not IPv4Address:
        return f"{shown(ip)} is not an IPv4 address"
    subnet = pool.subnet
    if ip not in subnet:
        return f"{ip} is outside network {pool.network!r} ({subnet})"
    if subnet.prefixlen < 31 and ip in (subnet.network_address, subnet.broadcast_address):
        return f"{ip} is the network or broadcast address of {subnet}"
    return None


def client_id_rule(client_id: object, pool: Pool | None = None) -> str | None:
    """ "" is nobody; anything else is a client's id: upper-case hex octets, 1 to 255 of them."""
    if type(client_id) is not str:
        return f"{shown(client_id)} is not text"
    if client_id == "":
        return None
    if client_id == NO_CLIENT:
        return f"{NO_CLIENT!r} means no client (leave it empty)"
    if len(client_id) > 2 * CLIENT_ID_OCTETS:
        return f"{len(client_id) // 2} octets, at most {CLIENT_ID_OCTETS} (RFC 2132 9.14)"
    if len(client_id) % 2 or client_id.strip(_HEX):  # strip: in C, cheaper than a regex (DHCP asks)
        return f"{shown(client_id)} is not upper-case hex octets"
    return None


def flags_rule(flags: object, pool: Pool | None = None) -> str | None:
    if not isinstance(flags, Flag) or not 0 <= int(flags) <= 15:
        return f"{shown(flags)} is not a sum of 0 DYNAMIC, 1 PERMANENT, 2 MANUAL, 4 UNUSABLE, 8 BOOTP"
    return None


def owner_rule(owner: object, pool: Pool | None = None) -> str | None:
    if type(owner) is not IPv4Address:
        return f"{shown(owner)} is not an IPv4 address"
    return None


def expiry_rule(expiry: object, pool: Pool | None = None) -> str | None:
    if type(expiry) is not int or not (expiry == NEVER or 0 <= expiry <= EXPIRY_LAST):
        return f"{shown(expiry)} is not Unix seconds up to {EXPIRY_LAST} (9999-12-31T23:59:59Z), -1 never or 0 none"
    return None


def signature_rule(signature: object, pool: Pool | None = None) -> str | None:
    if type(signature) is not int or not 0 <= signature < SIGNATURE_LIMIT:
        return f"{shown(signature)} is not an unsigned 64-bit number"
    return None


def macro_rule(macro: object, pool: Pool | None = None) -> str | None:
    if type(macro) is not str or not MACRO.fullmatch(macro):
        return f"{shown(macro)} is not a macro name (at most {MACRO_LENGTH} letters, digits, . _ -)"
    return None


def hostname_rule(hostname: object, pool: Pool | None = None) -> str | None:
    if type(hostname) is not str or (hostname and not HOSTNAME.fullmatch(hostname)):
        return f"{shown(hostname)} is not a lower-case host name (RFC 1123: letters, digits, hyphens; 253 at most)"
    return None


def comment_rule(comment: object, pool: Pool | None = None) -> str | None:
    if type(comment) is not str:
        return f"{shown(comment)} is not text"
    if len(comment) > COMMENT_LENGTH:
        return f"{len(comment)} characters, at most {COMMENT_LENGTH}"
    # isprintable() is False for every control character (C0, DEL, C1), for line and paragraph
    # separators (str.splitlines would cut a SUNWfiles table there) and for format characters
    # such as the bidirectional overrides that make a terminal show other text than is there.
    if not comment.isprintable():
        bad = next(c for c in comment if not c.isprintable())
        return f"has the unprintable character {bad!r} (printable text on one line only)"
    return None


def network_rule(network: object, pool: Pool) -> str | None:
    if network != pool.network:
        return f"{shown(network)} is not this table's network {pool.network!r}"
    return None


# Field -> its rule, in the order of a table line (docs/lease-store.md): `broken` reports the
# first field that breaks its rule.
RULES: tuple[tuple[str, Callable[[object, Pool], str | None]], ...] = (
    ("network", network_rule),
    ("ip", ip_rule),
    ("client_id", client_id_rule),
    ("flags", flags_rule),
    ("owner", owner_rule),
    ("expiry", expiry_rule),
    ("signature", signature_rule),
    ("macro", macro_rule),
    ("comment", comment_rule),
    ("hostname", hostname_rule),
)


def broken(rec: Record, pool: Pool) -> Broken | None:
    """The first rule `rec` breaks as a record of `pool`'s network, or None."""
    values = rec.__dict__
    for name, rule in RULES:
        why = rule(values[name], pool)
        if why is not None:
            return Broken(name, why)
    return None


class TableRules:
    """`broken` for the records of one network, made once: a handle reading its table asks it
    about every line, and a record that obeys every rule is passed by one expression instead
    of the RULES walk (docs/lease-store.md, "Measurements behind the code"). The walk still
    names the rule when the expression says no, so the two cannot disagree on a reason."""

    __slots__ = ("pool", "_network", "_first", "_last")

    def __init__(self, pool: Pool):
        self.pool = pool
        subnet = pool.subnet
        self._network = pool.network
        self._first, self._last = int(subnet.network_address), int(subnet.broadcast_address)
        if subnet.prefixlen < 31:  # the network and broadcast addresses are no host's
            self._first, self._last = self._first + 1, self._last - 1

    def broken(self, rec: Record) -> Broken | None:
        v = rec.__dict__
        ip, cid, flags, expiry, sig = v["ip"], v["client_id"], v["flags"], v["expiry"], v["signature"]
        macro, comment, hostname = v["macro"], v["comment"], v["hostname"]
        # str.strip(characters) == "" is "only these characters", in C: a regular expression
        # costs several times more per line, and the walk below still applies the real rules
        # (also to what this expression leaves to it: a one-octet client id, 00 among them).
        if (
            v["network"] == self._network
            and type(ip) is IPv4Address
            and self._first <= int(ip) <= self._last
            and (
                cid == ""
                or (
                    type(cid) is str
                    and len(cid) % 2 == 0
                    and 2 < len(cid) <= 2 * CLIENT_ID_OCTETS
                    and not cid.strip(_HEX)
                )
            )
            and type(flags) is Flag
            and 0 <= flags <= 15
            and type(v["owner"]) is IPv4Address
            and type(expiry) is int
            and (expiry == NEVER or 0 <= expiry <= EXPIRY_LAST)
            and type(sig) is int
            and 0 <= sig < SIGNATURE_LIMIT
            and (
                macro == ""
                or (type(macro) is str and len(macro) <= MACRO_LENGTH and not macro.strip(_MACRO_CHARACTERS))
            )
            and (comment == "" or (type(comment) is str and len(comment) <= COMMENT_LENGTH and comment.isprintable()))
            and (hostname == "" or (type(hostname) is str and _HOSTNAME_MATCH(hostname) is not None))
        ):
            return None
        return broken(rec, self.pool)


_MACRO_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
_HOSTNAME_MATCH = HOSTNAME.fullmatch


def check(rec: Record, pool: Pool, where: str = "") -> Record:
    """`rec` if it obeys every rule; else InvalidInput naming the field (after `where`)."""
    found = broken(rec, pool)
    if found is not None:
        raise found.error(where)
    return rec


def normalize_client_id(value: str, field_name: str = "client_id") -> str:
    """A client id as the store keeps it: upper-case hex; a MAC written with colons or dashes
    becomes an Ethernet client id (type 01, RFC 2132 9.14)."""
    text = value.strip()
    if re.fullmatch(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}", text):
        return client_id_of_mac(text)
    text = text.upper()
    if not re.fullmatch(r"(?:[0-9A-F]{2})+", text):
        raise InvalidInput(field_name, f"{shown(value)} is not a client id (hex octets, or a MAC aa:bb:cc:dd:ee:ff)")
    why = client_id_rule(text)
    if why is not None:  # too long, or 00
        raise InvalidInput(field_name, why)
    return text


def normalize_hostname(value: str, field_name: str = "hostname") -> str:
    """A host name as the store keeps it: lower-case, without the final dot; "" for none."""
    text = value.strip().lower().rstrip(".")
    why = hostname_rule(text)
    if why is not None:
        raise InvalidInput(field_name, why)
    return text
