"""Builders for the engine tests: a config, an engine over MemoryStore (one or a pair on one
backend), a fixed clock, and requests as real clients shape them."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from bootsrv.config import parse
from bootsrv.dhcp import packet as P
from bootsrv.dhcp.engine import Engine, ServerAddresses
from bootsrv.dhcp.packet import Packet, decode, encode
from bootsrv.dhcp.pxe import MemoryMachines
from bootsrv.leases import pools_from_config
from bootsrv.leases.memory import MemoryBackend, MemoryStore
from bootsrv.machines.model import Machine, State

NOW = 1_800_000_000.0
S1, S2 = IPv4Address("10.70.0.1"), IPv4Address("10.70.0.2")
RELAY = IPv4Address("10.71.0.1")
MAC = bytes.fromhex("525400000001")

CONFIG = f"""
[server]
owner_ips = ["{S1}"]
secondary_timeout = 20
[dhcp]
offer_hold = 30
[dhcp.classes.PXEClient]
"128" = "hex:01"
[dhcp.classes."PXEClient:Arch:00007"]
"128" = "hex:07"
[boot]
http_base_url = "http://10.70.0.1:8080"
[[networks]]
name = "public"
subnet = "10.70.0.0/24"
router = "10.70.0.1"
dns_servers = ["10.70.0.1", "10.70.0.3"]
domain = "lab.example"
mtu = 9000
lease_time = 600
interface = "net0"
options = {{ "42" = ["10.70.0.5"] }}
[[networks.ranges]]
start = "10.70.0.50"
end = "10.70.0.99"
owner = "{S1}"
[[networks.ranges]]
start = "10.70.0.150"
end = "10.70.0.199"
owner = "{S2}"
[[networks]]
name = "backend"
subnet = "10.71.0.0/24"
relays = ["{RELAY}"]
lease_time = 1200
[[networks.ranges]]
start = "10.71.0.50"
end = "10.71.0.99"
"""


def config(text: str = CONFIG, **replace):
    for old, new in replace.items():
        text = text.replace(old, new)
    return parse(text, "test")


class World:
    """One or two engines (the pair) over one in-memory store, the machines they know (a
    KnownMachines: read only) and a settable clock."""

    def __init__(self, cfg=None, machines=None):
        self.cfg = cfg or config()
        self.backend = MemoryBackend()
        self.machines = machines if machines is not None else MemoryMachines()
        self.now = NOW
        self.engines = {}
        self.stores = {}
        for me in (S1, S2):
            store = MemoryStore(pools_from_config(self.cfg), [me], backend=self.backend)
            addrs = {"net0": me}
            self.stores[me] = store
            self.engines[me] = Engine(
                self.cfg.model_copy(update={"server": self.cfg.server.model_copy(update={"owner_ips": [me]})}),
                store,
                self.machines,
                ServerAddresses(self.cfg, addrs.get),
            )

    def ask(self, req: Packet, server=S1, interface: str | None = "net0"):
        # Through the wire format both ways: what the engine sees is what a client sends.
        reply = self.engines[server].decide(decode(encode(req, 1500)), interface, self.now)
        if reply is not None and reply.durable is not None:
            stored = reply.durable.result()
            assert stored is not None
            reply.settled(stored)  # what the loop does before encoding
        return reply

    def record(self, network: str, ip) -> object:
        return self.stores[S1].get(network, IPv4Address(ip))


def request(
    mtype: int, mac: bytes = MAC, *, ciaddr="0.0.0.0", giaddr="0.0.0.0", flags=0, secs=0, xid=0x1000, **options: bytes
) -> Packet:
    opts = {P.MESSAGE_TYPE: bytes((mtype,))}
    for key, value in options.items():
        opts[int(key.removeprefix("o"))] = value
    return Packet(
        P.BOOTREQUEST,
        1,
        len(mac),
        0,
        xid,
        secs,
        flags,
        IPv4Address(ciaddr),
        IPv4Address(0),
        IPv4Address(0),
        IPv4Address(giaddr),
        mac.ljust(16, b"\0"),
        b"",
        b"",
        opts,
    )


def ip4(text) -> bytes:
    return IPv4Address(text).packed


def u32(value: bytes) -> int:
    return struct.unpack("!I", value)[0]


@pytest.fixture
def world():
    return World()


def machine(mac: str, state: State, profile: str | None = "debian12") -> Machine:
    return Machine(mac=mac, hostname="node1", state=state, profile=profile if state != State.DISCOVERED else None)
