"""Where placement learns about the hypervisor pool: a tiny interface and its sources.

`HypervisorSource.hypervisors()` is all placement and the commands need. Sources:
- `MemoryHypervisors`: a fixed list (tests, the benchmark);
- `config_hypervisors(settings)`: the static `[[guests.hypervisors]]` entries of the config;
- `MachineHypervisors`: enrolled machines of bootsrv.machines (issue 6) that report a libvirt URI;
- `Chain`: several sources, first one wins on a name clash.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from bootsrv.virt.placement import HypervisorInfo


class HypervisorSource(Protocol):
    def hypervisors(self) -> list[HypervisorInfo]: ...


class MemoryHypervisors:
    def __init__(self, hosts: Iterable[HypervisorInfo] = ()):
        self._hosts = list(hosts)

    def hypervisors(self) -> list[HypervisorInfo]:
        return list(self._hosts)


class MachineHypervisors:
    """Enrolled machines of a bootsrv.machines registry, seen as hypervisors.

    Duck-typed over the registry's `list()` and the Machine fields it documents (state, hostname,
    segment, libvirt_uri, drained, facts.cpus, facts.memory_mib), so this module does not import
    bootsrv.machines and keeps working while that module evolves.
    """

    def __init__(self, registry: Any):
        self._registry = registry

    def hypervisors(self) -> list[HypervisorInfo]:
        out = []
        for m in self._registry.list():
            state = getattr(getattr(m, "state", ""), "value", getattr(m, "state", ""))
            uri = getattr(m, "libvirt_uri", None)
            if state != "enrolled" or not uri:
                continue
            facts = getattr(m, "facts", None)
            out.append(HypervisorInfo(
                name=getattr(m, "hostname", "") or getattr(m, "mac", ""),
                segment=getattr(m, "segment", ""),
                uri=uri,
                cpus=getattr(facts, "cpus", 0) if facts else 0,
                memory_mib=getattr(facts, "memory_mib", 0) if facts else 0,
                state="drained" if getattr(m, "drained", False) else "active",
            ))
        return out


class Chain:
    def __init__(self, *sources: HypervisorSource):
        self._sources = sources

    def hypervisors(self) -> list[HypervisorInfo]:
        seen: dict[str, HypervisorInfo] = {}
        for source in self._sources:
            for host in source.hypervisors():
                seen.setdefault(host.name, host)
        return list(seen.values())
