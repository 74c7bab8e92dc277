"""dhcp.processes without a lab: the kernel programs that share datagrams by MAC, and a child
that cannot start.

The lab test (tests/integration/test_dhcp_processes.py) runs two processes against real clients."""

from __future__ import annotations

import select
import socket
from pathlib import Path

import pytest

from bootsrv.app.dhcp_processes import Processes, WorkerFailed
from bootsrv.config import parse
from bootsrv.dhcp.server import CHADDR_LAST, open_socket


@pytest.mark.parametrize("processes", [2, 3])
def test_each_process_socket_gets_exactly_the_unicast_macs_the_rule_gives_it(processes):
    # Real sockets in the kernel, on loopback and a port of its choosing (no DHCP is served): the
    # group's program picks the socket and each socket's filter lets unicast through, or a
    # datagram is dropped or read twice. (Broadcasts: tests/integration/test_dhcp_processes.py.)
    socks = []
    try:
        for k in range(processes):
            port = socks[0].getsockname()[1] if socks else 0
            socks.append(open_socket(port, None, "127.0.0.1", processes, k))
        port = socks[0].getsockname()[1]
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sent = {}
        for last in range(256):
            payload = bytearray(300)
            payload[0] = 1
            payload[CHADDR_LAST] = last
            payload[4:6] = last.to_bytes(2, "big")  # tells the datagrams apart
            sender.sendto(bytes(payload), ("127.0.0.1", port))
            sent[last] = last % processes
        sender.sendto(b"\x01" * 20, ("127.0.0.1", port))  # too short for a chaddr: the load fails, 0
        sent["short"] = 0
        sender.close()
        got = {}
        for k, sock in enumerate(socks):
            while select.select([sock], [], [], 0.5)[0]:
                raw = sock.recv(2048)
                last = int.from_bytes(raw[4:6], "big") if len(raw) == 300 else "short"
                assert last not in got, f"datagram {last} reached two processes"
                got[last] = k
        assert got == sent
    finally:
        for sock in socks:
            sock.close()


def test_a_process_that_cannot_start_fails_the_start_with_its_reason(tmp_path, capfd):
    # The device does not exist, so process 1 cannot bind: nothing is ever served.
    cfg = parse(
        f"""
[server]
owner_ips = ["10.74.0.1"]
[store]
directory = "{tmp_path / "store"}"
[dhcp]
processes = 2
port = 6767
[[networks]]
name = "nowhere"
subnet = "10.74.0.0/24"
interface = "nosuch9"
""",
        "t",
    )
    others = Processes(cfg)
    with pytest.raises(WorkerFailed, match="DHCP process 1 did not start: exited 2 before it was ready"):
        others.start()
    assert "event=dhcp.process_failed process=1" in capfd.readouterr().err
    for pid in others.pids.values():  # the failed child was waited for: no zombie, no orphan
        assert not Path(f"/proc/{pid}").exists()
