"""The real server on loopback (an ephemeral high port) against raw requests: the hostile-request
table, option behaviour on the wire, windows, retransmission and dynamic files."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import struct
import time

import pytest

from bootsrv.tftp import paths
from bootsrv.tftp.server import MAX_NETASCII, TftpServer
from tests.tftp.wire import fetch, request

RRQ, WRQ = 1, 2
SECRET = b"TOP-SECRET outside the root\n"


@pytest.fixture
def root(tmp_path):
    top = tmp_path / "srv"
    root = top / "tftp"
    (root / "pxelinux.cfg").mkdir(parents=True)
    (top / "secret").write_bytes(SECRET)
    (root / "small.txt").write_bytes(b"line one\nline two\r\n")
    (root / "boot.bin").write_bytes(os.urandom(100_000))
    (root / "exact").write_bytes(os.urandom(512 * 4))
    (root / "empty").write_bytes(b"")
    (root / "pxelinux.cfg" / "default").write_bytes(b"DEFAULT local\n")
    (root / "private").write_bytes(SECRET)
    os.symlink("../secret", root / "link-out")
    os.symlink(str(top / "secret"), root / "link-abs")
    os.symlink("boot.bin", root / "link-in")
    for p in root.rglob("*"):
        if p.is_file() and p.name != "private":
            os.chmod(p, 0o644)
    os.chmod(root / "private", 0o600)
    os.chmod(top / "secret", 0o644)
    return root


@pytest.fixture
def dynamic_calls():
    return []


@pytest.fixture
def server(root, dynamic_calls):
    def dynamic(path: str, client_ip: str) -> bytes | None:
        dynamic_calls.append((path, client_ip))
        if path == "pxelinux.cfg/01-52-54-00-12-34-56":
            return f"DEFAULT install\n# for {client_ip}\n".encode()
        if path == "pxelinux.cfg/default":
            return None  # not ours: the disk answers
        if path == "boom":
            raise RuntimeError("template exploded")
        return None

    srv = TftpServer(str(root), "127.0.0.1", 0, dynamic=dynamic, workers=2)
    srv.start()
    yield srv
    srv.stop()


def rrq(name, mode=b"octet", **options):
    return request(RRQ, name, mode, {k: v for k, v in options.items()})


# (id, packet, expected TFTP error code or None for "served", expected data or None)
HOSTILE = [
    ("traversal", rrq("../secret"), paths.ACCESS_VIOLATION, None),
    ("deep traversal", rrq("pxelinux.cfg/../../secret"), paths.ACCESS_VIOLATION, None),
    ("backslash traversal", rrq("..\\secret"), paths.ACCESS_VIOLATION, None),
    ("absolute path stays in root", rrq("/etc/passwd"), paths.FILE_NOT_FOUND, None),
    ("absolute traversal", rrq("/../secret"), paths.ACCESS_VIOLATION, None),
    ("symlink out (relative)", rrq("link-out"), paths.ACCESS_VIOLATION, None),
    ("symlink out (absolute)", rrq("link-abs"), paths.ACCESS_VIOLATION, None),
    ("not world-readable", rrq("private"), paths.ACCESS_VIOLATION, None),
    ("write request", request(WRQ, "boot.bin"), paths.ACCESS_VIOLATION, None),
    ("write request new file", request(WRQ, "new.bin"), paths.ACCESS_VIOLATION, None),
    ("missing file", rrq("nope.efi"), paths.FILE_NOT_FOUND, None),
    ("directory", rrq("pxelinux.cfg"), paths.FILE_NOT_FOUND, None),
    ("mail mode", rrq("small.txt", b"mail"), paths.ILLEGAL_OPERATION, None),
    ("no terminating NUL", b"\x00\x01small.txt\x00octet", paths.ILLEGAL_OPERATION, None),
    ("DATA to the request port", struct.pack("!HH", 3, 1) + b"x", paths.ILLEGAL_OPERATION, None),
    ("unknown opcode", struct.pack("!HH", 9, 1) + b"x\0octet\0", paths.ILLEGAL_OPERATION, None),
    ("odd option list", b"\x00\x01small.txt\x00octet\x00blksize\x00", paths.ILLEGAL_OPERATION, None),
    # Bad option values are left out of the OACK (RFC 2347) and the file comes at 512.
    ("blksize 65465", rrq("small.txt", blksize=65465), None, "small.txt"),
    ("blksize 7", rrq("small.txt", blksize=7), None, "small.txt"),
    ("blksize not a number", rrq("small.txt", blksize="lots"), None, "small.txt"),
    ("unknown option", rrq("small.txt", rollover=0, multicast="x"), None, "small.txt"),
    ("backslashes normalised", rrq("pxelinux.cfg\\default"), None, "pxelinux.cfg/default"),
    ("symlink inside", rrq("link-in"), None, "boot.bin"),
]


@pytest.mark.parametrize("packet,code,served", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_requests(server, root, packet, code, served):
    res = fetch(server.port, packet)
    assert SECRET not in res.data
    if code is not None:
        assert res.error is not None and res.error[0] == code, res
        assert res.data == b"" and res.oack is None
    else:
        assert res.error is None, res.error
        assert res.oack is None  # nothing acceptable was asked: no OACK, DATA at once
        assert res.data == (root / served).read_bytes()
        assert max(res.sizes) <= 512


def test_server_survives_a_hostile_burst(server, root):
    for _case, packet, _code, _served in HOSTILE:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(packet, ("127.0.0.1", server.port))
    assert fetch(server.port, rrq("boot.bin")).data == (root / "boot.bin").read_bytes()


def test_oack_carries_only_what_was_asked(server, root):
    size = (root / "boot.bin").stat().st_size
    assert fetch(server.port, rrq("boot.bin", tsize=0)).oack == {"tsize": str(size)}
    res = fetch(server.port, rrq("boot.bin", blksize=1468))
    assert res.oack == {"blksize": "1468"} and max(res.sizes) == 1468
    assert res.data == (root / "boot.bin").read_bytes()
    res = fetch(server.port, rrq("boot.bin", TSIZE=0, Timeout=2, blksize=1024, windowsize=8, foo=1))
    assert res.oack == {"TSIZE": str(size), "Timeout": "2", "blksize": "1024", "windowsize": "8"}
    assert res.data == (root / "boot.bin").read_bytes()


def test_uefi_tsize_probe_then_error_8_is_normal(server, root, caplog):
    caplog.set_level(logging.DEBUG, logger="bootsrv.tftp")
    res = fetch(server.port, rrq("boot.bin", tsize=0, blksize=1468), abort_after_oack=8)
    assert res.oack["tsize"] == "100000"
    res = fetch(server.port, rrq("boot.bin", blksize=1468))  # the firmware's real fetch
    assert res.data == (root / "boot.bin").read_bytes()
    time.sleep(0.1)
    lines = [r for r in caplog.records if r.getMessage() == "tftp.transfer"]
    assert len(lines) == 2, "one line per transfer"
    assert "probe" in lines[0].bootsrv_fields["outcome"] and lines[0].levelno == logging.INFO
    assert lines[1].bootsrv_fields["outcome"] == "ok" and lines[1].bootsrv_fields["bytes"] == 100000
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("name,blocks,last", [("empty", 1, 0), ("exact", 5, 0), ("small.txt", 1, 19)])
def test_final_block_rules(server, root, name, blocks, last):
    # RFC 1350: a transfer ends with a block shorter than blksize, an empty one if need be.
    res = fetch(server.port, rrq(name))
    assert res.blocks == blocks and res.sizes[-1] == last
    assert res.data == (root / name).read_bytes()


@pytest.mark.parametrize(
    "name,want",
    [
        ("small.txt", b"line one\r\nline two\r\0\r\n"),
        ("pxelinux.cfg/01-52-54-00-12-34-56", b"DEFAULT install\r\n# for 127.0.0.1\r\n"),
    ],
    ids=["disk", "dynamic"],
)
def test_netascii(server, name, want):
    # RFC 2349: tsize is the size the client will receive, so after the translation.
    res = fetch(server.port, rrq(name, b"netascii", tsize=0))
    assert res.data == want and res.oack == {"tsize": str(len(want))}


def test_netascii_refuses_a_file_too_large_to_translate_in_memory(server, root):
    huge = root / "huge.txt"
    with open(huge, "wb") as f:
        f.truncate(MAX_NETASCII + 1)  # sparse: nothing is written
    os.chmod(huge, 0o644)
    assert fetch(server.port, rrq("huge.txt", b"netascii")).error[0] == paths.ACCESS_VIOLATION
    assert fetch(server.port, rrq("small.txt", b"netascii")).data  # and the server goes on


def test_dynamic_file_before_disk(server, root, dynamic_calls):
    res = fetch(server.port, rrq("/pxelinux.cfg/01-52-54-00-12-34-56", tsize=0))
    assert res.data == b"DEFAULT install\n# for 127.0.0.1\n"
    assert res.oack == {"tsize": str(len(res.data))}
    assert ("pxelinux.cfg/01-52-54-00-12-34-56", "127.0.0.1") in dynamic_calls
    assert fetch(server.port, rrq("pxelinux.cfg/default")).data == b"DEFAULT local\n"  # None: disk
    assert fetch(server.port, rrq("boom")).error[0] == paths.NOT_DEFINED  # a failing source: ERROR 0
    assert fetch(server.port, rrq("../secret")).error[0] == paths.ACCESS_VIOLATION
    assert "../secret" not in [p for p, _ in dynamic_calls]  # confinement comes first
    assert fetch(server.port, rrq("small.txt")).data == (root / "small.txt").read_bytes()  # still serving


def test_window_and_block_number_rollover(server, root):
    # 8-byte blocks: 70,000 blocks, past 65535, so the block number wraps to 0.
    big = os.urandom(8 * 70_000 + 3)
    (root / "wrap.bin").write_bytes(big)
    os.chmod(root / "wrap.bin", 0o644)
    res = fetch(server.port, rrq("wrap.bin", blksize=8, windowsize=64), timeout=10)
    assert res.oack == {"blksize": "8", "windowsize": "64"}
    assert hashlib.sha256(res.data).digest() == hashlib.sha256(big).digest()


def _recv(sock, timeout=2.0):
    sock.settimeout(timeout)
    data, peer = sock.recvfrom(70000)
    return struct.unpack("!HH", data[:4]), data[4:], peer


def test_window_resumes_after_a_gap(server, root):
    # RFC 7440: the client acknowledges the last block it got in order; the server resumes there.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(rrq("boot.bin", windowsize=4), ("127.0.0.1", server.port))
        (op, _), _, tid = _recv(s)
        assert op == 6
        s.sendto(struct.pack("!HH", 4, 0), tid)
        got = [_recv(s)[0][1] for _ in range(4)]
        assert got == [1, 2, 3, 4]
        s.sendto(struct.pack("!HH", 4, 2), tid)  # "3 never came"
        assert [_recv(s)[0][1] for _ in range(4)] == [3, 4, 5, 6]


def test_lockstep_duplicate_ack_is_ignored_then_timeout_resends(server, root):
    # RFC 1123 4.2.3.1 (Sorcerer's Apprentice): a duplicate ACK must not cause a second send.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(rrq("boot.bin", timeout=1), ("127.0.0.1", server.port))
        (op, _), _, tid = _recv(s)
        assert op == 6
        s.sendto(struct.pack("!HH", 4, 0), tid)
        assert _recv(s)[0] == (3, 1)
        s.sendto(struct.pack("!HH", 4, 1), tid)
        assert _recv(s)[0] == (3, 2)
        s.sendto(struct.pack("!HH", 4, 1), tid)  # duplicate
        t0 = time.monotonic()
        assert _recv(s, 3)[0] == (3, 2)  # the retransmission, after the timeout, not at once
        assert time.monotonic() - t0 >= 0.8


def test_retransmitted_request_starts_one_transfer(server, root):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(3):
            s.sendto(rrq("boot.bin"), ("127.0.0.1", server.port))
        (op, block), _, tid = _recv(s)
        assert (op, block) == (3, 1)
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recvfrom(1000)  # no second DATA 1 from another transfer


def test_no_per_packet_logging(server, root, caplog):
    caplog.set_level(logging.DEBUG)
    fetch(server.port, rrq("boot.bin"))  # 196 blocks
    time.sleep(0.1)
    assert len(caplog.records) <= 2, [r.getMessage() for r in caplog.records]


def test_any_address_replies_from_the_address_asked(root):
    # Listening on 0.0.0.0, a request to 127.0.0.2 is answered from 127.0.0.2 (PXE ROMs check),
    # errors included, not from whatever source the route to the client would pick.
    srv = TftpServer(str(root), "0.0.0.0", 0, workers=1)
    srv.start()
    try:
        for name, opcode in (("small.txt", 3), ("nope", 5)):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                s.sendto(rrq(name), ("127.0.0.2", srv.port))
                (op, _), _, peer = _recv(s)
                assert op == opcode and peer[0] == "127.0.0.2"
    finally:
        srv.stop()


def test_silent_client_after_oack_is_not_a_failure(server, root, caplog, monkeypatch):
    from bootsrv.tftp import transfer

    monkeypatch.setattr(transfer, "MAX_RETRIES", 1)  # two 1 s timeouts instead of six
    caplog.set_level(logging.INFO, logger="bootsrv.tftp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(rrq("boot.bin", tsize=0), ("127.0.0.1", server.port))
        assert _recv(s)[0][0] == 6
        assert _recv(s, 3)[0][0] == 6  # the OACK again after the timeout
    deadline = time.monotonic() + 5
    while not [r for r in caplog.records if r.getMessage() == "tftp.transfer"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    [line] = [r for r in caplog.records if r.getMessage() == "tftp.transfer"]
    assert line.bootsrv_fields["outcome"] == "no answer to OACK" and line.levelno == logging.INFO
