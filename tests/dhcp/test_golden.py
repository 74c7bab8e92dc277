"""Golden packets: DHCP payloads captured with tcpdump from real clients (ISC dhclient, busybox
udhcpc, qemu's iPXE ROM, OVMF) and our replies to them, in a lab against `bootsrv serve`
(regenerate: sudo .venv/bin/python tests/dhcp/capture_golden.py). Each decodes, and re-encodes
to the same bytes (up to the zero padding the sender chose); requests also go through the engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootsrv.dhcp import packet as P
from bootsrv.dhcp.packet import decode, encode
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


@pytest.mark.parametrize("path", [p for p in GOLDEN if p.name.startswith(("ipxe", "ovmf")) and "-req-" in p.name],
                         ids=lambda p: p.stem)
def test_firmware_is_classified(path):
    fw = classify(decode(load(path)))
    assert fw is not None
    if path.name.startswith("ovmf"):
        assert fw.arch == 7 and not fw.ipxe
    else:
        assert fw.ipxe and fw.arch == 0
