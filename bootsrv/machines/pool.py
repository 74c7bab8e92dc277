"""The hypervisor pool: enrolled machines seen as hypervisors, for the CLI, the API and placement.

For guest placement (bootsrv.virt):

    from bootsrv.machines.pool import pool
    hosts = pool(wiring.machines, guests={"hv1": 4})      # placeable hypervisors only
    everything = pool(wiring.machines, include_drained=True)

`pool(registry, guests=None, include_drained=False) -> list[Hypervisor]` is pure over the
registry: every enrolled machine with its `name` (hostname), `mac`, `segment`, `libvirt_uri`,
`hypervisor` ("xen"/"kvm"), `cpus`, `memory_mib`, `guests` (from the `guests` mapping by name,
0 when absent: the registry does not track guests, libvirt does) and `state` ("active" or
"drained"). Drained hypervisors are left out unless `include_drained`; retired machines are never
in the pool. Sorted by segment then name, so placement that fills hosts in order is stable.
One registry read builds the whole list, so hundreds of hypervisors cost one file parse at most.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from bootsrv.errors import Conflict, InvalidInput, NotFound
from bootsrv.machines.model import Machine, MachineRegistry, State, find, update
from bootsrv.virt.placement import HypervisorInfo


@dataclass(frozen=True)
class Hypervisor:
    name: str
    mac: str
    segment: str
    libvirt_uri: str
    hypervisor: str
    cpus: int
    memory_mib: int
    guests: int
    state: str  # "active" | "drained"
    profile: str | None
    enrolled_at: float | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def as_hypervisor(machine: Machine, guests: int = 0) -> Hypervisor:
    facts = machine.facts
    if machine.state is not State.ENROLLED or facts is None:
        raise InvalidInput("machine", f"{machine.mac} is {machine.state.value}, not an enrolled hypervisor")
    return Hypervisor(
        name=machine.hostname,
        mac=machine.mac,
        segment=machine.segment,
        libvirt_uri=machine.libvirt_uri or facts.libvirt_uri,
        hypervisor=facts.hypervisor,
        cpus=facts.cpus,
        memory_mib=facts.memory_mib,
        guests=guests,
        state="drained" if machine.drained else "active",
        profile=machine.profile,
        enrolled_at=machine.enrolled_at,
    )


def pool(
    registry: MachineRegistry, guests: Mapping[str, int] | None = None, include_drained: bool = False
) -> list[Hypervisor]:
    guests = guests or {}
    hosts = [
        as_hypervisor(m, guests.get(m.hostname, 0))
        for m in registry.list()
        if m.state is State.ENROLLED and m.facts is not None and (include_drained or not m.drained)
    ]
    return sorted(hosts, key=lambda h: (h.segment, h.name))


def hypervisor(registry: MachineRegistry, key: str, guests: Mapping[str, int] | None = None) -> Hypervisor:
    """One hypervisor by name or MAC; an enrolled machine only."""
    machine = find(registry, key)
    if machine.state is not State.ENROLLED:
        raise NotFound(f"hypervisor: {key!r} is a machine in state {machine.state.value!r}, not an enrolled hypervisor")
    return as_hypervisor(machine, (guests or {}).get(machine.hostname, 0))


def _enrolled(machine: Machine) -> Machine:
    if machine.state is not State.ENROLLED:
        raise Conflict(f"hypervisor {machine.hostname or machine.mac}: is {machine.state.value}, not enrolled")
    return machine


def drain(registry: MachineRegistry, key: str, now: float, drained: bool = True) -> Hypervisor:
    """Keep a hypervisor out of placement (its guests stay); `drained=False` puts it back."""
    mac = hypervisor(registry, key).mac
    stored = update(registry, mac, lambda m: dataclasses.replace(_enrolled(m), drained=drained, updated=now))
    return as_hypervisor(stored)


def totals(hosts: list[Hypervisor]) -> dict[str, int]:
    return {
        "hypervisors": len(hosts),
        "active": sum(1 for h in hosts if h.state == "active"),
        "cpus": sum(h.cpus for h in hosts),
        "memory_mib": sum(h.memory_mib for h in hosts),
        "guests": sum(h.guests for h in hosts),
    }


class MachineHypervisors:
    """Enrolled machines of the bootsrv.machines.model registry (issue 6), through its pool view.

    Drained hypervisors are included with state "drained": placement then says why it skips them.
    The pool does not record a migration address, so migration traffic goes to the host name.
    """

    def __init__(self, registry: MachineRegistry):
        self._registry = registry

    def hypervisors(self) -> list[HypervisorInfo]:
        return [
            HypervisorInfo(h.name, h.segment, h.libvirt_uri, h.cpus, h.memory_mib, h.state)
            for h in pool(self._registry, include_drained=True)
            if h.libvirt_uri
        ]
