"""Guest bindings (bootsrv.virt.bindings.Bindings) over the shared lease store: assign-ip writes
a MANUAL+PERMANENT record, so bootsrv's DHCP gives the guest's NIC its address and DNS its name."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

from bootsrv.leases import LeaseStore, client_id_of_mac, mac_of_client_id
from bootsrv.virt.bindings import Binding, Used


class LeaseBindings:
    def __init__(self, store: LeaseStore | Callable[[], LeaseStore], clock):
        # A callable defers opening the store to the first use: `bootsrv guest list` needs none.
        self._store, self.clock = store, clock

    @property
    def store(self) -> LeaseStore:
        if callable(self._store):
            self._store = self._store()
        return self._store

    def used(self, network: str) -> list[Used]:
        now = self.clock()
        return [
            Used(r.ip, mac_of_client_id(r.client_id), r.hostname)
            for r in self.store.records(network)
            if r.active(now) or r.unusable or r.hostname
        ]

    def bind(self, binding: Binding) -> None:
        self.store.bind(
            binding.network,
            binding.ip,
            client_id_of_mac(binding.mac),
            binding.hostname,
            now=self.clock(),
            comment=binding.comment,
        )

    def unbind(self, network: str, mac: str) -> list[IPv4Address]:
        cid = client_id_of_mac(mac)
        freed = []
        for rec in self.store.records(network):
            if rec.manual and rec.client_id == cid:
                self.store.delete(network, rec.ip, expect=rec.signature)
                freed.append(rec.ip)
        return freed
