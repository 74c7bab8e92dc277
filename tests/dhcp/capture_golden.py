#!/usr/bin/env python3
"""Regenerate tests/dhcp/golden/: real clients against `bootsrv serve` in a lab, captured by tcpdump.

    sudo .venv/bin/python tests/dhcp/capture_golden.py [dhclient udhcpc ipxe-bios ovmf]

Each client runs in its own namespace (ISC dhclient: DORA then release; busybox udhcpc: DORA,
renew, release; qemu with SeaBIOS + iPXE ROM and qemu with OVMF: the firmware's PXE DHCP). Every
DHCP payload seen on the server's interface, requests and our replies, is written as one hex file
`<client>-<nn>-<direction>-<type>.hex`; test_golden.py decodes and re-encodes each.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from test_dhcp_clients import DHCLIENT_SCRIPT, UDHCPC_SCRIPT, _script, start_server  # noqa: E402

from bootsrv.dhcp.packet import MESSAGE_NAMES, decode  # noqa: E402
from bootsrv.lab.netns import Lab  # noqa: E402

GOLDEN = Path(__file__).parent / "golden"


def run_dhclient(lab, client, workdir):
    script, _rec = _script(workdir, "dh", DHCLIENT_SCRIPT)
    lf, pf = workdir / "dh.leases", workdir / "dh.pid"
    client.run(["dhclient", "-1", "-lf", str(lf), "-pf", str(pf), "-sf", str(script), "net0"], check=False, timeout=30)
    client.run(["dhclient", "-r", "-lf", str(lf), "-pf", str(pf), "-sf", str(script), "net0"], check=False, timeout=30)


def run_udhcpc(lab, client, workdir):
    script, _rec = _script(workdir, "ud", UDHCPC_SCRIPT)
    proc = client.popen(["busybox", "udhcpc", "-f", "-i", "net0", "-s", str(script), "-t", "6", "-T", "1", "-R"])
    time.sleep(3)
    proc.send_signal(10)  # SIGUSR1: renew
    time.sleep(2)
    proc.terminate()  # -R: release on exit
    proc.wait(timeout=10)


def run_vm(firmware: str, wait: float):
    def run(lab, client, workdir):
        from bootsrv.lab.vm import Vm

        seg = lab.segments["lan"]
        vm = Vm(seg, f"vm{firmware[:4]}", workdir, "52:54:00:12:34:56", firmware=firmware, memory_mib=256)
        vm.start()
        time.sleep(wait)
        vm.stop()

    return run


CLIENTS = {"dhclient": run_dhclient, "udhcpc": run_udhcpc, "ipxe-bios": run_vm("bios", 40), "ovmf": run_vm("uefi", 90)}


def capture(name: str) -> list[tuple[str, bytes]]:
    workdir = Path(tempfile.mkdtemp(prefix=f"golden-{name}-"))
    with Lab() as lab:
        server, client, proc, _ = start_server(lab, workdir, lease_time=600)
        pcap = workdir / "cap.pcap"
        dump = server.popen(
            ["tcpdump", "-i", "net0", "-U", "-w", str(pcap), "udp port 67 or udp port 68"], stderr=subprocess.DEVNULL
        )
        time.sleep(1.0)
        CLIENTS[name](lab, client, workdir)
        time.sleep(1.0)
        dump.terminate()
        dump.wait(timeout=10)
    from scapy.all import UDP, rdpcap

    out = []
    for pkt in rdpcap(str(pcap)):
        if UDP in pkt:
            out.append(("req" if pkt[UDP].dport == 67 else "rep", bytes(pkt[UDP].payload)))
    shutil.rmtree(workdir, ignore_errors=True)
    return out


def main(names: list[str]) -> None:
    for name in names or list(CLIENTS):
        payloads = capture(name)
        for old in GOLDEN.glob(f"{name}-*.hex"):
            old.unlink()
        for i, (direction, raw) in enumerate(payloads):
            mtype = MESSAGE_NAMES.get(decode(raw).message_type, "BOOTP").lower()
            path = GOLDEN / f"{name}-{i:02d}-{direction}-{mtype}.hex"
            path.write_text(raw.hex() + "\n")
        print(f"{name}: {len(payloads)} packets")


if __name__ == "__main__":
    main(sys.argv[1:])
