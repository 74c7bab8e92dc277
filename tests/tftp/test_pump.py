"""Pump processes: disk transfers handed over (SCM_RIGHTS) and served by another process."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import time

import pytest

from bootsrv.tftp.server import TftpServer
from tests.tftp.wire import fetch, request


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.bin").write_bytes(os.urandom(300_000))
    (root / "boot.bin").chmod(0o644)
    return root


@pytest.fixture
def server(root):
    logger = logging.getLogger("bootsrv")
    before = logger.level
    logger.setLevel(logging.INFO)  # the pumps take the server's log level
    srv = TftpServer(
        str(root), "127.0.0.1", 0, dynamic=lambda p, ip: b"rendered" if p == "dyn" else None, workers=1, processes=2
    )
    srv.start()
    yield srv
    srv.stop()
    logger.setLevel(before)


def pids_of(srv):
    return [p.proc.pid for p in srv.pumps]


def test_disk_transfers_go_to_pumps(root, capfd):
    # Started here, not in a fixture: the pumps inherit stderr as it is when they start.
    logger = logging.getLogger("bootsrv")
    before = logger.level
    logger.setLevel(logging.INFO)  # the pumps take the server's log level
    server = TftpServer(
        str(root), "127.0.0.1", 0, dynamic=lambda p, ip: b"rendered" if p == "dyn" else None, workers=1, processes=2
    )
    server.start()
    logger.setLevel(before)
    want = (root / "boot.bin").read_bytes()
    for options in ({}, {"blksize": 1468, "tsize": 0}, {"blksize": 1468, "windowsize": 16}):
        res = fetch(server.port, request(1, "boot.bin", options=options))
        assert bytes(res.data) == want
    assert fetch(server.port, request(1, "dyn")).data == b"rendered"  # dynamic: served in the server
    server.stop()  # the pumps finish and exit: their lines are all written
    err = capfd.readouterr().err
    # The pumps log the disk transfers, one line each, on the server's stderr.
    assert err.count("event=tftp.transfer") == 3, err
    assert "windowsize=16" in err


def test_retransmitted_request_starts_one_transfer(server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(3):
            s.sendto(request(1, "boot.bin"), ("127.0.0.1", server.port))
        s.settimeout(2)
        data, tid = s.recvfrom(1000)
        assert data[:4] == b"\x00\x03\x00\x01"
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recvfrom(1000)


def test_a_dead_pump_is_survived(server, root):
    for pid in pids_of(server):
        os.kill(pid, signal.SIGKILL)
    for pump in server.pumps:
        pump.proc.wait(5)
    want = hashlib.sha256((root / "boot.bin").read_bytes()).digest()
    for _ in range(3):  # served in the server itself
        assert hashlib.sha256(fetch(server.port, request(1, "boot.bin")).data).digest() == want


def test_stop_ends_the_pumps(root):
    srv = TftpServer(str(root), "127.0.0.1", 0, workers=1, processes=2)
    srv.start()
    procs = [p.proc for p in srv.pumps]
    assert all(p.poll() is None for p in procs)
    srv.stop()
    assert all(p.poll() is not None for p in procs)


@pytest.mark.parametrize("processes", [0, 2])
def test_probe_then_fetch_from_the_same_port(root, processes):
    # Some PXE firmware asks tsize, answers the OACK with ERROR 8, then asks again from the same
    # port: the second request must start at once, in the server and with pumps alike.
    srv = TftpServer(str(root), "127.0.0.1", 0, workers=1, processes=processes)
    srv.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(request(1, "boot.bin", options={"tsize": 0}), ("127.0.0.1", srv.port))
            data, tid = s.recvfrom(1000)
            assert data[:2] == b"\x00\x06"
            s.sendto(b"\x00\x05\x00\x08probe done\x00", tid)
            time.sleep(0.2)
            t0 = time.monotonic()
            s.sendto(request(1, "boot.bin"), ("127.0.0.1", srv.port))
            data, tid2 = s.recvfrom(1000)
            assert data[:4] == b"\x00\x03\x00\x01" and tid2 != tid
            assert time.monotonic() - t0 < 0.5
    finally:
        srv.stop()
