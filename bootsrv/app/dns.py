"""`bootsrv serve`'s DNS service: the lease store's named records, answered by DnsServer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import IPv4Address
from typing import Any

from bootsrv.app.wiring import Wiring
from bootsrv.dns.server import DnsServer, HostSource, ZoneCache
from bootsrv.dns.zone import Host


def store_hosts(records: Callable[[], Iterable[Any]]) -> HostSource:
    """A HostSource over a lease store's `records()`: every record with a hostname.

    Records are read by attribute (.hostname, .ip, .network), so any store shaped like the lease
    store (or its in-memory version) serves.
    """

    def hosts() -> list[Host]:
        out = []
        for rec in records():
            name = getattr(rec, "hostname", "") or ""
            if name:
                out.append(Host(name, IPv4Address(str(rec.ip)), getattr(rec, "network", None)))
        return out

    return hosts


def dns_services(wiring: Wiring) -> list[DnsServer]:
    cfg = wiring.config
    if not cfg.dns.enabled:
        return []
    # The lease store is `wiring.leases` (shared with DHCP and the machine registry). A process
    # without one still answers SOA/NS and NXDOMAIN for its zones.
    store = getattr(wiring, "leases", None)
    source: HostSource = store_hosts(store.records) if store is not None else (lambda: [])
    cache = ZoneCache(cfg, source, clock=wiring.clock)
    return [DnsServer(str(cfg.dns.address), cfg.dns.port, cache)]
