"""Builders shared by the machine tests (imported as `machines_builders`; see conftest.py)."""

from __future__ import annotations

from ipaddress import IPv4Network

from bootsrv.config import NetworkSection
from bootsrv.machines.model import Machine, State

NOW = 1_800_000_000.0
MAC = "52:54:00:12:34:56"
OTHER_MAC = "52:54:00:ab:cd:ef"

NETWORKS = [
    NetworkSection(name="public", segment="odd", subnet=IPv4Network("192.0.2.0/24")),
    NetworkSection(name="backend", segment="odd", subnet=IPv4Network("10.1.0.0/24")),
]


def facts(mac: str = MAC, **over) -> dict:
    data = {
        "hostname": "hv1.lab.example",
        "cpus": 16,
        "memory_mib": 65536,
        "nics": [{"name": "fe0", "mac": mac}, {"name": "be0", "mac": "52:54:00:00:00:02"}],
        "disks": [{"name": "sda", "size_bytes": 500_107_862_016}, {"name": "sdb", "size_bytes": 500_107_862_016}],
        "hypervisor": "kvm",
        "libvirt_uri": "qemu+ssh://hv1.lab.example/system",
    }
    data.update(over)
    return data


def machine(mac: str = MAC, **over) -> Machine:
    base = dict(mac=mac, hostname="hv1", state=State.NEW, profile="debian12-kvm-hypervisor", created=NOW, updated=NOW)
    base.update(over)
    return Machine(**base)
