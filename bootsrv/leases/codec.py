"""The line codec of the lease store's files: every byte format of docs/lease-store.md, pure.

A table file `leases.<network>` is a version header, then one line per write:

    # bootsrv lease table v1 network=public fields=client_ip|client_id|...|hostname|crc32
    10.0.0.10|01525400000001|00|10.0.0.1|1700003600|2345678901234567|pxe||node1|adfb0c40

The fields are Solaris dhcp_network(4)'s (so `grep` and pntadm habits work) plus the hostname,
and a crc32 of everything before it, so a torn or corrupt line is detected and skipped without
losing the lines around it. The last line for an address wins; signature 0 means "deleted"
(`tombstone`). The owners file `leases.owners` holds `peer|heir|crc32` lines (adoptions).

This module turns records into lines and back, and checks a table's header; which file a line
goes to, and when, is bootsrv.leases.files'.
"""

from __future__ import annotations

import re
import zlib
from ipaddress import IPv4Address
from pathlib import Path
from socket import inet_aton, inet_ntoa

from bootsrv.errors import BootsrvError
from bootsrv.leases.model import Flag, Record

FORMAT_VERSION = 1
FIELDS = "client_ip|client_id|flags|server_ip|lease|signature|macro|comment|hostname|crc32"
HEADER_MAGIC = b"# bootsrv lease table v"
OWNERS_HEADER = b"# bootsrv lease owners v1 fields=peer|heir|crc32\n"
NO_CLIENT = "00"  # Solaris writes "00" for an address nobody holds


class StoreCorrupt(BootsrvError):
    """A table file bootsrv cannot read at all (wrong header or version): nothing is guessed."""

    exit_code = 6
    http_status = 500

    def __init__(self, path: Path, rule: str):
        self.path, self.rule = path, rule
        super().__init__(f"{path}: {rule}")


def table_header(network: str) -> bytes:
    return f"# bootsrv lease table v{FORMAT_VERSION} network={network} fields={FIELDS}\n".encode()


def _escape(text: str) -> str:
    # Only the free-text fields can hold the separator; backslash-escape it (and newlines, which
    # would end the line) the way SUNWfiles escapes '|' inside a comment.
    if "\\" in text or "|" in text or "\n" in text or "\r" in text:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "\\n").replace("\r", "\\r")
    return text


_ESCAPED_FIELD = re.compile(r"((?:[^|\\]|\\.)*)(\||$)")
_UNESCAPE = {"\\": "\\", "|": "|", "n": "\n", "r": "\r"}


def _split_escaped(text: str) -> list[str]:
    fields = []
    for m in _ESCAPED_FIELD.finditer(text):
        fields.append(re.sub(r"\\(.)", lambda e: _UNESCAPE.get(e.group(1), e.group(1)), m.group(1)))
        if not m.group(2):
            break
    return fields


_IP_TEXT: dict[IPv4Address, str] = {}
_IP_OF: dict[str, IPv4Address] = {}
_FLAGS = [Flag(i) for i in range(16)]


def _ip_text(ip: IPv4Address) -> str:
    text = _IP_TEXT.get(ip)
    if text is None:
        if len(_IP_TEXT) > 1 << 20:
            _IP_TEXT.clear()
        text = _IP_TEXT[ip] = str(ip)
    return text


def _ip(text: str) -> IPv4Address:
    ip = _IP_OF.get(text)
    if ip is None:
        if len(_IP_OF) > 1 << 20:
            _IP_OF.clear()
        # inet_aton is C, faster than IPv4Address's parser (docs/lease-store.md,
        # "Measurements behind the code"); it also takes forms like "10.1", which inet_ntoa's
        # round trip turns away.
        try:
            packed = inet_aton(text)
        except OSError:
            raise ValueError(f"{text!r} is not an IPv4 address") from None
        if inet_ntoa(packed) != text:
            raise ValueError(f"{text!r} is not a dotted-quad IPv4 address")
        ip = _IP_OF[text] = IPv4Address(int.from_bytes(packed, "big"))
    return ip


def encode(rec: Record) -> bytes:
    """One table line (with its newline) for `rec`; signature 0 writes a deletion."""
    body = (
        f"{_ip_text(rec.ip)}|{rec.client_id or NO_CLIENT}|{int(rec.flags):02d}|{_ip_text(rec.owner)}|"
        f"{rec.expiry}|{rec.signature}|{_escape(rec.macro)}|{_escape(rec.comment)}|{_escape(rec.hostname)}"
    ).encode()
    return b"%s|%08x\n" % (body, zlib.crc32(body))


def tombstone(ip: IPv4Address) -> bytes:
    body = f"{_ip_text(ip)}|{NO_CLIENT}|00|0.0.0.0|0|0|||".encode()
    return b"%s|%08x\n" % (body, zlib.crc32(body))


def decode(network: str, line: bytes) -> tuple[IPv4Address, Record | None]:
    """Parse one line without its newline; (ip, None) for a deletion. ValueError says why not."""
    body, sep, crc = line.rpartition(b"|")
    try:
        ok = sep and len(crc) == 8 and zlib.crc32(body) == int(crc, 16)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("checksum mismatch")
    text = body.decode()
    f = _split_escaped(text) if "\\" in text else text.split("|")
    if len(f) != 9:
        raise ValueError(f"{len(f)} fields, expected 9")
    ip = _ip(f[0])
    signature = int(f[5])
    if signature == 0:
        return ip, None
    flags = int(f[2])
    if not 0 <= flags < 16:
        raise ValueError(f"flags {flags}")
    cid = f[1]
    return ip, Record(
        network,
        ip,
        "" if cid == NO_CLIENT else cid,
        _FLAGS[flags],
        _ip(f[3]),
        int(f[4]),
        signature,
        macro=f[6],
        comment=f[7],
        hostname=f[8],
    )


def header_end(path: Path, data: bytes) -> int:
    """Where the records of table file `path` (its bytes `data`) begin: after the header line,
    which must name this format and version. StoreCorrupt if it does not."""
    first = data.find(b"\n") + 1
    header = data[:first]
    if not header.startswith(HEADER_MAGIC):
        raise StoreCorrupt(path, "not a bootsrv lease table (first line is not its header)")
    version = header[len(HEADER_MAGIC) :].split(b" ", 1)[0]
    if version != str(FORMAT_VERSION).encode():
        raise StoreCorrupt(
            path, f"format version {version.decode(errors='replace')} (this bootsrv reads v{FORMAT_VERSION})"
        )
    return first


def encode_adoption(peer: IPv4Address, heir: IPv4Address) -> bytes:
    """One line of the owners file (with its newline): `heir` took over `peer`'s addresses."""
    body = f"{peer}|{heir}".encode()
    return b"%s|%08x\n" % (body, zlib.crc32(body))


def decode_adoption(line: bytes) -> tuple[IPv4Address, IPv4Address]:
    """(peer, heir) of an owners line without its newline. ValueError says why not."""
    body, _, crc = line.rpartition(b"|")
    if zlib.crc32(body) != int(crc, 16):
        raise ValueError("checksum mismatch")
    peer, heir = body.decode().split("|")
    return IPv4Address(peer), IPv4Address(heir)
