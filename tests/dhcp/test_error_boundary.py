"""The socket loop's error boundary, on loopback (no root): a packet that breaks a protocol rule
is dropped and counted as malformed, any other exception is a bug, logged with its traceback and
counted apart; after either the loop answers the next packet."""

from __future__ import annotations

import logging
import socket
import time
from ipaddress import IPv4Address

import pytest

from bootsrv.dhcp.packet import MalformedPacket, decode
from bootsrv.dhcp.server import Arrival, DhcpServer, Outgoing
from bootsrv.errors import BootsrvError, InvalidInput
from bootsrv.log import KeyValueFormatter


def handler(raw: bytes, arrival: Arrival) -> Outgoing:
    if raw.startswith(b"bad"):
        decode(raw)  # the real codec's refusal: too short for a BOOTP header
    if raw.startswith(b"bug"):
        return {}["a key the handler forgot"]  # a bug of ours, not the client's
    return Outgoing(b"echo:" + raw, IPv4Address(arrival.peer[0]), arrival.peer[1])


@pytest.fixture
def server():
    # The relay socket (no device) on loopback, a port of the kernel's choosing.
    srv = DhcpServer([], relay_socket=True, port=0, handler=handler, address="127.0.0.1")
    srv.start()
    yield srv
    srv.stop()


def exchange(srv: DhcpServer, *datagrams: bytes) -> bytes:
    """Send each datagram in order; the one answer that comes back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(2.0)
        for raw in datagrams:
            client.sendto(raw, ("127.0.0.1", srv.bound[0][1]))
        return client.recvfrom(2048)[0]


def settled(srv: DhcpServer, malformed: int, errors: int) -> bool:
    deadline = time.monotonic() + 2
    while (srv.malformed, srv.errors) != (malformed, errors) and time.monotonic() < deadline:
        time.sleep(0.01)
    return (srv.malformed, srv.errors) == (malformed, errors)


def test_malformed_packet_is_counted_as_malformed_and_the_next_is_answered(server, caplog):
    with caplog.at_level(logging.INFO, logger="bootsrv.dhcp"):
        assert exchange(server, b"bad packet", b"next") == b"echo:next"
        assert settled(server, malformed=1, errors=0)
    (line,) = [r for r in caplog.records if r.getMessage() == "dhcp.dropped"]
    assert not line.exc_info  # the client's fault: one line, no traceback
    assert "shorter than the 236-byte BOOTP header" in line.bootsrv_fields["error"]


def test_a_bug_is_counted_apart_with_its_traceback_and_the_next_is_answered(server, caplog):
    with caplog.at_level(logging.INFO, logger="bootsrv.dhcp"):
        assert exchange(server, b"bug in the handler", b"next") == b"echo:next"
        assert settled(server, malformed=0, errors=1)
    assert not [r for r in caplog.records if r.getMessage() == "dhcp.dropped"]  # never filed as malformed
    (line,) = [r for r in caplog.records if r.getMessage() == "dhcp.handler_failed"]
    assert line.levelno == logging.ERROR and line.exc_info[0] is KeyError
    text = KeyValueFormatter().format(line)
    assert "\n" not in text  # still one line per event
    assert "Traceback (most recent call last)" in text and "in handler" in text and "bytes=18" in text


def test_malformed_packet_is_in_the_error_tree_naming_its_field():
    with pytest.raises(MalformedPacket) as info:
        decode(b"\x01" * 20)
    assert isinstance(info.value, InvalidInput) and isinstance(info.value, BootsrvError)
    assert info.value.field == "packet" and info.value.http_status == 400
    assert str(info.value) == "packet: 20 bytes, shorter than the 236-byte BOOTP header"
