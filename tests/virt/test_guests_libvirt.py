"""The guest workflow through real libvirt-python on the test driver (test:///node.xml)."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from bootsrv.errors import BootsrvError, Conflict, InvalidInput, NotFound
from bootsrv.virt.bindings import Used
from bootsrv.virt.guests import Guests
from bootsrv.virt.hosts import MemoryHypervisors
from bootsrv.virt.names import GuestRef, VersionRef
from bootsrv.virt.placement import NoRoom
from tests.virt.conftest import HV1, make_settings

V1 = VersionRef("osol-0811", "version-01")
VM1 = GuestRef("appl-1", "vm-1")


def provisioned(guests: Guests, vm: str = "vm-1", layout: str = "fe-be") -> GuestRef:
    ref = GuestRef("appl-1", vm)
    if "appl-1" not in guests.storage.projects():
        guests.create_project("appl-1")
    guests.clone(V1, ref)
    guests.init("pv", layout, "odd", 1024, 1, ref)
    return ref


def test_project_is_a_pool_under_the_storage_dir(guests, tmp_path):
    directory = guests.create_project("appl-1")
    assert directory == str(tmp_path / "appl-1")
    assert guests.storage.projects()["appl-1"] == directory
    with pytest.raises(Conflict, match="project: 'appl-1' exists"):
        guests.create_project("appl-1")


def test_clone_is_an_empty_qcow2_overlay_of_the_frozen_version(guests):
    guests.create_project("appl-1")
    vol = guests.clone(V1, VM1)
    base = next(v for v in guests.storage.volumes("masters") if v.name == "osol-0811@version-01")
    assert (vol.format, vol.allocation, vol.capacity) == ("qcow2", 0, base.capacity)
    assert vol.backing == base.path
    assert vol.path.endswith("/appl-1/vm-1")


def test_freeze_makes_an_immutable_version(guests):
    v2 = guests.freeze("osol-0811", "version-02")
    assert v2.name == "osol-0811@version-02"
    images = guests.images()
    assert [(i.volume.name, [v.name for v in i.versions]) for i in images] == [
        ("osol-0811", ["osol-0811@version-01", "osol-0811@version-02"])
    ]
    with pytest.raises(Conflict, match="version: masters/osol-0811@version-02 exists; versions are immutable"):
        guests.freeze("osol-0811", "version-02")


def test_import_copies_the_image_with_progress(guests, tmp_path):
    src = tmp_path / "deb12.img"
    src.write_bytes(b"\x5a" * (3 * 1024 * 1024 + 17))
    seen = []
    vol = guests.import_image("deb12", src, progress=lambda done, total: seen.append((done, total)))
    assert vol.name == "deb12" and vol.format == "raw" and vol.capacity == src.stat().st_size
    assert Path(vol.path).read_bytes() == src.read_bytes()
    assert seen[-1] == (src.stat().st_size, src.stat().st_size) and len(seen) == 4


def test_init_defines_the_domain_with_macs_on_both_networks(guests):
    ref = provisioned(guests)
    found = guests.locate(ref)
    f = found.domain.facts
    assert found.host.name == "hv1" and found.domain.state == "shut off"
    assert f.virt_type == "xen" and f.memory_mib == 1024 and f.disks == (guests.storage.projects()["appl-1"] + "/vm-1",)
    assert [(n.name, n.network, n.source) for n in f.nics] == [("fe0", "public", "fe0"), ("be0", "backend", "be0")]
    assert all(n.mac and n.mac.count(":") == 5 for n in f.nics)
    assert f.nic("fe0").mac != f.nic("be0").mac


def test_dry_run_plans_without_defining(guests):
    guests.create_project("appl-1")
    guests.clone(V1, VM1)
    placement, spec = guests.plan("hvm", "fe", "odd", 512, 2, VM1)
    assert placement.chosen.name == "hv1" and spec.nics[0].name == "fe0"
    assert "chosen" in placement.explain()
    assert guests.find(VM1) is None


def test_assign_ip_binds_the_mac_read_from_the_domain(guests, bindings):
    ref = provisioned(guests)
    f = guests.locate(ref).domain.facts
    fe = guests.assign_ip(ref, "fe0", "vm-host1")
    be = guests.assign_ip(ref, "be0", "vm-host1-be")
    assert (fe.network, fe.ip, fe.mac, fe.hostname) == (
        "public",
        IPv4Address("10.10.0.100"),
        f.nic("fe0").mac,
        "vm-host1",
    )
    assert (be.network, be.ip, be.mac) == ("backend", IPv4Address("10.20.0.100"), f.nic("be0").mac)
    ref2 = provisioned(guests, "vm-2", "fe")
    given = guests.assign_ip(ref2, "fe0", "vm-host2", "10.10.0.150")
    assert given.ip == IPv4Address("10.10.0.150")
    assert [b.hostname for b in bindings.manual] == ["vm-host1", "vm-host1-be", "vm-host2"]


def test_next_free_address_skips_leases_and_reserved(tmp_path, host):
    from bootsrv.virt.bindings import MemoryBindings

    taken = MemoryBindings(
        {
            "public": [
                Used(IPv4Address("10.10.0.100"), "aa:00:00:00:00:01", "other"),
                Used(IPv4Address("10.10.0.101"), "aa:00:00:00:00:02", ""),
            ]
        }
    )
    g = Guests(make_settings(tmp_path), host, MemoryHypervisors([HV1]), lambda h: host, taken)
    ref = provisioned(g, layout="fe")
    assert g.assign_ip(ref, "fe0", "vm-host1").ip == IPv4Address("10.10.0.102")


def test_start_stop_list_destroy(guests, bindings):
    ref = provisioned(guests)
    guests.assign_ip(ref, "fe0", "vm-host1")
    guests.control(ref, "start")
    assert guests.locate(ref).domain.state == "running"
    with pytest.raises(Conflict, match="guest: appl-1:vm-1 is already running"):
        guests.control(ref, "start")
    guests.control(ref, "shutdown")
    assert guests.locate(ref).domain.state == "shut off"
    guests.control(ref, "start")
    assert [(h.name, d.facts.name, d.state) for h, d, _ in guests.all()] == [("hv1", "appl-1:vm-1", "running")]
    done = guests.destroy(ref)
    assert done[0].startswith("powered off") and any("unbound fe0" in d for d in done)
    assert "deleted clone appl-1/vm-1" in done
    assert guests.find(ref) is None and bindings.manual == []
    assert [v.name for v in guests.storage.volumes("appl-1")] == []


def snapshot(g: Guests, bindings) -> tuple:
    vols = {p: [(v.name, v.allocation, v.backing) for v in g.storage.volumes(p)] for p in sorted(g.storage.projects())}
    doms = [(h.name, d.facts.name, d.state, d.facts.nics) for h, d, _ in g.all()]
    return vols, doms, list(bindings.manual)


BAD = [
    # id, operation, error class, field named in the message
    ("unknown-project", lambda g: g.clone(V1, GuestRef("nope", "vm-9")), NotFound, "guest.project: no project 'nope'"),
    (
        "unknown-image",
        lambda g: g.clone(VersionRef("solaris", "v1"), GuestRef("appl-1", "vm-9")),
        NotFound,
        "version.image: no image masters/solaris",
    ),
    (
        "unknown-version",
        lambda g: g.clone(VersionRef("osol-0811", "version-09"), GuestRef("appl-1", "vm-9")),
        NotFound,
        "version.version: osol-0811 has no version 'version-09' (frozen: version-01)",
    ),
    (
        "malformed-version",
        lambda g: g.clone(VersionRef.parse("masters/osol-0811"), GuestRef("appl-1", "vm-9")),
        InvalidInput,
        "version: 'masters/osol-0811' is not <image>@<version>",
    ),
    ("duplicate-clone", lambda g: g.clone(V1, VM1), Conflict, "guest.vm: appl-1/vm-1 exists"),
    (
        "duplicate-vm",
        lambda g: g.init("hvm", "fe", "odd", 512, 1, VM1),
        Conflict,
        "guest.vm: domain appl-1:vm-1 is already defined",
    ),
    (
        "init-without-clone",
        lambda g: g.init("hvm", "fe", "odd", 512, 1, GuestRef("appl-1", "vm-9")),
        NotFound,
        "guest: no disk appl-1/vm-9",
    ),
    ("bad-kind", lambda g: g.init("xen", "fe", "odd", 512, 1, GuestRef("appl-1", "vm-2")), InvalidInput, "kind: 'xen'"),
    ("bad-layout", lambda g: g.init("pv", "fe-fe", "odd", 512, 1, GuestRef("appl-1", "vm-2")), InvalidInput, "layout:"),
    (
        "unknown-segment",
        lambda g: g.init("pv", "fe", "even", 512, 1, GuestRef("appl-1", "vm-2")),
        NotFound,
        "segment: no segment 'even'",
    ),
    (
        "no-room",
        lambda g: g.init("pv", "fe", "odd", 7000, 1, GuestRef("appl-1", "vm-2")),
        NoRoom,
        "segment: no hypervisor of segment 'odd' has room",
    ),
    ("unknown-nic", lambda g: g.assign_ip(VM1, "eth0", "vm-x"), InvalidInput, "nic: 'eth0' is not a guest NIC"),
    (
        "nic-not-in-layout",
        lambda g: g.assign_ip(GuestRef("appl-1", "vm-fe"), "be0", "vm-x"),
        InvalidInput,
        "nic: appl-1:vm-fe has no NIC 'be0' (it has: fe0)",
    ),
    (
        "address-outside",
        lambda g: g.assign_ip(VM1, "fe0", "vm-x", "10.20.0.5"),
        InvalidInput,
        "address: 10.20.0.5 is outside network 'public' (10.10.0.0/24)",
    ),
    (
        "address-not-ip",
        lambda g: g.assign_ip(VM1, "fe0", "vm-x", "10.10.0.300"),
        InvalidInput,
        "address: '10.10.0.300' is not an IPv4 address",
    ),
    (
        "address-reserved",
        lambda g: g.assign_ip(VM1, "fe0", "vm-x", "10.10.0.1"),
        Conflict,
        "address: 10.10.0.1 is reserved",
    ),
    (
        "address-in-use",
        lambda g: g.assign_ip(VM1, "fe0", "vm-x", "10.10.0.100"),
        Conflict,
        "address: 10.10.0.100 is in use on 'public'",
    ),
    ("hostname-in-use", lambda g: g.assign_ip(VM1, "fe0", "vm-fe-host"), Conflict, "hostname: 'vm-fe-host' is in use"),
    ("hostname-malformed", lambda g: g.assign_ip(VM1, "fe0", "vm_host!"), InvalidInput, "hostname:"),
    (
        "unknown-guest",
        lambda g: g.assign_ip(GuestRef("appl-1", "vm-7"), "fe0", "vm-x"),
        NotFound,
        "guest: no domain appl-1:vm-7",
    ),
    ("freeze-unknown-image", lambda g: g.freeze("solaris", "v1"), NotFound, "image: no image masters/solaris"),
    (
        "freeze-existing",
        lambda g: g.freeze("osol-0811", "version-01"),
        Conflict,
        "version: masters/osol-0811@version-01 exists",
    ),
    (
        "import-existing",
        lambda g: g.import_image("osol-0811", Path(__file__)),
        Conflict,
        "image: masters/osol-0811 exists",
    ),
    (
        "import-missing-file",
        lambda g: g.import_image("new", Path("/nonexistent.img")),
        NotFound,
        "file: /nonexistent.img",
    ),
    ("migrate-unknown-destination", lambda g: g.migrate(VM1, "hv9"), NotFound, "destination: no hypervisor 'hv9'"),
    ("migrate-same-host", lambda g: g.migrate(VM1, "hv1"), InvalidInput, "destination: appl-1:vm-1 is already on hv1"),
]


@pytest.mark.parametrize("op,error,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_names_the_field_and_changes_nothing(guests, bindings, op, error, message):
    provisioned(guests)  # appl-1:vm-1 (fe-be) defined
    fe_only = GuestRef("appl-1", "vm-fe")
    guests.clone(V1, fe_only)
    guests.init("pv", "fe", "odd", 1024, 1, fe_only)
    guests.assign_ip(fe_only, "fe0", "vm-fe-host")  # takes 10.10.0.100
    guests.clone(V1, GuestRef("appl-1", "vm-2"))  # a disk without a domain yet
    before = snapshot(guests, bindings)
    with pytest.raises(error) as err:
        op(guests)
    assert isinstance(err.value, BootsrvError)
    assert message in str(err.value)
    assert snapshot(guests, bindings) == before
