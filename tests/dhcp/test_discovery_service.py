"""Discovery as `bootsrv serve` wires it (engine_handler, the recorder of bootsrv.app.discovery,
a file registry in a temp directory, no sockets): the DHCP handler never writes the machine
registry, and a rack of 40 unknown machines is one registry write, made by the recorder."""

from __future__ import annotations

import time

from bootsrv.app.dhcp import dhcp_services, engine_handler
from bootsrv.app.discovery import DiscoveryRecorder, discovery_services
from bootsrv.app.wiring import Wiring
from bootsrv.config import parse
from bootsrv.dhcp import packet as P
from bootsrv.dhcp.packet import decode, encode
from bootsrv.dhcp.pxe import SightingLog
from bootsrv.dhcp.server import Arrival
from bootsrv.machines.model import State
from bootsrv.machines.store import FileRegistry
from tests.machines.machines_builders import CountingRegistry

from .conftest import request

RELAY = "10.72.0.1"
ARRIVAL = Arrival(None, (RELAY, 67), 0.0)


def wiring(tmp_path, boot: str = "") -> Wiring:
    cfg = parse(
        f"""
[server]
owner_ips = ["10.73.0.1"]
[store]
directory = "{tmp_path}"
[boot]
http_base_url = "http://10.73.0.1:8080"
{boot}
[[networks]]
name = "far"
subnet = "10.72.0.0/24"
relays = ["{RELAY}"]
[[networks.ranges]]
start = "10.72.0.10"
end = "10.72.0.200"
""",
        "t",
    )
    w = Wiring(cfg)
    w.machines = CountingRegistry(FileRegistry(tmp_path))  # a cached_property: the attribute replaces it
    return w


def pxe(n: int, mtype: int = P.DISCOVER, **options: bytes) -> bytes:
    mac = bytes.fromhex(f"5254000001{n:02x}")
    return encode(
        request(
            mtype,
            mac,
            giaddr=RELAY,
            xid=n,
            o60=b"PXEClient:Arch:00000:UNDI:002001",
            o93=b"\0\0",
            o97=b"\0" + bytes(range(16)),
            **options,
        )
    )


def dora(handle, n: int) -> bytes:
    """DISCOVER and REQUEST of PXE client n through the handler; the ACK's boot file."""
    offer = decode(handle(pxe(n), ARRIVAL).payload)
    ack = handle(pxe(n, P.REQUEST, o50=offer.yiaddr.packed, o54=offer.options[54]), ARRIVAL)
    return decode(ack.result().payload).file.rstrip(b"\0")


def test_the_dhcp_handler_never_writes_the_registry(tmp_path):
    w = wiring(tmp_path)
    w.sightings = SightingLog()  # the in-memory sink: every report, undeduplicated
    handle = engine_handler(w)
    files = [dora(handle, n) for n in range(40)]  # a rack of 40 unknown machines powering on
    assert files == [b""] * 40  # unknown: local boot
    assert w.machines.writes == 0 and FileRegistry(tmp_path).list() == []
    # What the engine saw, handed on: one sighting per reply (OFFER and ACK), for the recorder.
    assert len(w.sightings.sightings) == 80 and len({s.mac for s in w.sightings.sightings}) == 40
    assert {(s.arch, s.vendor_class) for s in w.sightings.sightings} == {(0, b"PXEClient:Arch:00000:UNDI:002001")}


def test_forty_unknown_machines_are_one_registry_write(tmp_path):
    w = wiring(tmp_path)
    handle = engine_handler(w)
    for n in range(40):
        dora(handle, n)
    recorder = DiscoveryRecorder(w.machines, w.sightings, w.config.boot.discovered_limit, None)
    recorder.record_pending()
    assert w.machines.writes == 1
    stored = FileRegistry(tmp_path).list()
    assert len(stored) == 40 and {(m.state, m.arch) for m in stored} == {(State.DISCOVERED, "bios")}
    for n in range(40):  # their next boots: known, answered from the registry, nothing reported
        dora(handle, n)
    assert len(w.sightings) == 0


def test_the_recorder_thread_writes_a_burst_at_once(tmp_path):
    w = wiring(tmp_path)
    (recorder,) = discovery_services(w)  # as serve wires it; only the recorder is started here
    handle = engine_handler(w)
    recorder.start()
    try:
        for n in range(40):
            handle(pxe(n), ARRIVAL)
        deadline = time.monotonic() + 10
        while len(FileRegistry(tmp_path).list()) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        recorder.stop()
    assert len(FileRegistry(tmp_path).list()) == 40
    assert w.machines.writes <= 2  # one gather window, two at worst if it closed mid-burst


def test_auto_profile_installs_at_the_first_boot_and_is_recorded_new(tmp_path):
    w = wiring(tmp_path, 'auto_profile = "lab-test"')
    handle = engine_handler(w)
    assert dora(handle, 1) == b"undionly.kpxe"  # the install boot at once, before any record
    assert w.machines.writes == 0
    DiscoveryRecorder(w.machines, w.sightings, w.config.boot.discovered_limit, "lab-test").record_pending()
    (m,) = FileRegistry(tmp_path).list()
    assert (m.state, m.profile, m.hostname) == (State.NEW, "lab-test", "node-525400000101")
    assert dora(handle, 1) == b"undionly.kpxe" and len(w.sightings) == 0  # the retry: from the registry


def test_process_0_records_in_a_service_of_its_own_the_others_in_their_dhcp_service(tmp_path):
    w = wiring(tmp_path)  # process 0: its HTTP and TFTP report to the same queue as its DHCP
    (service,) = dhcp_services(w)
    assert service.recorder is None and [s.name for s in discovery_services(w)] == ["discovery"]
    other = Wiring(w.config, dhcp_process=1)  # a dhcp.processes child runs DHCP alone
    (service,) = dhcp_services(other)
    assert service.recorder is not None and service.recorder.queue is other.sightings


def test_no_recorder_when_unknown_machines_boot_locally(tmp_path):
    w = wiring(tmp_path, 'unknown_machines = "local"')
    (service,) = dhcp_services(w)
    assert service.recorder is None and discovery_services(w) == []
    (service,) = dhcp_services(Wiring(w.config, dhcp_process=1))
    assert service.recorder is None
