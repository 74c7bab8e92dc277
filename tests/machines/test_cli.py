"""`bootsrv machine` and `bootsrv hypervisor` through click's CliRunner on a real file registry."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from machines_builders import MAC, NOW, OTHER_MAC, enroll, facts

from bootsrv.cli.main import main
from bootsrv.config import load
from bootsrv.machines.admin import discover
from bootsrv.machines.enrollment import start_install
from bootsrv.machines.model import State
from bootsrv.machines.store import FileRegistry


@pytest.fixture
def site(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(
        f'[store]\ndirectory = "{tmp_path}/store"\n'
        f'[profiles]\nprofiles_dir = "{tmp_path}/no-catalog"\n'  # profile "p" is not checked here
        '[[networks]]\nname = "public"\nsegment = "odd"\nsubnet = "192.0.2.0/24"\n'
        '[[networks]]\nname = "backend"\nsegment = "odd"\nsubnet = "10.1.0.0/24"\n'
    )
    return path


@pytest.fixture
def registry(site):
    return FileRegistry(load(site).store.directory)


def run(site, *args: str, code: int = 0):
    result = CliRunner().invoke(main, ["--config", str(site), *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def enrolled(registry, mac=MAC, **fact_changes):
    run_add = registry.get(mac)
    assert run_add is not None
    fact_changes.setdefault("hostname", f"{run_add.hostname}.lab.example")
    start_install(registry, mac, NOW, 3600, new_token=lambda: "K" * 43)
    return enroll(registry, {"token": "K" * 43, "mac": mac, "facts": facts(mac, **fact_changes)}, NOW + 1)


def test_add_list_show(site, registry):
    out = run(
        site,
        "machine",
        "add",
        "52-54-00-12-34-56",
        "--hostname",
        "HV1",
        "--profile",
        "debian12-xen-hypervisor",
        "--serial",
        "SN-1",
        "--comment",
        "rack 3",
    )
    assert out == f"added {MAC} (hv1): state new\n"
    assert registry.get(MAC).segment == ""
    listing = run(site, "machine", "list").splitlines()
    assert listing[0].split() == ["MAC", "HOSTNAME", "STATE", "PROFILE", "SEGMENT", "ADDRESSES", "ARCH", "UPDATED"]
    assert listing[1].split()[:4] == [MAC, "hv1", "new", "debian12-xen-hypervisor"]
    shown = run(site, "machine", "show", "hv1")
    assert "serial:       SN-1" in shown and "comment:      rack 3" in shown
    as_json = json.loads(run(site, "machine", "show", MAC, "--json"))
    assert as_json["state"] == "new" and as_json["serial"] == "SN-1"
    assert json.loads(run(site, "machine", "list", "--json"))[0]["mac"] == MAC


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["machine", "add", "zz:zz", "--hostname", "a", "--profile", "p"], 2, "error: mac: 'zz:zz' is not a MAC"),
        (["machine", "add", MAC, "--hostname", "a b", "--profile", "p"], 2, "error: hostname: "),
        (["machine", "add", MAC, "--hostname", "a", "--profile", "p/../x"], 2, "error: profile: "),
        (
            ["machine", "add", MAC, "--hostname", "a", "--profile", "p", "--address", "public"],
            2,
            "error: address: 'public' must be NETWORK=IP",
        ),
        (
            ["machine", "add", MAC, "--hostname", "a", "--profile", "p", "--address", "dmz=192.0.2.5"],
            2,
            "error: address.dmz: unknown network 'dmz' (networks: backend, public)",
        ),
        (
            ["machine", "add", MAC, "--hostname", "a", "--profile", "p", "--address", "public=10.1.0.5"],
            2,
            "error: address.public: 10.1.0.5 is outside subnet 192.0.2.0/24",
        ),
        (
            ["machine", "add", MAC, "--hostname", "a", "--profile", "p", "--address", "public=192.0.2.255"],
            2,
            "broadcast address",
        ),
        (
            ["machine", "add", MAC, "--hostname", "a", "--profile", "p", "--address", "public=1.2.3"],
            2,
            "error: address.public: '1.2.3' is not an IPv4 address",
        ),
        (
            ["machine", "add", MAC, "--hostname", "a", "--profile", "p", "--segment", "even"],
            2,
            "error: segment: 'even' is not a segment of any network (odd)",
        ),
        (
            ["machine", "add", MAC, "--hostname", "a", "--profile", "p", "--guid", "xyz"],
            2,
            "error: guid: 'xyz' is not a UUID",
        ),
        (["machine", "show", "nobody"], 3, "error: machine: no machine with MAC or hostname 'nobody'"),
        (["machine", "show", OTHER_MAC], 3, f"error: mac: no machine {OTHER_MAC}"),
        (["machine", "reinstall", OTHER_MAC], 3, "no machine"),
        (["hypervisor", "show", "hv9"], 3, "no machine with MAC or hostname 'hv9'"),
    ],
    ids=[
        "mac",
        "hostname",
        "profile",
        "address-form",
        "address-network",
        "address-subnet",
        "address-broadcast",
        "address-ip",
        "segment",
        "guid",
        "show-unknown-name",
        "show-unknown-mac",
        "reinstall-unknown",
        "hv-unknown",
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(site, registry, args, code, message):
    out = run(site, *args, code=code)
    assert message in out
    assert registry.list() == []


def test_addresses_are_bound_in_the_lease_store(site, registry):
    from bootsrv.leases import Flag, open_store

    run(
        site,
        "machine",
        "add",
        MAC,
        "--hostname",
        "hv1",
        "--profile",
        "p",
        "--address",
        "public=192.0.2.10",
        "--address",
        "backend=10.1.0.10",
    )
    store = open_store(load(site))
    pub, back = store.get("public", "192.0.2.10"), store.get("backend", "10.1.0.10")
    assert (pub.hostname, back.hostname) == ("hv1", "hv1-backend")
    assert (
        pub.flags == back.flags == Flag.MANUAL | Flag.PERMANENT and pub.client_id == "01" + MAC.replace(":", "").upper()
    )


def test_address_held_by_another_client_leaves_nothing_behind(site, registry):
    from bootsrv.leases import open_store

    store = open_store(load(site))
    store.bind("backend", "10.1.0.10", "52:54:00:99:99:99", "other")
    out = run(
        site,
        "machine",
        "add",
        MAC,
        "--hostname",
        "hv1",
        "--profile",
        "p",
        "--address",
        "public=192.0.2.10",
        "--address",
        "backend=10.1.0.10",
        code=4,
    )
    assert "10.1.0.10" in out and "held by" in out
    assert registry.list() == []
    store.rescan()
    assert store.get("public", "192.0.2.10") is None  # the first binding was rolled back


def test_profile_must_be_in_the_catalog(tmp_path, registry):
    path = tmp_path / "with-catalog.toml"
    path.write_text(f'[store]\ndirectory = "{tmp_path}/store"\n')  # the shipped catalog
    out = run(path, "machine", "add", MAC, "--hostname", "hv1", "--profile", "debian13-nope", code=3)
    assert "profile" in out and "debian13-nope" in out
    assert registry.list() == []
    run(path, "machine", "add", MAC, "--hostname", "hv1", "--profile", "debian12-kvm-hypervisor")
    assert registry.get(MAC).profile == "debian12-kvm-hypervisor"


def test_duplicate_and_illegal_transitions(site, registry):
    run(site, "machine", "add", MAC, "--hostname", "hv1", "--profile", "p")
    assert "error: mac: machine 52:54:00:12:34:56 already exists" in run(
        site, "machine", "add", MAC, "--hostname", "x", "--profile", "p", code=4
    )
    assert "hostname: 'hv1' is already used" in run(
        site, "machine", "add", OTHER_MAC, "--hostname", "hv1", "--profile", "p", code=4
    )
    before = registry.list()
    assert "cannot reinstall a machine in state 'new'" in run(site, "machine", "reinstall", "hv1", code=4)
    assert "cannot adopt a machine in state 'new'" in run(
        site, "machine", "adopt", MAC, "--hostname", "hv1", "--profile", "p", code=4
    )
    assert registry.list() == before


def test_reinstall_and_retire(site, registry):
    run(site, "machine", "add", MAC, "--hostname", "hv1", "--profile", "p")
    enrolled(registry)
    assert "state reinstall-requested" in run(site, "machine", "reinstall", "hv1")
    assert "state retired" in run(site, "machine", "retire", MAC)
    assert registry.get(MAC).state is State.RETIRED


def test_adopt_discovered(site, registry):
    discover(registry, OTHER_MAC, 0, b"\x00" + bytes(range(16)), "PXEClient:Arch:00000:UNDI:002001", NOW)
    listing = run(site, "machine", "list", "--state", "discovered")
    assert OTHER_MAC in listing and "bios" in listing
    out = run(
        site,
        "machine",
        "adopt",
        OTHER_MAC,
        "--hostname",
        "hv2",
        "--profile",
        "alma9-kvm-hypervisor",
        "--segment",
        "odd",
    )
    assert "adopted 52:54:00:ab:cd:ef (hv2): state new" in out
    m = registry.get(OTHER_MAC)
    assert m.profile == "alma9-kvm-hypervisor" and m.arch == "bios" and m.segment == "odd" and m.guid


def test_hypervisor_commands(site, registry):
    run(site, "machine", "add", MAC, "--hostname", "hv1", "--profile", "p", "--segment", "odd")
    run(site, "machine", "add", OTHER_MAC, "--hostname", "hv2", "--profile", "p", "--segment", "odd")
    enrolled(registry)
    enrolled(registry, OTHER_MAC, cpus=32, memory_mib=131072, hypervisor="xen", libvirt_uri="xen+ssh://hv2/system")
    lines = run(site, "hypervisor", "list").splitlines()
    assert lines[0].split() == ["NAME", "SEGMENT", "STATE", "TYPE", "CPUS", "MEMORY", "LIBVIRT", "URI"]
    assert lines[1].split() == ["hv1", "odd", "active", "kvm", "16", "64.0G", "qemu+ssh://hv1.lab.example/system"]
    assert lines[2].split()[:6] == ["hv2", "odd", "active", "xen", "32", "128.0G"]
    assert lines[3] == "2 hypervisors (2 active), 48 cpus, 192.0G memory"
    data = json.loads(run(site, "hypervisor", "list", "--json"))
    assert [h["name"] for h in data["hypervisors"]] == ["hv1", "hv2"] and data["totals"]["cpus"] == 48
    assert "drained hv2" in run(site, "hypervisor", "drain", "hv2")
    assert [h["name"] for h in json.loads(run(site, "hypervisor", "list", "--json"))["hypervisors"]] == ["hv1"]
    assert "drained" in run(site, "hypervisor", "list", "--all")
    assert json.loads(run(site, "hypervisor", "show", "hv2", "--json"))["state"] == "drained"
    assert "pool:         drained" in run(site, "hypervisor", "show", "hv2")
    assert "active again" in run(site, "hypervisor", "undrain", "hv2")
    assert "retired hv2" in run(site, "hypervisor", "retire", "hv2")
    assert json.loads(run(site, "hypervisor", "list", "--json", "--all"))["totals"]["hypervisors"] == 1
    assert "not an enrolled hypervisor" in run(site, "hypervisor", "drain", "hv2", code=3)
    assert run(site, "hypervisor", "list", "--segment", "even").splitlines()[1].startswith("0 hypervisors")
