"""dhcp.processes without a lab: the steering rule, and a child that cannot start.

The lab test (tests/integration/test_dhcp_processes.py) runs two processes against real clients."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootsrv.config import parse
from bootsrv.dhcp.server import CHADDR_LAST, steered_to, steering_program
from bootsrv.dhcp.workers import Processes, WorkerFailed


def test_the_kernel_program_and_the_broadcast_rule_pick_the_same_process():
    # ldb [33]; mod #3; ret a - what steered_to computes for broadcasts in user space.
    assert steering_program(3) == bytes.fromhex("3000 0000 21000000 9400 0000 03000000 1600 0000 00000000".replace(" ", ""))
    payload = bytearray(300)
    for last in range(256):
        payload[CHADDR_LAST] = last
        assert steered_to(bytes(payload), 3) == last % 3
    assert steered_to(b"\x01" * 20, 3) == 0  # too short to hold a chaddr: the program's load fails, 0


def test_a_process_that_cannot_start_fails_the_start_with_its_reason(tmp_path, capfd):
    # The device does not exist, so process 1 cannot bind: nothing is ever served.
    cfg = parse(f"""
[server]
owner_ips = ["10.74.0.1"]
[store]
directory = "{tmp_path / 'store'}"
[dhcp]
processes = 2
port = 6767
[[networks]]
name = "nowhere"
subnet = "10.74.0.0/24"
interface = "nosuch9"
""", "t")
    others = Processes(cfg)
    with pytest.raises(WorkerFailed, match="DHCP process 1 did not start: exited 2 before it was ready"):
        others.start()
    assert "event=dhcp.process_failed process=1" in capfd.readouterr().err
    for pid in others.pids.values():  # the failed child was waited for: no zombie, no orphan
        assert not Path(f"/proc/{pid}").exists()
