"""Netboot once through the planner: install plans only for machines due for install."""

from __future__ import annotations

import pytest
from machines_builders import MAC, NOW, OTHER_MAC, enroll, facts, machine

from bootsrv.machines.admin import discover, reinstall, retire
from bootsrv.machines.enrollment import digest
from bootsrv.machines.model import MemoryRegistry, State
from bootsrv.machines.planner import RegistryPlanner, decide

TTL = 600


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


@pytest.mark.parametrize(
    ("state", "install"),
    [
        (State.NEW, True),
        (State.INSTALLING, True),
        (State.REINSTALL_REQUESTED, True),
        (State.ENROLLED, False),
        (State.RETIRED, False),
        (State.DISCOVERED, False),
    ],
    ids=lambda v: getattr(v, "value", v),
)
def test_plan_by_state(state, install):
    registry = MemoryRegistry([machine(state=state, profile=None if state is State.DISCOVERED else "p")])
    before = registry.list()
    got = decide(registry, MAC, NOW, TTL)
    if install:
        assert got.machine.state is State.INSTALLING and got.machine.mac == MAC
        assert [t.digest for t in registry.get(MAC).tokens] == [digest(got.token)]
    else:
        assert got is None and registry.list() == before  # local boot writes nothing


def test_unknown_mac_boots_locally_and_is_not_recorded():
    registry = MemoryRegistry()
    assert decide(registry, "52-54-00-12-34-56", NOW, TTL) is None and registry.list() == []


def test_full_cycle_no_reinstall_loop():
    clock = Clock()
    registry = MemoryRegistry([machine()])
    planner = RegistryPlanner(registry, clock, TTL)
    first = planner.plan(MAC)  # power on: install
    again = planner.plan(MAC)  # installer restarted: still install, the same token (one per install)
    assert again.token == first.token and len(registry.get(MAC).tokens) == 1
    clock.now += 60
    enroll(registry, {"token": again.token, "mac": MAC, "facts": facts()}, clock())
    for _ in range(3):  # every later boot: local disk, nothing written
        before = registry.list()
        assert planner.plan(MAC) is None and registry.list() == before
    reinstall(registry, MAC, clock())
    assert planner.plan(MAC).machine.state is State.INSTALLING
    retire(registry, MAC, clock())
    assert planner.plan(MAC) is None


def test_second_machine_keeps_its_install_boot():
    clock = Clock()
    registry = MemoryRegistry([machine(), machine(OTHER_MAC, hostname="hv2")])
    planner = RegistryPlanner(registry, clock, TTL)
    token = planner.plan(MAC).token
    enroll(registry, {"token": token, "mac": MAC, "facts": facts()}, clock())
    for _ in range(3):
        assert planner.plan(OTHER_MAC) is not None
    assert planner.plan(MAC) is None


def test_enrolled_by_the_peer_between_read_and_write():
    class PeerEnrollsFirst(MemoryRegistry):
        """The peer enrolls the machine right after our read: our install must not happen."""

        def __init__(self, machines):
            super().__init__(machines)
            self.raced = False

        def put(self, m, expected):
            if not self.raced and m.state is State.INSTALLING:
                self.raced = True
                current = self.get(m.mac)
                import dataclasses

                peer = dataclasses.replace(current, state=State.ENROLLED)
                super().put(peer, current.revision)
            return super().put(m, expected)

    registry = PeerEnrollsFirst([machine(state=State.INSTALLING)])
    assert decide(registry, MAC, NOW, TTL) is None
    assert registry.get(MAC).state is State.ENROLLED


def test_plan_adapter_gets_the_install():
    registry = MemoryRegistry([machine()])
    planner = RegistryPlanner(registry, Clock(), TTL, to_plan=lambda i: ("plan", i.machine.profile, len(i.token)))
    assert planner.plan(MAC) == ("plan", "debian12-kvm-hypervisor", 43)


def test_discovered_then_adopted_then_planned():
    from machines_builders import NETWORKS

    from bootsrv.machines.admin import MemoryAddressBook, adopt

    registry = MemoryRegistry()
    discover(registry, MAC, 7, None, None, NOW)
    assert decide(registry, MAC, NOW, TTL) is None
    adopt(registry, MemoryAddressBook(), NETWORKS, mac=MAC, hostname="hv1", profile="p", now=NOW)
    assert decide(registry, MAC, NOW, TTL).machine.profile == "p"
