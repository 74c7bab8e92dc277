"""Use cases across several hypervisors with the in-memory provisioner: placement over the pool,
migration pre-flight checks (each problem named), the move itself."""

from __future__ import annotations

import pytest

from bootsrv.virt.bindings import MemoryBindings
from bootsrv.virt.guests import Guests, MigrationRefused
from bootsrv.virt.hosts import MemoryHypervisors
from bootsrv.virt.names import GuestRef, VersionRef
from bootsrv.virt.placement import HypervisorInfo, NoRoom
from bootsrv.virt.provisioner import MemoryHypervisor, MemoryStorage
from tests.virt.conftest import make_settings

V1 = VersionRef("osol-0811", "version-01")


@pytest.fixture
def pool(tmp_path):
    storage = MemoryStorage()
    storage.create_project("masters", str(tmp_path / "masters"))
    storage.create_volume("masters", "osol-0811", 1 << 30, "qcow2")
    storage.create_volume("masters", "osol-0811@version-01", 1 << 30, "qcow2", readonly=True)
    infos = [
        HypervisorInfo(n, seg, f"mem:///{n}", 8, 16384, address=f"10.9.0.{i}")
        for i, (n, seg) in enumerate([("hv1", "odd"), ("hv2", "odd"), ("hv3", "even")], start=1)
    ]
    hvs = {h.name: MemoryHypervisor() for h in infos}
    g = Guests(
        make_settings(tmp_path, guests_per_host=4),
        storage,
        MemoryHypervisors(infos),
        lambda h: hvs[h.name],
        MemoryBindings(),
    )
    g.create_project("appl-1")
    return g, hvs


def add(g, n, memory=1024):
    ref = GuestRef("appl-1", f"vm-{n}")
    g.clone(V1, ref)
    host, _, _ = g.init("hvm", "fe-be", "odd", memory, 1, ref)
    return ref, host.name


def test_fills_hv1_then_hv2_and_never_the_other_segment(pool):
    g, hvs = pool
    hosts = [add(g, n)[1] for n in range(1, 9)]
    assert hosts == ["hv1"] * 4 + ["hv2"] * 4
    assert len(hvs["hv3"].domains()) == 0
    g.clone(V1, GuestRef("appl-1", "vm-9"))
    with pytest.raises(NoRoom) as err:  # the even-segment host stays out of it
        g.init("hvm", "fe", "odd", 1024, 1, GuestRef("appl-1", "vm-9"))
    assert "hv3: segment 'even', not 'odd'" in str(err.value)


def test_project_is_defined_on_every_hypervisor(pool):
    g, hvs = pool
    assert all("appl-1" in hv.pools for hv in hvs.values())


def test_migrate_moves_a_running_guest(pool):
    g, hvs = pool
    ref, src = add(g, 1)
    g.control(ref, "start")
    moved = g.migrate(ref, "hv2")
    assert moved.host.name == "hv2"
    assert g.locate(ref).host.name == "hv2" and g.locate(ref).domain.state == "running"
    assert hvs["hv1"].domains() == []


def test_preflight_names_each_problem(pool):
    g, hvs = pool
    ref, _ = add(g, 1, memory=4096)
    dest = hvs["hv2"]
    dest.pools.clear()  # the shared storage is not mounted there
    dest.bridges = frozenset({"fe0", "br-be"})
    dest.free_memory_mib = 2048
    with pytest.raises(MigrationRefused) as err:
        g.migrate(ref, "hv2")
    problems = err.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("disk: ") and "is not on storage hv2 sees" in problems[0]
    assert problems[1] == "nic be0: bridge 'be0' does not exist on hv2 (has: br-be, fe0)"
    assert problems[2] == "memory: hv2 has 2048 MiB free, appl-1:vm-1 needs 4096 MiB"
    assert g.locate(ref).host.name == "hv1"  # nothing moved


def test_migrate_to_a_drained_host_is_refused(pool, tmp_path):
    g, hvs = pool
    ref, _ = add(g, 1)
    infos = [
        h if h.name != "hv2" else HypervisorInfo("hv2", "odd", h.uri, 8, 16384, "drained")
        for h in g.source.hypervisors()
    ]
    g.source = MemoryHypervisors(infos)
    with pytest.raises(MigrationRefused, match="state: hv2 is 'drained'"):
        g.migrate(ref, "hv2")
