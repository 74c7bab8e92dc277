"""Value checks shared by every area: MACs, host names, GUIDs, profile names, serials and
firmware architectures from the CLI, the API, DHCP and the enrollment callback. Each returns
the canonical form or raises InvalidInput naming its field."""

from __future__ import annotations

import re
import uuid

from bootsrv.config import ARCH_NAMES
from bootsrv.errors import InvalidInput

_MAC_SEPARATED = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")
_MAC_DOTTED = re.compile(r"^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$")
_MAC_BARE = re.compile(r"^[0-9a-f]{12}$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PROFILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SERIAL = re.compile(r"^[\x21-\x7e]{1,64}$")


def normalize_mac(value: object, field: str = "mac") -> str:
    """`aa:bb:cc:dd:ee:ff` from the usual spellings (colons, dashes, Cisco dots, bare hex).

    Multicast MACs (low bit of the first octet) are refused: no NIC boots with one.
    """
    if isinstance(value, (bytes, bytearray)):  # chaddr as the DHCP codec holds it (RFC 2131 2)
        if len(value) != 6:
            raise InvalidInput(field, f"hardware address has {len(value)} octets, expected 6 (Ethernet)")
        value = value.hex()
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a MAC address string, got {type(value).__name__}")
    text = value.strip().lower()
    if _MAC_SEPARATED.match(text):
        hexdigits = text.replace(text[2], "")
    elif _MAC_DOTTED.match(text):
        hexdigits = text.replace(".", "")
    elif _MAC_BARE.match(text):
        hexdigits = text
    else:
        raise InvalidInput(field, f"{value!r} is not a MAC address (expected 6 hex octets, e.g. 52:54:00:12:34:56)")
    if int(hexdigits[:2], 16) & 1:
        raise InvalidInput(field, f"{value!r} is a multicast address, not a NIC's")
    return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


def normalize_hostname(value: object, field: str = "hostname") -> str:
    """A DNS host name (RFC 1123 2.1 labels), lowercased; dots allowed for a qualified name."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, "must be a non-empty host name")
    text = value.strip().lower().rstrip(".")
    if len(text) > 253:
        raise InvalidInput(field, f"{value!r} is longer than 253 characters (RFC 1035 2.3.4)")
    for label in text.split("."):
        if not _LABEL.match(label):
            raise InvalidInput(
                field, f"{value!r}: label {label!r} must be 1-63 letters, digits or inner hyphens (RFC 1123 2.1)"
            )
    return text


def normalize_guid(value: object, field: str = "guid") -> str:
    """The client machine GUID of DHCP option 97 (RFC 4578 2.3), as a lowercase UUID string."""
    if isinstance(value, (bytes, bytearray)):
        # Option 97 is type 0 followed by 16 octets; SMBIOS stores the first three fields
        # little-endian, which is what firmware sends (RFC 4578 2.3 leaves the encoding to SMBIOS).
        raw = bytes(value)
        if len(raw) == 17 and raw[0] == 0:
            raw = raw[1:]
        if len(raw) != 16:
            raise InvalidInput(field, f"option 97 has length {len(value)}, expected 17 (type 0 + 16 octets)")
        return str(uuid.UUID(bytes_le=raw))
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a UUID string, got {type(value).__name__}")
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not a UUID") from None


def normalize_profile(value: object, field: str = "profile") -> str:
    if not isinstance(value, str) or not _PROFILE.match(value):
        raise InvalidInput(field, f"{value!r} is not a profile name (letters, digits, '.', '_', '-'; max 64)")
    return value


def normalize_serial(value: object, field: str = "serial") -> str:
    if not isinstance(value, str) or not _SERIAL.match(value):
        raise InvalidInput(field, f"{value!r} must be 1-64 printable characters without spaces")
    return value


def arch_name(value: object, field: str = "arch") -> str:
    """An RFC 4578 architecture as bootsrv names it ("bios", "efi-x64"), or "arch-<n>" if unnamed."""
    by_number = {num: name for name, num in ARCH_NAMES.items()}
    if isinstance(value, bool):
        raise InvalidInput(field, "must be an architecture name or RFC 4578 number")
    if isinstance(value, int):
        if not 0 <= value <= 0xFFFF:
            raise InvalidInput(field, f"{value} is not a 16-bit RFC 4578 architecture type")
        return by_number.get(value, f"arch-{value}")
    if isinstance(value, str) and (value in ARCH_NAMES or re.fullmatch(r"arch-\d{1,5}", value)):
        return value
    raise InvalidInput(field, f"{value!r} is not one of {', '.join(ARCH_NAMES)} or arch-<number>")
