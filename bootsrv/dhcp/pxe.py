"""Netboot clients: who is asking (classify) and what it should boot (boot_reply). Pure.

`classify(packet)` reads the options PXE firmware, UEFI HTTP boot and iPXE send; a client that is
none of these (an OS's dhclient) gets None and a plain lease. `netboot_action(...)` is the
machine's netboot decision ("install" / "local") from what the registry already says
(`KnownMachines`, a read) and, for a MAC it does not know, the `Sighting` to report. `boot_reply`
turns the client, that decision and the boot config into the header fields and options of the
OFFER/ACK.

Nothing here writes. An unknown netboot client is recorded by the product off the packet path:
the engine returns its Sighting with the reply, the socket loop's handler hands it to a
`Sightings` sink, and the machine registry records the sightings in batches
(bootsrv.machines.discovery; wired in bootsrv.app). A locked, fsync'ed rewrite of the registry
per new MAC inside the DHCP thread made a rack of 40 new machines 40 rewrites on the packet path,
and a flood of random MACs a flood of them (issue 16).

The rules, with the firmware behaviour each one serves:
- Option 60 `PXEClient` is echoed to BIOS PXE clients: PXE 2.1 (Intel) section 2.2.1: a ROM treats
  an OFFER without it as a plain DHCP offer and, when no offer carries it, waits for ProxyDHCP and
  retries before giving up; with it, the boot file in the OFFER is used. UEFI PXE (EDK2) must NOT
  get it without a full PXE menu in 43: it then asks a BINL server on port 4011 (see boot_reply).
- Option 43 with PXE_DISCOVERY_CONTROL (vendor option 6) = 8 for BIOS PXE ROMs: "use the boot
  file in this offer, skip boot server discovery" (PXE 2.1 table 2-1). Without it some ROMs
  (Intel Boot Agent, Broadcom MBA) send a DHCPREQUEST to port 4011 and time out first.
- Option 97 (client machine GUID) is echoed when the client sent it: PXE 2.1 table 2-3 lists it
  in the server's replies, and HP/Dell ROMs drop an offer whose 97 is missing.
- BIOS (arch 0) gets iPXE's `undionly.kpxe` (it drives the NIC through the ROM's UNDI, the one
  driver every BIOS NIC has); x64 UEFI (7, and 9 which several x64 firmwares send, RFC 4578
  errata 4624) gets `ipxe.efi`, or `snponly.efi` by config (boot.files) where iPXE's own drivers
  do not know the NIC; arm64 UEFI (11) its own build. Architectures without a file get nothing.
- UEFI HTTP boot (arch 16/19, vendor class `HTTPClient`) gets a URL as the boot file and option
  60 `HTTPClient`: UEFI 2.5+ section 24.7.2 (EDK2 HttpBootDxe) ignores any offer without
  `HTTPClient` in 60 and reads the URI from the file field / option 67. The URL is the same iPXE
  binary served over HTTP: `{http_base_url}/tftp/<file>`.
- A client that is already iPXE (option 77 user class `iPXE`) gets the HTTP URL of its
  per-machine script `{http_base_url}/boot/{mac}.ipxe` instead of iPXE again: handing
  `undionly.kpxe` to iPXE loads iPXE forever (the chainload loop of the iPXE docs).
- iPXE gets option 175 (iPXE encapsulated) with 176 (no_pxedhcp) = 1: otherwise iPXE waits about
  3 s for ProxyDHCP offers whenever the OFFER carries option 60 `PXEClient`.
- siaddr (next-server) and option 66 name our TFTP server, sname too: old PXE ROMs take the TFTP
  server from siaddr only, some UEFI ones from 66 only. The file field and option 67 both carry
  the boot file for the same reason (iPXE prefers 67; ROMs read the file field).
- A machine whose netboot is off ("local": enrolled, installed) gets no boot file and no PXE
  options: the ROM finds nothing to boot and falls through to the next boot device, the disk.
  iPXE still gets 175/176: captured here (tests/dhcp/golden/ipxe-bios-*), qemu's iPXE ROM given
  an offer without it sent DISCOVERs at secs 4 and 10 and took the offer only at secs 18.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Protocol

from bootsrv.config import ARCH_NAMES, BootSection
from bootsrv.dhcp.packet import (
    BOOTFILE,
    CLIENT_ARCH,
    CLIENT_GUID,
    CLIENT_NDI,
    IPXE_ENCAP,
    TFTP_SERVER,
    USER_CLASS,
    VENDOR_CLASS,
    VENDOR_SPECIFIC,
    Packet,
)
from bootsrv.log import event

log = logging.getLogger("bootsrv.dhcp")

ARCH_BIOS = 0
HTTP_ARCHES = {16: "efi-x64", 19: "efi-arm64"}  # HTTP boot types -> the binary they load
PXE_DISCOVERY_CONTROL = b"\x06\x01\x08\xff"  # PXE 2.1: vendor option 6 = 8 (use boot file), end
IPXE_NO_PXEDHCP = b"\xb0\x01\x01"  # 176 = 1 inside 175
# Options a netboot reply carries even when the firmware does not ask for them (see the doc).
FORCED = (VENDOR_CLASS, VENDOR_SPECIFIC, CLIENT_GUID, IPXE_ENCAP, TFTP_SERVER, BOOTFILE)


@dataclass(frozen=True)
class Firmware:
    """What a netboot client told about itself."""

    arch: int | None  # option 93 (RFC 4578 2.1), first listed type
    vendor_class: bytes  # option 60 as sent
    guid: bytes | None  # option 97 (type 0 + 16 octets), echoed back
    ipxe: bool  # option 77 says iPXE: hand it a script, not iPXE again
    http: bool  # UEFI HTTP boot (vendor class HTTPClient or arch 16/19)
    ndi: bytes | None = None  # option 94 (RFC 4578 2.2)

    @property
    def arch_name(self) -> str | None:
        if self.arch is None:
            return None
        return next((name for name, num in ARCH_NAMES.items() if num == self.arch), f"arch-{self.arch}")


def classify(packet: Packet) -> Firmware | None:
    """The netboot firmware behind a request, or None for any other DHCP client."""
    opts = packet.options
    vendor = opts.get(VENDOR_CLASS, b"")
    users = _user_classes(opts.get(USER_CLASS, b""))
    ipxe = b"iPXE" in users
    pxe = vendor.startswith(b"PXEClient")
    http = vendor.startswith(b"HTTPClient")
    if not (pxe or http or ipxe):
        return None
    arch_raw = opts.get(CLIENT_ARCH)
    arch = struct.unpack_from("!H", arch_raw)[0] if arch_raw else _arch_from_vendor(vendor)
    if arch in HTTP_ARCHES:
        http = True
    return Firmware(arch, vendor, opts.get(CLIENT_GUID), ipxe, http, opts.get(CLIENT_NDI))


def _user_classes(value: bytes) -> set[bytes]:
    """Option 77: iPXE sends the bare string "iPXE"; RFC 3004 clients send length-prefixed items."""
    if not value:
        return set()
    out = {value}
    pos, items = 0, set()
    while pos < len(value):
        n = value[pos]
        if n == 0 or pos + 1 + n > len(value):
            return out
        items.add(value[pos + 1 : pos + 1 + n])
        pos += 1 + n
    return out | items


def _arch_from_vendor(vendor: bytes) -> int | None:
    # "PXEClient:Arch:00007:UNDI:003016" (PXE 2.1 / RFC 4578 2.1): firmware that omits option 93.
    parts = vendor.split(b":")
    if len(parts) >= 3 and parts[1] == b"Arch" and parts[2].isdigit():
        return int(parts[2])
    return None


@dataclass(frozen=True)
class BootReply:
    siaddr: IPv4Address | None  # None: options only, no boot file (the header stays as it is)
    sname: bytes
    file: bytes
    options: dict[int, bytes]


def boot_reply(fw: Firmware, action: str, mac: str, boot: BootSection, server: IPv4Address) -> BootReply | None:
    """Header fields and options for a netboot client, or None: no boot file (see the doc)."""
    if action != "install":
        return BootReply(None, b"", b"", {IPXE_ENCAP: IPXE_NO_PXEDHCP}) if fw.ipxe else None
    base = boot.http_base_url.rstrip("/")
    options: dict[int, bytes] = {}
    if fw.ipxe:
        name = f"{base}/boot/{mac}.ipxe"
        options[IPXE_ENCAP] = IPXE_NO_PXEDHCP
    elif fw.http:
        # An HTTPClient that names no arch (no option 93, none in the vendor class) gets the x64
        # binary; one that names an arch other than the HTTP boot types gets none.
        http_arch = "efi-x64" if fw.arch is None else HTTP_ARCHES.get(fw.arch)
        binary = boot.files.get(http_arch) if http_arch else None
        if binary is None:
            return None
        name = f"{base}/tftp/{binary}"
        options[VENDOR_CLASS] = b"HTTPClient"
    else:
        arch = fw.arch_name
        binary = boot.files.get(arch) if arch else None
        if binary is None:
            event(log, "dhcp.no_boot_file", mac=mac, arch=arch or "none")
            return None
        name = binary
        if fw.arch == ARCH_BIOS:
            options[VENDOR_CLASS] = b"PXEClient"
            options[VENDOR_SPECIFIC] = PXE_DISCOVERY_CONTROL
        # UEFI PXE gets a plain offer with a boot file (no 60, no 43): EDK2's PxeBcDxe (OVMF and
        # most server firmware) files an offer carrying `PXEClient` without a full PXE boot menu
        # in 43 as "DhcpBinl" and re-asks for the boot file on port 4011 (PxeBcRetryBinlOffer);
        # with no BINL server it fails with PXE-E16 and never fetches the file (seen in the lab:
        # tests/integration/test_install_cycle.py with OVMF's own PXE). A DhcpOnly offer with a
        # boot file is used as it is, as with dnsmasq's plain dhcp-boot.
    if fw.guid is not None:
        options[CLIENT_GUID] = fw.guid
    text = str(server).encode()
    options[TFTP_SERVER] = text
    options[BOOTFILE] = name.encode()
    file = name.encode() if len(name) < 128 else b""  # longer: option 67 only (iPXE reads it)
    return BootReply(server, text, file, options)


@dataclass(frozen=True)
class Sighting:
    """A netboot client whose MAC the registry did not know, as DHCP saw it: what the decision
    reports instead of recording it (see the module doc)."""

    mac: str  # aa:bb:cc:dd:ee:ff, a unicast Ethernet address
    arch: int | None  # option 93 (RFC 4578 2.1), first listed type
    guid: bytes | None  # option 97 as sent (type 0 + 16 octets)
    vendor_class: bytes  # option 60 as sent
    seen: float  # the engine's clock


class KnownMachines(Protocol):
    """The machine registry as the DHCP decision reads it (the read side of pixiecore's Booter)."""

    def netboot(self, mac: str) -> str | None:
        """ "install", "local", or None for a MAC the registry does not know. A read, once per
        netboot request: it never writes."""
        ...


class Sightings(Protocol):
    """Where the socket loop's handler puts the sightings the engine returns."""

    def saw(self, sighting: Sighting) -> None:
        """Take note and return at once: never blocks the packet path, never writes the registry
        (a sink that is full drops and counts)."""
        ...


class MemoryMachines:
    """KnownMachines from a table MAC -> action, for tests and tools."""

    def __init__(self, actions: dict[str, str] | None = None):
        self.actions = dict(actions or {})

    def netboot(self, mac: str) -> str | None:
        return self.actions.get(mac)


class SightingLog:
    """Sightings kept in a list, for tests and tools."""

    def __init__(self) -> None:
        self.sightings: list[Sighting] = []

    def saw(self, sighting: Sighting) -> None:
        self.sightings.append(sighting)


def netboot_action(
    known: str | None, mac: str, fw: Firmware, boot: BootSection, now: float
) -> tuple[str, Sighting | None]:
    """The netboot decision for a client, and the sighting to report for an unknown one. Pure.

    A known MAC gets what the registry says. An unknown one boots locally and is reported when
    `boot.unknown_machines = "discover"`; with `boot.auto_profile` as well it gets its install
    boot at once, as when discovery was recorded inline: the record follows within a second
    (bootsrv.machines.discovery makes it "new" with that profile), and should its iPXE ask for
    /boot/<mac>.ipxe first, the HTTP boot decision records it there. A chaddr that is no unicast
    Ethernet address is no machine of ours: local, nothing reported.
    """
    if known is not None:
        return known, None
    if boot.unknown_machines != "discover" or not _unicast_ethernet(mac):
        return "local", None
    return ("install" if boot.auto_profile else "local"), Sighting(mac, fw.arch, fw.guid, fw.vendor_class, now)


def _unicast_ethernet(mac: str) -> bool:
    # Six octets, and the I/G bit (the low bit of the first octet, IEEE 802 8.2) clear.
    return len(mac) == 17 and not int(mac[:2], 16) & 1
