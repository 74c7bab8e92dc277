"""Where placement learns about the hypervisor pool: a tiny interface and its sources.

`HypervisorSource.hypervisors()` is all placement and the commands need. Sources:
- `MemoryHypervisors`: a fixed list (tests, the benchmark);
- `config_hypervisors(settings)`: the static `[[guests.hypervisors]]` entries of the config;
- bootsrv.machines.pool.MachineHypervisors: the enrolled machines that report a libvirt URI;
- `Chain`: several sources, first one wins on a name clash.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from bootsrv.virt.placement import HypervisorInfo


class HypervisorSource(Protocol):
    def hypervisors(self) -> list[HypervisorInfo]: ...


class MemoryHypervisors:
    def __init__(self, hosts: Iterable[HypervisorInfo] = ()):
        self._hosts = list(hosts)

    def hypervisors(self) -> list[HypervisorInfo]:
        return list(self._hosts)


class Chain:
    def __init__(self, *sources: HypervisorSource):
        self._sources = sources

    def hypervisors(self) -> list[HypervisorInfo]:
        seen: dict[str, HypervisorInfo] = {}
        for source in self._sources:
            for host in source.hypervisors():
                seen.setdefault(host.name, host)
        return list(seen.values())
