"""Admin use cases over the in-memory registry and address book: add, adopt, discover, retire."""

from __future__ import annotations

import pytest
from machines_builders import MAC, NETWORKS, NOW, OTHER_MAC

from bootsrv.errors import Conflict, InvalidInput, NotFound
from bootsrv.machines.admin import MemoryAddressBook, add, adopt, discover, reinstall, retire
from bootsrv.machines.model import IllegalTransition, State, boot_action
from bootsrv.machines.store import FileRegistry

GUID = "01234567-89ab-cdef-0123-456789abcdef"


@pytest.fixture
def book():
    return MemoryAddressBook()


def add_hv1(registry, book, **over):
    args = dict(
        mac=MAC,
        hostname="hv1",
        profile="debian12-kvm-hypervisor",
        now=NOW,
        addresses={"public": "192.0.2.10", "backend": "10.1.0.10"},
    )
    args.update(over)
    return add(registry, book, NETWORKS, **args)


def test_add_binds_addresses_and_takes_segment_from_networks(registry, book):
    m = add_hv1(registry, book)
    assert m.state is State.NEW and boot_action(m.state) == "install"
    assert m.addresses == (("backend", "10.1.0.10"), ("public", "192.0.2.10")) and m.segment == "odd"
    assert book.bindings == {("public", "192.0.2.10"): (MAC, "hv1"), ("backend", "10.1.0.10"): (MAC, "hv1")}


@pytest.mark.parametrize(
    ("over", "error", "words"),
    [
        (
            {"addresses": {"public": "192.0.2.10"}, "mac": OTHER_MAC, "hostname": "hv2"},
            Conflict,
            "address.public: 192.0.2.10 is already used by machine 52:54:00:12:34:56",
        ),
        ({"mac": OTHER_MAC, "addresses": {}}, Conflict, "hostname: 'hv1' is already used"),
        ({"addresses": {}}, Conflict, "already exists"),
        (
            {"mac": OTHER_MAC, "hostname": "hv2", "addresses": {}, "profile": "nope"},
            NotFound,
            "profile: no profile 'nope'",
        ),
        ({"mac": OTHER_MAC, "hostname": "hv2", "addresses": {}, "comment": "a\nb"}, InvalidInput, "comment: "),
        ({"mac": OTHER_MAC, "hostname": "hv2", "addresses": {}, "serial": "has space"}, InvalidInput, "serial: "),
    ],
    ids=["address-taken", "hostname-taken", "mac-taken", "unknown-profile", "comment", "serial"],
)
def test_add_refusals_change_nothing(registry, book, over, error, words):
    add_hv1(registry, book)
    before, bindings = registry.list(), dict(book.bindings)
    with pytest.raises(error, match=words):
        add_hv1(registry, book, profiles={"debian12-kvm-hypervisor"}, **over)
    assert registry.list() == before and book.bindings == bindings


def test_lease_store_refusal_rolls_back(registry, book):
    book.bind("backend", "10.1.0.10", "52:54:00:77:77:77", "someone-else")
    with pytest.raises(Conflict, match="10.1.0.10 on backend is bound to 52:54:00:77:77:77"):
        add_hv1(registry, book)
    assert registry.list() == []
    assert book.bindings == {("backend", "10.1.0.10"): ("52:54:00:77:77:77", "someone-else")}


def test_discover_is_idempotent_and_fills_only_gaps(tmp_path):
    registry = FileRegistry(tmp_path)
    first = discover(registry, "52-54-00-12-34-56", 7, None, "PXEClient:Arch:00007:UNDI:003016", NOW)
    assert first.state is State.DISCOVERED and first.arch == "efi-x64" and boot_action(first.state) == "local"
    again = discover(registry, MAC, 7, None, "PXEClient:Arch:00007:UNDI:003016", NOW + 5)
    assert again == first  # nothing new: nothing written (same revision, same updated)
    with_guid = discover(registry, MAC, 0, GUID, "iPXE", NOW + 10)
    assert with_guid.guid == GUID and with_guid.arch == "efi-x64"  # the gap is filled, the arch kept
    assert with_guid.vendor_class == "PXEClient:Arch:00007:UNDI:003016" and with_guid.revision == 2


def test_discover_takes_dhcp_octets(registry):
    m = discover(registry, bytes.fromhex("525400123456"), 7, None, b"PXEClient:Arch:00007:UNDI:003016", NOW)
    assert m.mac == MAC and m.vendor_class == "PXEClient:Arch:00007:UNDI:003016"


def test_discover_never_changes_a_known_machines_state(registry, book):
    add_hv1(registry, book)
    m = discover(registry, MAC, 0, None, None, NOW + 1)
    assert m.state is State.NEW and m.arch == "bios" and m.hostname == "hv1"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("zz", 0, None, None), "mac"),
        ((MAC, 99999, None, None), "arch"),
        ((MAC, 0, "nope", None), "guid"),
        ((MAC, 0, b"\x00\x01", None), "guid"),
        ((MAC, 0, None, "x" * 300), "vendor_class"),
        ((MAC, 0, None, "bad\x01"), "vendor_class"),
        ((MAC, 0, None, b"\xff\xfe"), "vendor_class"),
        ((MAC, 0, None, 7), "vendor_class"),
        ((b"\x01\x02", 0, None, None), "mac"),
    ],
    ids=[
        "mac",
        "arch",
        "guid",
        "guid-bytes",
        "vendor-long",
        "vendor-binary",
        "vendor-octets",
        "vendor-int",
        "chaddr-short",
    ],
)
def test_discover_bad_dhcp_input(registry, args, field):
    with pytest.raises(InvalidInput) as info:
        discover(registry, *args, NOW)
    assert info.value.field == field and registry.list() == []


def test_auto_profile_installs_unknown_machines(registry):
    m = discover(registry, MAC, 7, None, None, NOW, auto_profile="debian12-kvm-hypervisor")
    assert m.state is State.NEW and m.hostname == "node-525400123456" and boot_action(m.state) == "install"
    with pytest.raises(InvalidInput, match="^boot.auto_profile: "):
        discover(registry, OTHER_MAC, 7, None, None, NOW, auto_profile="../x")


def test_concurrent_discovery_by_both_servers(tmp_path):
    a, b = FileRegistry(tmp_path), FileRegistry(tmp_path)
    discover(a, MAC, 7, None, None, NOW)
    assert discover(b, MAC, 7, None, None, NOW).revision == 1


def test_adopt(registry, book):
    discover(registry, OTHER_MAC, 0, GUID, None, NOW)
    m = adopt(
        registry,
        book,
        NETWORKS,
        mac=OTHER_MAC,
        hostname="hv2",
        profile="p",
        now=NOW + 1,
        addresses={"public": "192.0.2.11"},
    )
    assert m.state is State.NEW and m.guid == GUID and m.arch == "bios" and m.segment == "odd"
    assert book.bindings[("public", "192.0.2.11")] == (OTHER_MAC, "hv2")
    with pytest.raises(IllegalTransition):
        adopt(registry, book, NETWORKS, mac=OTHER_MAC, hostname="hv2", profile="p", now=NOW + 2)


def test_adopt_rolls_back_when_binding_fails(registry, book):
    discover(registry, OTHER_MAC, 0, None, None, NOW)
    book.bind("public", "192.0.2.11", MAC, "other")
    with pytest.raises(Conflict):
        adopt(
            registry,
            book,
            NETWORKS,
            mac=OTHER_MAC,
            hostname="hv2",
            profile="p",
            now=NOW + 1,
            addresses={"public": "192.0.2.11"},
        )
    m = registry.get(OTHER_MAC)
    assert m.state is State.DISCOVERED and m.profile is None and m.addresses == ()


def test_adopt_unknown(registry, book):
    with pytest.raises(NotFound, match="no machine"):
        adopt(registry, book, NETWORKS, mac=MAC, hostname="hv1", profile="p", now=NOW)


def test_retire_keeps_bindings_and_reinstall_brings_back(registry, book):
    add_hv1(registry, book)
    assert retire(registry, MAC, NOW + 1).state is State.RETIRED
    assert len(book.bindings) == 2
    assert boot_action(reinstall(registry, MAC, NOW + 2).state) == "install"
