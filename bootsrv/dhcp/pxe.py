"""Netboot clients: who is asking (classify) and what it should boot (boot_reply). Pure.

`classify(packet)` reads the options PXE firmware, UEFI HTTP boot and iPXE send; a client that is
none of these (an OS's dhclient) gets None and a plain lease. `boot_reply(...)` turns the client,
the machine's netboot decision ("install" / "local") and the boot config into the header fields
and options of the OFFER/ACK. `RegistryBooter` is the thin edge that asks the machine registry for
that decision (and records unknown PXE clients when `boot.unknown_machines = "discover"`).

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
from bootsrv.errors import InvalidInput
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
        items.add(value[pos + 1:pos + 1 + n])
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
        binary = boot.files.get(HTTP_ARCHES.get(fw.arch, "efi-x64")) if fw.arch in HTTP_ARCHES or fw.arch is None else None
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


class Booter(Protocol):
    """The netboot decision for a MAC: "install" (give a boot file) or "local" (none)."""

    def action(self, mac: str, fw: Firmware, now: float) -> str: ...


class RegistryBooter:
    """The machine registry's decision; unknown machines per `boot.unknown_machines`."""

    def __init__(self, registry, boot: BootSection):
        self.registry = registry
        self.boot = boot

    def action(self, mac: str, fw: Firmware, now: float) -> str:
        from bootsrv.machines.admin import discover
        from bootsrv.machines.model import boot_action, netboot

        try:
            known = netboot(self.registry, mac)
            if known is not None:
                return known
            if self.boot.unknown_machines != "discover":
                return "local"
            machine = discover(self.registry, mac, fw.arch, fw.guid, fw.vendor_class or None, now,
                               self.boot.auto_profile)
        except InvalidInput as exc:  # e.g. a multicast chaddr: no machine of ours, boot nothing
            event(log, "dhcp.not_a_machine", mac=mac, error=str(exc))
            return "local"
        event(log, "dhcp.discovered", mac=mac, arch=fw.arch_name or "none", state=machine.state.value)
        return boot_action(machine.state)
