"""Golden packets: DHCP payloads captured with tcpdump from real clients (ISC dhclient, busybox
udhcpc, qemu's iPXE ROM, OVMF) and our replies to them, in a lab against `bootsrv serve`
(regenerate: sudo .venv/bin/python tests/dhcp/capture_golden.py). Each decodes, and re-encodes
to the same bytes (up to the zero padding the sender chose); requests also go through the engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootsrv.dhcp import packet as P
from bootsrv.dhcp.packet import decode, encode, looks_like_discover
from bootsrv.dhcp.pxe import classify

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.hex"))


def load(path: Path) -> bytes:
    return bytes.fromhex(path.read_text().strip())


def test_there_are_golden_packets_of_each_client():
    names = {p.name.split("-0")[0].split("-1")[0] for p in GOLDEN}
    assert {"dhclient", "udhcpc"} <= names


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_decode_and_reencode_equal(path):
    raw = load(path)
    pkt = decode(raw)
    direction, mtype = path.stem.split("-")[-2:]
    assert pkt.op == (P.BOOTREQUEST if direction == "req" else P.BOOTREPLY)
    assert P.MESSAGE_NAMES[pkt.message_type].lower() == mtype
    again = encode(pkt, max_size=len(raw))
    assert again.ljust(len(raw), b"\0") == raw


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_every_real_client_puts_the_message_type_first(path):
    # What load shedding relies on to drop a DISCOVER without decoding it (packet.looks_like_discover).
    assert looks_like_discover(load(path)) == path.stem.endswith("req-discover")


def by_name(prefix: str) -> list[bytes]:
    return [load(p) for p in GOLDEN if p.name.startswith(prefix)]


def test_what_real_clients_send():
    dh = decode(by_name("dhclient-00")[0])
    assert dh.message_type == P.DISCOVER and P.PARAMETER_LIST in dh.options and classify(dh) is None
    ud = decode(by_name("udhcpc-00")[0])
    assert ud.message_type == P.DISCOVER and ud.options[P.VENDOR_CLASS].startswith(b"udhcp")
    renew = decode(by_name("udhcpc-04")[0])  # SIGUSR1: RENEWING, unicast from ciaddr, no 50/54
    assert renew.message_type == P.REQUEST and str(renew.ciaddr).startswith("10.65.0.")
    assert P.SERVER_ID not in renew.options and P.REQUESTED_IP not in renew.options


def test_our_replies_as_captured():
    for prefix in ("dhclient-01", "udhcpc-01", "dhclient-03"):
        rep = decode(by_name(prefix)[0])
        assert rep.options[P.SERVER_ID] == bytes([10, 65, 0, 1])
        assert list(rep.options)[:5] == [53, 54, 51, 58, 59]
        assert str(rep.yiaddr).startswith("10.65.0.")


# What each captured firmware request is. qemu + OVMF with a virtio NIC tries, in this order: the
# NIC's iPXE EFI ROM (user class iPXE), OVMF's own PXE (which ignores offers without a boot file
# and retries: the machine was unknown, so it got none), then UEFI HTTP boot (arch 16).
FIRMWARE = {
    "ipxe-bios-00-req-discover": (0, True, False),
    "ipxe-bios-02-req-discover": (0, True, False),
    "ipxe-bios-04-req-request": (0, True, False),
    "ovmf-00-req-discover": (7, True, False),
    "ovmf-02-req-discover": (7, True, False),
    "ovmf-04-req-request": (7, True, False),
    "ovmf-06-req-discover": (7, False, False),
    "ovmf-08-req-discover": (7, False, False),
    "ovmf-10-req-discover": (7, False, False),
    "ovmf-12-req-discover": (7, False, False),
    "ovmf-14-req-discover": (16, False, True),
}


@pytest.mark.parametrize("stem, expected", FIRMWARE.items(), ids=list(FIRMWARE))
def test_firmware_is_classified(stem, expected):
    fw = classify(decode(load(Path(__file__).parent / "golden" / f"{stem}.hex")))
    assert (fw.arch, fw.ipxe, fw.http) == expected


def test_every_captured_firmware_request_is_in_the_table():
    firmware = {p.stem for p in GOLDEN if p.name.startswith(("ipxe", "ovmf")) and "-req-" in p.name}
    assert firmware == set(FIRMWARE)
