"""The machine registry's AddressBook over the shared lease store.

A machine's address on each network is a MANUAL+PERMANENT record for its MAC, so DHCP hands the
machine that address only and DNS answers its name. Names must be unique in the store (one A
record per name), so the machine's hostname goes on its first configured network and the others
get `<hostname>-<network>` (hv1 on public, hv1-backend on backend), the way the original site
named backend interfaces.
"""

from __future__ import annotations

from collections.abc import Callable

from bootsrv.leases import LeaseStore, client_id_of_mac


def dns_name(config, network: str, hostname: str) -> str:
    first = config.networks[0].name if config.networks else network
    return hostname if network == first else f"{hostname}-{network}"


class LeaseAddressBook:
    def __init__(self, store: LeaseStore, config, clock: Callable[[], float]):
        self.store, self.config, self.clock = store, config, clock

    def bind(self, network: str, ip: str, mac: str, hostname: str) -> None:
        self.store.bind(
            network,
            ip,
            client_id_of_mac(mac),
            dns_name(self.config, network, hostname),
            now=self.clock(),
            comment="machine",
        )

    def release(self, network: str, ip: str, mac: str) -> None:
        rec = self.store.get(network, ip)
        if rec is not None and rec.manual and rec.client_id == client_id_of_mac(mac):
            self.store.delete(network, ip, expect=rec.signature)
