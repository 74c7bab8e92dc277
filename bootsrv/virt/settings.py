"""The guest settings, taken from the config's [guests] and [[networks]] (pure).

Resolves which bootsrv network each NIC of each segment is on, and checks that mapping against
the networks (the config model cannot: it validates sections one by one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bootsrv.errors import ConfigError, InvalidInput, NotFound
from bootsrv.virt.bindings import AddressPlan
from bootsrv.virt.domain import LAYOUTS, Nic
from bootsrv.virt.placement import DEFAULT_GUESTS_PER_HOST, HypervisorInfo

NIC_NAMES = tuple(sorted({n for nics in LAYOUTS.values() for n in nics}))


@dataclass(frozen=True)
class GuestSettings:
    guests_per_host: int = DEFAULT_GUESTS_PER_HOST
    reserve_mib: int = 1024
    storage_dir: str = "/var/lib/bootsrv/guests"
    storage_uri: str | None = None
    attach: str = "bridge"
    virt_type: str = "kvm"
    segments: dict[str, dict[str, str]] = field(default_factory=dict)  # segment -> nic -> network
    plans: dict[str, AddressPlan] = field(default_factory=dict)  # network -> address plan
    hypervisors: tuple[HypervisorInfo, ...] = ()

    def nics(self, segment: str, layout: str) -> tuple[Nic, ...]:
        """The NICs of `layout` on `segment`: which bootsrv network each is on, what it attaches to."""
        if segment not in self.segments:
            raise NotFound(
                f"segment: no segment {segment!r} with guest networks "
                f"(known: {', '.join(sorted(self.segments)) or 'none'}; see [guests.segments])"
            )
        out = []
        for name in LAYOUTS[layout]:
            network = self.segments[segment].get(name)
            if network is None:
                raise NotFound(
                    f"layout: segment {segment!r} has no network for NIC {name!r} "
                    f'(set [guests.segments.{segment}] {name} = "<network>")'
                )
            source = name if self.attach == "bridge" else network
            out.append(Nic(name, network, self.attach, source))
        return tuple(out)


def from_config(cfg, source: str = "<config>") -> GuestSettings:
    g = cfg.guests
    networks = {n.name: n for n in cfg.networks}
    segments: dict[str, dict[str, str]] = {}
    # Default: a network served on an interface named like a guest NIC (fe0/be0) is that NIC's
    # network on its segment: the site convention is the same NIC names on servers and hypervisors.
    for net in cfg.networks:
        if net.segment and net.interface in NIC_NAMES:
            segments.setdefault(net.segment, {})[net.interface] = net.name
    for segment, mapping in g.segments.items():
        for nic, network in mapping.items():
            key = f"guests.segments.{segment}.{nic}"
            if nic not in NIC_NAMES:
                raise ConfigError(source, key, f"unknown NIC {nic!r}; expected one of {', '.join(NIC_NAMES)}")
            if network not in networks:
                raise ConfigError(source, key, f"no [[networks]] entry named {network!r}")
            if networks[network].segment != segment:
                raise ConfigError(
                    source, key, f"network {network!r} is on segment {networks[network].segment!r}, not {segment!r}"
                )
            segments.setdefault(segment, {})[nic] = network
    servers = list(cfg.server.owner_ips)
    plans = {n.name: AddressPlan.from_network(n, servers) for n in cfg.networks}
    hosts = tuple(
        HypervisorInfo(h.name, h.segment, h.uri, h.cpus, h.memory_mib, h.state, h.address) for h in g.hypervisors
    )
    return GuestSettings(
        guests_per_host=g.guests_per_host,
        reserve_mib=g.reserve_mib,
        storage_dir=str(g.storage_dir),
        storage_uri=g.storage_uri,
        attach=g.attach,
        virt_type=g.virt_type,
        segments=segments,
        plans=plans,
        hypervisors=hosts,
    )


def check_nic_name(name: str) -> str:
    if name not in NIC_NAMES:
        raise InvalidInput("nic", f"{name!r} is not a guest NIC; expected one of {', '.join(NIC_NAMES)}")
    return name
