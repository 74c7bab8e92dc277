"""dhcp.processes = n (2 and 3): `bootsrv serve` answers DHCP from n processes on one socket group.

Real clients (busybox udhcpc, one per namespace, broadcasting; perfdhcp as a relay, unicast) with
MACs whose last bytes cover every residue mod n: the steering rule sends each to process
(last MAC byte % n), and each process allocates from its own stripe (int(ip) % n), so every
address shows which process served it. Then process 1 is SIGKILLed (it is started again and
serves again) and `serve` itself is SIGKILLed (no child may outlive it: a DHCP server nobody runs
any more). The clients of the first round say they are PXE ROMs (option 60): each process reports
the unknown MACs it serves and its own recorder writes them to the shared machine registry."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_dhcp_clients import config_text, launch, udhcpc_once  # noqa: E402

from tests.conftest import need  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER = "10.66.0.1"
RELAY = "10.66.0.2"  # perfdhcp acting as a relay agent: unicast with giaddr, one 4-tuple for all


def started(logpath: Path, number: int = 1) -> list[int]:
    """Pids of process `number`, in the order `serve` started them."""
    return [
        int(pid) for pid in re.findall(rf"event=dhcp.process_started process={number} pid=(\d+)", logpath.read_text())
    ]


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # exited; reaped by whoever adopted it


def until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.parametrize("n", [2, 3])
def test_processes_share_the_sockets_by_mac_and_survive_a_kill(lab, tmp_path, n):
    need(shutil.which("busybox") is not None, "busybox (busybox-static) is not installed")
    seg = lab.segment("lan")
    srv = lab.host("srv")
    lab.plug(srv, seg, "net0", f"{SERVER}/24")
    clients = []
    for i in range(8):
        host = lab.host(f"c{i}")
        lab.plug(host, seg, "net0", mac=f"02:00:00:66:01:{i:02x}")
        clients.append(host)
    relay = lab.host("relay")
    lab.plug(relay, seg, "net0", f"{RELAY}/24")
    text = config_text(
        tmp_path,
        owner=SERVER,
        subnet="10.66.0.0/24",
        start="10.66.0.50",
        end="10.66.0.199",
        relays=(RELAY,),
        extra_networks=f"[dhcp]\nprocesses = {n}\n",
    )
    proc = launch(srv, tmp_path, text)
    logpath = tmp_path / "serve.log"
    first = started(logpath)
    assert len(first) == 1 and all(len(started(logpath, k)) == 1 for k in range(1, n)), logpath.read_text()[-2000:]

    def relayed_exchanges():
        # -W: wait 1 s for replies after the last packet; without it perfdhcp -n stops counting
        # once it sent its last packet and counts that exchange's reply as dropped.
        run = relay.run(
            ["perfdhcp", "-4", "-l", "net0", "-r", "50", "-R", "40", "-n", "40", "-p", "5", "-W", "1000000", SERVER],
            check=False,
            timeout=30,
        )
        stats = dict(
            re.findall(r"Statistics for: (\S+)\*\*\*\s*sent packets: \d+\s*received packets: (\d+)", run.stdout)
        )
        assert stats == {"DISCOVER-OFFER": "40", "REQUEST-ACK": "40"}, run.stdout

    def bind(indexes, round_, vendor=None):
        with ThreadPoolExecutor(len(indexes)) as pool:
            got = pool.map(
                lambda i: udhcpc_once(clients[i], tmp_path, "net0", tag=f"r{round_}c{i}", vendor=vendor), indexes
            )
            return dict(zip(indexes, got, strict=True))

    def discovered():
        registry = tmp_path / "store" / "machines.jsonl"
        lines = registry.read_text().splitlines()[1:] if registry.exists() else []
        return {m["mac"] for m in map(json.loads, lines) if m["state"] == "discovered"}

    try:
        leases = bind(range(6), 1, vendor="PXEClient:Arch:00000:UNDI:002001")
        assert all(leases.values()), f"clients without a lease: {leases}\n{logpath.read_text()[-2000:]}"
        assert len(set(leases.values())) == len(leases), f"an address given twice: {leases}"
        for i, ip in leases.items():  # MAC byte i went to process i % n, which lends only int(ip) % n == i % n
            assert int(IPv4Address(ip)) % n == i % n, f"client {i} got {ip} from another process: {leases}"
        # Every process recorded the PXE clients it served (process k: MACs k, k + n, ...), each in
        # its own recorder thread, into the one registry file.
        macs = {f"02:00:00:66:01:{i:02x}" for i in range(6)}
        assert until(lambda: discovered() == macs, 10), f"discovered {discovered()}\n{logpath.read_text()[-2000:]}"
        assert "event=discovery.recorded" in logpath.read_text()

        # Relayed: every packet comes from RELAY:67, so the kernel's own reuseport hash would put
        # them all on one socket; the steering program spreads them by MAC, DISCOVER and REQUEST
        # of a client to the same process.
        need(shutil.which("perfdhcp") is not None, "perfdhcp (kea-admin) is not installed")
        relayed_exchanges()
        relayed = [
            line.split("|")
            for line in (tmp_path / "store" / "leases.public").read_text().splitlines()
            if line.startswith("10.66.") and line.split("|")[1] != "00"
        ]
        residues = {(int(IPv4Address(ip)) % n, int(cid[-2:], 16) % n) for ip, cid, *_ in relayed}
        assert len(relayed) >= 45  # the 6 udhcpc clients and perfdhcp's
        assert residues == {(k, k) for k in range(n)}, f"an address from another process's stripe: {relayed}"

        os.kill(first[0], signal.SIGKILL)
        assert until(lambda: len(started(logpath)) == 2, 15), (
            f"process 1 was not started again:\n{logpath.read_text()[-2000:]}"
        )
        assert "event=dhcp.process_died process=1" in logpath.read_text()
        again = bind([6, 7], 2)
        for i, ip in again.items():
            assert ip and int(IPv4Address(ip)) % n == i % n, f"after the restart: {again}"
        assert not set(again.values()) & set(leases.values())
        # With 3 processes the kernel moved process 2's socket into process 1's place and the
        # restarted one came last: unicast now reaches another process than its broadcasts, and
        # every relayed exchange must still complete.
        relayed_exchanges()

        children = [started(logpath, k)[-1] for k in range(1, n)]
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown path runs in serve
        proc.wait()
        assert until(lambda: all(gone(child) for child in children), 10), f"DHCP processes {children} outlived serve"
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        for k in range(1, n):
            for pid in started(logpath, k):
                if not gone(pid):
                    os.kill(pid, signal.SIGKILL)
    assert "Traceback" not in logpath.read_text()
