"""PXE classification and boot decisions against the firmware each rule serves, and the option
layers (defaults -> class -> network -> record macro -> client) through the engine."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from bootsrv.dhcp import packet as P
from bootsrv.dhcp.options import Layers, encode_value, lease_times, ordered
from bootsrv.dhcp.pxe import Sighting, classify
from bootsrv.errors import ConfigError
from bootsrv.machines.model import MemoryRegistry, RegistryNetboot, State

from .conftest import MAC, NOW, S1, World, config, machine, request

GUID = b"\x00" + bytes(range(16))
MACTEXT = "52:54:00:00:00:01"


def pxe_request(mtype=P.DISCOVER, arch: int | None = 0, vendor=b"PXEClient:Arch:00000:UNDI:002001", user=None, **kw):
    opts = {
        "o60": vendor,
        "o97": GUID,
        "o94": b"\x01\x02\x01",
        "o55": bytes([1, 3, 6, 43, 54, 60, 66, 67, 97, 128, 175]),
    }
    if arch is not None:
        opts["o93"] = struct.pack("!H", arch)
    if user is not None:
        opts["o77"] = user
    opts.update(kw)
    return request(mtype, **opts)


CLASSIFY = [
    ("dhclient", request(P.DISCOVER, o60=b"udhcp 1.36"), None),
    ("bios-rom", pxe_request(), (0, False, False)),
    ("uefi-x64", pxe_request(arch=7, vendor=b"PXEClient:Arch:00007:UNDI:003016"), (7, False, False)),
    ("arch-from-vendor-class", pxe_request(arch=None, vendor=b"PXEClient:Arch:00009:UNDI:003016"), (9, False, False)),
    ("ipxe", pxe_request(user=b"iPXE"), (0, True, False)),
    ("ipxe-rfc3004-user-class", pxe_request(user=b"\x04iPXE"), (0, True, False)),
    ("http-boot", pxe_request(arch=16, vendor=b"HTTPClient:Arch:00016:UNDI:003001"), (16, False, True)),
]


@pytest.mark.parametrize("case, req, expected", CLASSIFY, ids=[c[0] for c in CLASSIFY])
def test_classify(case, req, expected):
    fw = classify(req)
    assert (None if fw is None else (fw.arch, fw.ipxe, fw.http)) == expected


def world_with(state: State | None, **cfg) -> World:
    registry = MemoryRegistry([machine(MACTEXT, state)] if state is not None else [])
    world = World(config(**cfg) if cfg else None, RegistryNetboot(registry))
    world.registry = registry
    return world


BOOT = [
    # (id, request, expected file, siaddr?, extra option checks)
    ("bios", pxe_request(), b"undionly.kpxe", {60: b"PXEClient", 43: b"\x06\x01\x08\xff", 97: GUID}),
    (
        "uefi-x64",
        pxe_request(arch=7, vendor=b"PXEClient:Arch:00007:UNDI:003016"),
        b"ipxe.efi",
        {60: None, 43: None, 97: GUID},
    ),  # EDK2: PXEClient without a 43 menu means "ask BINL on 4011"
    ("uefi-bc", pxe_request(arch=9, vendor=b"PXEClient:Arch:00009:UNDI:003016"), b"ipxe.efi", {60: None, 43: None}),
    ("arm64", pxe_request(arch=11, vendor=b"PXEClient:Arch:00011:UNDI:003016"), b"ipxe-arm64.efi", {}),
    (
        "ipxe-gets-its-script",
        pxe_request(user=b"iPXE"),
        b"http://10.70.0.1:8080/boot/52:54:00:00:00:01.ipxe",
        {175: b"\xb0\x01\x01", 43: None, 60: None},
    ),
    (
        "http-boot",
        pxe_request(arch=16, vendor=b"HTTPClient:Arch:00016:UNDI:003001"),
        b"http://10.70.0.1:8080/tftp/ipxe.efi",
        {60: b"HTTPClient"},
    ),
    ("unknown-arch", pxe_request(arch=2, vendor=b"PXEClient:Arch:00002:UNDI:003016"), b"", {60: None}),
]


@pytest.mark.parametrize("case, req, file, checks", BOOT, ids=[b[0] for b in BOOT])
@pytest.mark.parametrize("mtype", [P.DISCOVER, P.REQUEST], ids=["offer", "ack"])
def test_boot_decision_for_an_install(case, req, file, checks, mtype):
    world = world_with(State.NEW)
    if mtype == P.REQUEST:
        ip = world.ask(req).packet.yiaddr
        req.options[P.MESSAGE_TYPE] = bytes((P.REQUEST,))
        req.options.update({P.REQUESTED_IP: ip.packed, P.SERVER_ID: S1.packed})
    pkt = world.ask(req).packet
    assert pkt.message_type == (P.OFFER if mtype == P.DISCOVER else P.ACK)
    assert pkt.file.rstrip(b"\0") == file and pkt.options.get(67, b"") == file
    if file:
        assert pkt.siaddr == S1 and pkt.options[66] == b"10.70.0.1" and pkt.sname.rstrip(b"\0") == b"10.70.0.1"
    for code, value in checks.items():
        assert pkt.options.get(code) == value, code


def test_snponly_by_config():
    world = World(
        config(**{"[boot]\n": '[boot]\nfiles = { efi-x64 = "snponly.efi", bios = "undionly.kpxe" }\n'}),
        RegistryNetboot(MemoryRegistry([machine(MACTEXT, State.NEW)])),
    )
    pkt = world.ask(pxe_request(arch=7, vendor=b"PXEClient:Arch:00007:UNDI:003016")).packet
    assert pkt.file.rstrip(b"\0") == b"snponly.efi"


@pytest.mark.parametrize("state", [State.ENROLLED, State.DISCOVERED, State.RETIRED])
def test_netboot_off_gets_no_boot_file(state):
    world = world_with(state)
    pkt = world.ask(pxe_request()).packet
    assert pkt.file == b"" and 67 not in pkt.options and 60 not in pkt.options and 43 not in pkt.options
    assert pkt.message_type == P.OFFER and pkt.yiaddr != IPv4Address(0)  # still an address


def test_ipxe_with_netboot_off_still_skips_proxydhcp():
    world = world_with(State.ENROLLED)
    pkt = world.ask(pxe_request(user=b"iPXE")).packet
    assert pkt.file == b"" and 67 not in pkt.options and pkt.options[175] == b"\xb0\x01\x01"


def test_known_machines_are_answered_from_the_registry_and_never_reported():
    for state, file in [(State.NEW, b"undionly.kpxe"), (State.DISCOVERED, b"")]:
        reply = world_with(state).ask(pxe_request())
        assert reply.packet.file.rstrip(b"\0") == file and reply.sighting is None


@pytest.mark.parametrize("mtype", [P.DISCOVER, P.REQUEST], ids=["offer", "ack"])
def test_unknown_machine_is_reported_not_recorded_and_boots_locally(mtype):
    world = world_with(None)
    req = pxe_request(arch=7, vendor=b"PXEClient:Arch:00007:UNDI:003016")
    if mtype == P.REQUEST:
        ip = world.ask(req).packet.yiaddr
        req.options[P.MESSAGE_TYPE] = bytes((P.REQUEST,))
        req.options.update({P.REQUESTED_IP: ip.packed, P.SERVER_ID: S1.packed})
    reply = world.ask(req)
    assert reply.packet.file == b"" and 67 not in reply.packet.options
    # What the decision saw, for the caller to record off the packet path; the registry is untouched.
    assert reply.sighting == Sighting(MACTEXT, 7, GUID, b"PXEClient:Arch:00007:UNDI:003016", NOW)
    assert world.registry.list() == []


def test_unknown_machine_with_auto_profile_installs_at_once():
    # The reply does not wait for the record: the install boot file goes out with the sighting
    # (bootsrv.machines.discovery then records the machine as new with the profile).
    world = world_with(None, **{"[boot]\n": '[boot]\nauto_profile = "debian12"\n'})
    reply = world.ask(pxe_request())
    assert reply.packet.file.rstrip(b"\0") == b"undionly.kpxe"
    assert reply.sighting is not None and reply.sighting.mac == MACTEXT
    assert world.registry.list() == []


def test_unknown_machines_local_reports_nothing():
    world = world_with(None, **{"[boot]\n": '[boot]\nunknown_machines = "local"\n'})
    reply = world.ask(pxe_request())
    assert reply.packet.file == b"" and reply.sighting is None


def test_plain_clients_are_never_reported():
    assert world_with(None).ask(request(P.DISCOVER)).sighting is None


def test_a_multicast_chaddr_is_no_machine():
    # I/G bit set (IEEE 802): no NIC boots with it; local boot, nothing reported, even with auto_profile.
    world = world_with(None, **{"[boot]\n": '[boot]\nauto_profile = "debian12"\n'})
    reply = world.ask(pxe_request(mac=bytes.fromhex("015400000001")))
    assert reply.packet.file == b"" and reply.sighting is None


# ---- option layers ----------------------------------------------------------------------------


def test_layers_apply_in_order():
    cfg = config()
    layers = Layers.from_config(
        cfg, macros={"rack1": {"42": ["10.70.0.6"], "128": "hex:0a"}, "01525400000001": {"42": ["10.70.0.7"]}}
    )
    base = layers.resolve("public")
    assert base[42] == IPv4Address("10.70.0.5").packed and 128 not in base  # network
    assert layers.resolve("public", b"PXEClient:Arch:00000")[128] == b"\x01"  # class
    assert layers.resolve("public", b"PXEClient:Arch:00007:UNDI")[128] == b"\x07"  # the longer prefix wins
    assert layers.resolve("public", b"PXEClient:Arch:00007", "rack1")[128] == b"\x0a"  # record macro over class
    assert layers.resolve("public", None, "rack1")[42] == IPv4Address("10.70.0.6").packed  # macro over network
    assert layers.resolve("public", None, "rack1", "01525400000001")[42] == IPv4Address("10.70.0.7").packed  # client


def test_network_options_override_class_options():
    cfg = config(**{'"128" = "hex:01"': '"128" = "hex:01"\n"15" = "class.example"'})
    assert Layers.from_config(cfg).resolve("public", b"PXEClient")[15] == b"lab.example"
    assert Layers.from_config(cfg).resolve("backend", b"PXEClient")[15] == b"class.example"


def test_record_macro_reaches_the_reply():
    world = World()
    world.engines[S1].layers.macros["rack1"] = {42: IPv4Address("10.70.0.9").packed}
    world.stores[S1].bind("public", "10.70.0.91", "01" + MAC.hex(), "n1", macro="rack1")
    assert world.ask(request(P.DISCOVER)).packet.options[42] == IPv4Address("10.70.0.9").packed


@pytest.mark.parametrize(
    "code, value, rule",
    [
        (3, "not-an-ip", "option 3"),
        (51, "600", "expected an integer"),
        (26, 70000, "option 26"),
        (200, 5, "cannot tell how to encode"),
        (12, ["a"], "expected a string"),
    ],
)
def test_bad_option_values_are_config_errors(code, value, rule):
    with pytest.raises(ConfigError, match=rule):
        encode_value(code, value, f"networks[x].options.{code}")


def test_lease_times_and_order():
    lease, times = lease_times({51: struct.pack("!I", 1000)})
    assert lease == 1000 and struct.unpack("!I", times[58])[0] == 500 and struct.unpack("!I", times[59])[0] == 875
    # A layer's own T1 wins over RFC 2131's default, also once the default was asked (cached).
    _, times = lease_times({51: struct.pack("!I", 1000), 58: struct.pack("!I", 100)})
    assert struct.unpack("!I", times[58])[0] == 100 and struct.unpack("!I", times[59])[0] == 875
    with pytest.raises(TypeError):
        times[58] = b"\0\0\0\1"  # shared between replies: read-only
    out = ordered({53: b"\x02"}, {1: b"a", 3: b"b", 6: b"c", 60: b"d"}, bytes([6, 1, 99]), forced=[60])
    assert list(out) == [53, 6, 1, 60]


def test_macros_from_the_config_reach_the_client():
    cfg = config(
        **{
            "offer_hold = 30\n": 'offer_hold = 30\n[dhcp.macros.01525400000001]\n"42" = ["10.70.0.8"]\n'
            '[dhcp.macros.rack2]\n"42" = ["10.70.0.9"]\n'
        }
    )
    world = World(cfg)
    assert world.ask(request(P.DISCOVER)).packet.options[42] == IPv4Address("10.70.0.8").packed  # client macro
    world.stores[S1].bind("public", "10.70.0.92", "01525400000002", "n2", macro="rack2")
    other = world.ask(request(P.DISCOVER, bytes.fromhex("525400000002"))).packet
    assert other.yiaddr == IPv4Address("10.70.0.92") and other.options[42] == IPv4Address("10.70.0.9").packed


@pytest.mark.parametrize(
    "text, key",
    [
        ('[dhcp.macros.rack1]\n"300" = 1\n', "dhcp.macros.rack1.300"),
        ("[dhcp.classes.PXE]\nx = 1\n", "dhcp.classes.PXE.x"),
    ],
    ids=["macro-option-number", "class-option-number"],
)
def test_option_tables_in_the_config_name_bad_keys(text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config(**{"offer_hold = 30\n": "offer_hold = 30\n" + text})


def test_bad_macro_value_fails_at_start_naming_the_key():
    cfg = config(**{"offer_hold = 30\n": 'offer_hold = 30\n[dhcp.macros.rack1]\n"3" = "not-an-address"\n'})
    with pytest.raises(ConfigError, match=r"dhcp\.macros\.rack1\.3"):
        Layers.from_config(cfg)
