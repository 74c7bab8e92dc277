"""The DHCP socket loop in lab namespaces, with a stand-in handler (no engine): which interfaces
get sockets, where replies go (broadcast, unicast with a neighbour entry, relay), and that a
handler failure costs one packet. Also the helpers the other test_dhcp_* modules import."""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from bootsrv.app.dhcp import SHED_BACKLOG
from bootsrv.dhcp.packet import MalformedPacket
from bootsrv.dhcp.server import BATCH, Arrival, Deferred, DhcpServer, Outgoing, set_neighbour

pytestmark = pytest.mark.integration

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(ns: str, fn, *args):
    """Run fn(*args) in a fresh thread that has entered network namespace `ns` (setns(2) changes
    only the calling thread). Sockets created there stay in `ns` for their whole life."""
    result: dict = {}

    def body():
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {ns}")
        finally:
            os.close(fd)
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # re-raised in the caller
            result["error"] = exc

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def client_socket(ns: str, ifname: str, port: int = 68) -> socket.socket:
    def make():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        sock.bind(("0.0.0.0", port))
        sock.settimeout(1.0)
        return sock

    return in_netns(ns, make)


def wait_for(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def tool(name: str) -> str | None:
    from shutil import which

    return which(name)


ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------


def _echo(raw: bytes, arrival: Arrival) -> Outgoing | None:
    if raw.startswith(b"bad"):
        raise MalformedPacket("option 53 has length 0, expected 1")
    if raw.startswith(b"uni:"):
        ip, mac = raw[4:].decode().split(",")
        return Outgoing(b"to-you", IPv4Address(ip), 68, bytes.fromhex(mac.replace(":", "")))
    if arrival.interface is None:  # the relay socket answers the relay
        return Outgoing(b"relayed:" + raw, IPv4Address(arrival.peer[0]), arrival.peer[1])
    return Outgoing(b"echo:" + arrival.interface.encode() + b":" + raw, IPv4Address("255.255.255.255"), 68)


@pytest.fixture
def two_segments(lab):
    a, b = lab.segment("a"), lab.segment("b")
    server, ca, cb = lab.host("srv"), lab.host("ca"), lab.host("cb")
    lab.plug(server, a, "net0", "10.61.0.1/24")
    lab.plug(server, b, "net1", "10.61.1.1/24")
    lab.plug(ca, a, "net0", "10.61.0.9/24", mac="02:00:00:61:00:09")
    lab.plug(cb, b, "net0", "10.61.1.9/24")
    return server, ca, cb


def test_answers_only_on_the_named_interface(two_segments):
    server, ca, cb = two_segments
    srv = DhcpServer(["net0"], relay_socket=False, port=67, handler=_echo, workers=2)
    in_netns(server.ns, srv.start)
    try:
        assert srv.bound == [("net0", 67)]
        sa, sb = client_socket(ca.ns, "net0"), client_socket(cb.ns, "net0")
        sa.sendto(b"hello", ("255.255.255.255", 67))
        assert sa.recvfrom(2048)[0] == b"echo:net0:hello"
        sb.sendto(b"hello", ("255.255.255.255", 67))
        with pytest.raises(TimeoutError):
            sb.recvfrom(2048)  # net1 is named by no network: no socket, no answer
        # A packet the handler rejects is logged and dropped; the next one is answered.
        sa.sendto(b"bad packet", ("255.255.255.255", 67))
        sa.sendto(b"again", ("255.255.255.255", 67))
        assert sa.recvfrom(2048)[0] == b"echo:net0:again"
        # Two workers read the socket: the one that took "bad packet" may still be counting
        # when the other has answered "again".
        deadline = time.monotonic() + 2
        while srv.malformed == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.malformed == 1 and srv.errors == 0
    finally:
        srv.stop()


def test_no_interface_no_relay_opens_nothing(two_segments):
    server, ca, _ = two_segments
    srv = DhcpServer([], relay_socket=False, port=67, handler=_echo)
    in_netns(server.ns, srv.start)
    try:
        assert srv.bound == []
        listening = server.run(["ss", "-uln"]).stdout
        assert ":67 " not in listening
    finally:
        srv.stop()


def test_unicast_to_an_unconfigured_client_uses_a_neighbour_entry(two_segments):
    server, ca, _ = two_segments
    srv = DhcpServer(["net0"], relay_socket=False, port=67, handler=_echo, workers=1)
    in_netns(server.ns, srv.start)
    try:
        sa = client_socket(ca.ns, "net0")
        sa.sendto(b"uni:10.61.0.9,02:00:00:61:00:09", ("255.255.255.255", 67))
        data, peer = sa.recvfrom(2048)
        assert data == b"to-you"
        neigh = server.run(["ip", "neigh", "show", "10.61.0.9", "dev", "net0"]).stdout
        assert "02:00:00:61:00:09" in neigh
    finally:
        srv.stop()


def test_set_neighbour_refuses_what_the_kernel_refuses(two_segments):
    server, *_ = two_segments

    def attempt():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            ok = set_neighbour(sock, "net0", IPv4Address("10.61.0.77"), bytes.fromhex("020000610077"))
            no_device = set_neighbour(sock, "nosuch0", IPv4Address("10.61.0.79"), bytes.fromhex("020000610077"))
            bad_mac = set_neighbour(sock, "net0", IPv4Address("10.61.0.78"), b"\x01\x02")
            return ok, no_device, bad_mac

    assert in_netns(server.ns, attempt) == (True, False, False)


def test_relay_socket_answers_the_relay(lab):
    seg = lab.segment("r")
    server, relay = lab.host("srv"), lab.host("relay")
    lab.plug(server, seg, "net0", "10.62.0.1/24")
    lab.plug(relay, seg, "net0", "10.62.0.2/24")
    srv = DhcpServer([], relay_socket=True, port=67, handler=_echo, workers=1)
    in_netns(server.ns, srv.start)
    try:
        assert srv.bound == [(None, 67)]

        def make():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("10.62.0.2", 67))
            sock.settimeout(1.0)
            return sock

        sock = in_netns(relay.ns, make)
        sock.sendto(b"from-relay", ("10.62.0.1", 67))
        data, peer = sock.recvfrom(2048)
        assert data == b"relayed:from-relay" and peer == ("10.62.0.1", 67)
    finally:
        srv.stop()


def test_subprocess_in_netns_helper(two_segments):
    # The other modules run real clients with Host.run/popen; sanity of the topology they rely on.
    server, ca, _ = two_segments
    out = subprocess.run(ca.cmd(["ping", "-c", "1", "-W", "2", "10.61.0.1"]), capture_output=True, text=True)
    assert "1 received" in out.stdout


def test_service_sockets_follow_the_config(two_segments, tmp_path):
    from bootsrv.app.dhcp import dhcp_services, interface_address, relayed, served_interfaces
    from bootsrv.app.wiring import Wiring
    from bootsrv.config import parse

    server, *_ = two_segments
    assert in_netns(server.ns, interface_address, "net0") == IPv4Address("10.61.0.1")
    assert in_netns(server.ns, interface_address, "nosuch0") is None
    # The embedded default names no interface and no relay: no DHCP service at all.
    assert dhcp_services(Wiring(parse("", "default"))) == []
    cfg = parse(
        '[[networks]]\nname = "a"\nsubnet = "10.61.0.0/24"\ninterface = "net0"\n'
        '[[networks]]\nname = "r"\nsubnet = "10.61.9.0/24"\nrelays = ["10.61.1.254"]\n',
        "t",
    )
    assert served_interfaces(cfg) == ["net0"] and relayed(cfg)
    off = parse('[dhcp]\nenabled = false\n[[networks]]\nname = "a"\nsubnet = "10.61.0.0/24"\ninterface = "net0"\n', "t")
    assert dhcp_services(Wiring(off)) == []


def test_a_missing_interface_is_a_config_error(two_segments):
    from bootsrv.app.dhcp import DhcpService
    from bootsrv.config import parse
    from bootsrv.errors import ConfigError

    server, *_ = two_segments
    cfg = parse(
        '[[networks]]\nname = "a"\nsubnet = "10.61.0.0/24"\ninterface = "net0"\n'
        '[[networks]]\nname = "b"\nsubnet = "10.61.5.0/24"\ninterface = "nosuch9"\n',
        "t",
    )
    svc = DhcpService(cfg, lambda: _echo)
    with pytest.raises(ConfigError, match=r"networks\[1\]\.interface: cannot serve 'nosuch9'"):
        in_netns(server.ns, svc.start)
    # Nothing stays open after the failed start.
    assert ":67 " not in server.run(["ss", "-uln"]).stdout


class Commit:
    """A stand-in for the store's Pending: notes how many datagrams the loop had decided when it
    asked for durability, then succeeds or fails."""

    def __init__(self, decided: list, error: Exception | None = None):
        self.decided, self.error, self.asked = decided, error, None

    def result(self, timeout=None):
        self.asked = len(self.decided)
        if self.error is not None:
            raise self.error
        return None


def test_a_batch_is_decided_before_its_acks_wait_for_the_disk(two_segments):
    server, ca, _ = two_segments
    decided: list[bytes] = []
    commits: list[Commit] = []
    inside, go = threading.Event(), threading.Event()

    def handler(raw: bytes, arrival: Arrival):
        if raw == b"first":
            inside.set()
            go.wait(5)  # the others queue up in the socket meanwhile
        decided.append(raw)
        commit = Commit(decided, OSError("fsync failed") if raw == b"broken" else None)
        commits.append(commit)
        return Deferred(
            commit, lambda _stored, raw=raw: Outgoing(b"durable:" + raw, IPv4Address("255.255.255.255"), 68)
        )

    srv = DhcpServer(["net0"], relay_socket=False, port=67, handler=handler, workers=1)
    in_netns(server.ns, srv.start)
    try:
        sa = client_socket(ca.ns, "net0")
        sa.sendto(b"first", ("255.255.255.255", 67))
        assert inside.wait(3)
        for raw in (b"second", b"broken", b"third"):
            sa.sendto(raw, ("255.255.255.255", 67))
        time.sleep(0.2)
        go.set()
        got = [sa.recvfrom(2048)[0] for _ in range(3)]
        # Every datagram waiting was decided before the first ACK asked for durability, so one
        # flush covers the batch; the ACK whose commit failed never went out.
        assert got == [b"durable:first", b"durable:second", b"durable:third"]
        assert [c.asked for c in commits] == [4, 4, 4, 4]
        with pytest.raises(TimeoutError):
            sa.recvfrom(2048)
    finally:
        srv.stop()


def test_arrival_tells_how_full_the_receive_buffer_was(two_segments):
    server, ca, _ = two_segments
    seen: list[Arrival] = []
    inside, go = threading.Event(), threading.Event()

    def handler(raw: bytes, arrival: Arrival):
        if not seen:
            inside.set()
            go.wait(5)  # the rest queue up in the socket meanwhile
        seen.append(arrival)
        return None

    srv = DhcpServer(["net0"], relay_socket=False, port=67, handler=handler, workers=1)
    in_netns(server.ns, srv.start)
    try:
        sa = client_socket(ca.ns, "net0")
        sa.sendto(b"first", ("255.255.255.255", 67))
        assert inside.wait(3)
        backlog = 3 * BATCH
        for i in range(backlog):
            sa.sendto(i.to_bytes(2, "big") * 500, ("255.255.255.255", 67))
        time.sleep(0.3)
        go.set()
        assert wait_for(lambda: len(seen) == 1 + backlog, 5)
        # The first batch found an empty socket; the ones after a full batch measured the queue
        # (SO_MEMINFO): about 2 x BATCH datagrams of 1 kB, a few percent of the buffer, then less.
        assert all(a.backlog == 0 for a in seen[:BATCH])
        later = [a.backlog for a in seen[BATCH:]]
        assert 0 < later[0] < SHED_BACKLOG and later[0] >= max(later)
    finally:
        srv.stop()
