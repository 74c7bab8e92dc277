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
    """Enrolled machines of the bootsrv.machines registry (issue 6), through its pool view.

    Drained hypervisors are included with state "drained": placement then says why it skips them.
    The pool does not record a migration address, so migration traffic goes to the host name.
    """

    def __init__(self, registry: Any):
        self._registry = registry

    def hypervisors(self) -> list[HypervisorInfo]:
        from bootsrv.machines_pool import pool

        return [HypervisorInfo(h.name, h.segment, h.libvirt_uri, h.cpus, h.memory_mib, h.state)
                for h in pool(self._registry, include_drained=True) if h.libvirt_uri]


class Chain:
    def __init__(self, *sources: HypervisorSource):
        self._sources = sources

    def hypervisors(self) -> list[HypervisorInfo]:
        seen: dict[str, HypervisorInfo] = {}
        for source in self._sources:
            for host in source.hypervisors():
                seen.setdefault(host.name, host)
        return list(seen.values())
