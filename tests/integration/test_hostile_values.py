"""Values a client on the boot segment chooses, at a running `bootsrv serve` in lab namespaces:
a host name (option 12) made of terminal escapes and a forged log event is written escaped on
its one log line, and a client id far beyond RFC 2132's 255 octets gets no lease and no record.

The packets are sent from a lab host's socket (no DHCP client lets one choose these bytes).
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_dhcp_clients import config_text  # noqa: E402
from test_dhcp_fuzz import bootp  # noqa: E402
from test_dhcp_lab import in_netns  # noqa: E402

pytest.importorskip("bootsrv.dhcp.engine", reason="the DHCP engine (bootsrv/dhcp/engine.py) is not in this tree yet")

pytestmark = pytest.mark.integration

SERVER = "10.65.0.1"
# Host names (option 12) as a hostile client sends them: ESC sequences (clear the screen, set
# the window title), a carriage return that hides what came before it, NUL, DEL and a byte of C1
# (the DHCP codec reads option 12 as ASCII: U+FFFD), with no space to make a log quote them; and a
# newline that starts a forged event. MAC -> (option 12, what the log line must say).
HOSTILE = {
    b"\x02\0\0\0\x0c\x01": (
        b"evil\x1b[2J\x1b]0;owned\x07\rnode1\x00\x7f\x9b",
        '"evil\\u001b[2J\\u001b]0;owned\\u0007\\rnode1\\u0000\\u007f\ufffd"',
    ),
    b"\x02\0\0\0\x0c\x02": (
        b"x\nts=0 level=error event=forged",
        '"x\\nts=0 level=error event=forged"',
    ),
}


def launch_debug(host, workdir: Path, text: str):
    """`bootsrv --log-level debug serve` in `host`: one dhcp.reply line per reply."""
    conf = workdir / "serve.toml"
    conf.write_text(text)
    (workdir / "store").mkdir(exist_ok=True)
    logpath = workdir / "serve.log"
    argv = [sys.executable, "-m", "bootsrv", "--config", str(conf), "--log-level", "debug", "serve"]
    proc = host.popen(argv, stderr=open(logpath, "w"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "event=ready" not in logpath.read_text():
        assert proc.poll() is None, logpath.read_text()[-2000:]
        time.sleep(0.1)
    assert "event=ready" in logpath.read_text(), logpath.read_text()[-2000:]
    return proc, logpath


def send(ns: str, packets: list[bytes], wait: float = 3.0) -> list[bytes]:
    """Broadcast `packets` from port 68 on net0 of `ns`; the replies heard within `wait`."""

    def run() -> list[bytes]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"net0")
        sock.bind(("0.0.0.0", 68))
        sock.settimeout(0.2)
        try:
            for packet in packets:
                sock.sendto(packet, ("255.255.255.255", 67))
            heard, deadline = [], time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    heard.append(sock.recv(4096))
                except TimeoutError:
                    pass
            return heard
        finally:
            sock.close()

    return in_netns(ns, run)


def test_hostile_values_from_the_segment(lab, tmp_path):
    seg = lab.segment("lan")
    server, attacker = lab.host("srv"), lab.host("atk")
    lab.plug(server, seg, "net0", f"{SERVER}/24")
    lab.plug(attacker, seg, "net0", "10.65.0.250/24")
    proc, logpath = launch_debug(server, tmp_path, config_text(tmp_path))
    try:
        named = [
            bootp(xid=i, mac=mac, options=[(53, b"\x01"), (12, name)])
            for i, (mac, (name, _)) in enumerate(HOSTILE.items(), 1)
        ]
        # Option 61 in two parts (RFC 3396 concatenation): one client id of 300 octets.
        long_id = b"\x01" + bytes(range(255)) + bytes(44)
        huge = bootp(
            xid=0x6161, mac=b"\x02\0\0\0\x61\x61", options=[(53, b"\x01"), (61, long_id[:255]), (61, long_id[255:])]
        )
        heard = send(attacker.ns, [*named, huge])
        offers_to = {reply[28:34] for reply in heard}
        assert set(HOSTILE) <= offers_to  # a host name is no reason to refuse a client
        assert b"\x02\0\0\0\x61\x61" not in offers_to  # no client id of 300 octets is a client's

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "02:00:00:00:61:61" not in logpath.read_text():
            time.sleep(0.1)
        raw = logpath.read_bytes()
        assert proc.poll() is None
        # Not one byte of the name went to the log raw: no ESC, BEL, NUL, DEL, no forged line.
        for byte in b"\x1b\x07\x00\x7f\r":
            assert bytes([byte]) not in raw, f"byte {byte:#04x} written raw"
        lines = raw.decode().splitlines()
        assert not [line for line in lines if not line.startswith("ts=2")], "a line not made by bootsrv"
        for mac, (name, written) in HOSTILE.items():
            (reply,) = [line for line in lines if "event=dhcp.reply" in line and f"mac={mac.hex(':')}" in line]
            value = re.search(r' hostname=("(?:[^"\\]|\\.)*")', reply).group(1)
            assert value == written
            assert json.loads(value) == name.decode("ascii", "replace")
        # The long client id: dropped before the store, on a debug line; nothing recorded.
        assert "event=dhcp.no_client_id" in raw.decode() and "300 octets, at most 255" in raw.decode()
        assert "event=dhcp.handler_failed" not in raw.decode()
        store = (tmp_path / "store" / "leases.public").read_text()
        assert "0100010203" not in store
    finally:
        proc.terminate()
        proc.wait(timeout=10)
