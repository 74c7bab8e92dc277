"""Fixtures of the guest tests: a libvirt test-driver node (real libvirt-python, no daemon) standing
for hypervisor hv1 of segment "odd", settings with the Public/Backend networks, in-memory bindings."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from bootsrv.virt.bindings import AddressPlan, MemoryBindings
from bootsrv.virt.guests import Guests
from bootsrv.virt.hosts import MemoryHypervisors
from bootsrv.virt.placement import HypervisorInfo
from bootsrv.virt.settings import GuestSettings

HERE = Path(__file__).parent


def node_uri(tmp_path: Path) -> str:
    (tmp_path / "masters").mkdir(exist_ok=True)
    node = tmp_path / "node.xml"
    node.write_text((HERE / "node.xml.in").read_text().replace("@DIR@", str(tmp_path)))
    return f"test://{node}"


def make_settings(tmp_path: Path, **changes) -> GuestSettings:
    plans = {
        "public": AddressPlan(
            "public",
            IPv4Network("10.10.0.0/24"),
            ((IPv4Address("10.10.0.100"), IPv4Address("10.10.0.199")),),
            frozenset({IPv4Address("10.10.0.1"), IPv4Address("10.10.0.2")}),
        ),
        "backend": AddressPlan(
            "backend", IPv4Network("10.20.0.0/24"), ((IPv4Address("10.20.0.100"), IPv4Address("10.20.0.199")),)
        ),
    }
    base = dict(
        storage_dir=str(tmp_path),
        segments={"odd": {"fe0": "public", "be0": "backend"}},
        plans=plans,
        guests_per_host=5,
        reserve_mib=512,
    )
    base.update(changes)
    return GuestSettings(**base)


HV1 = HypervisorInfo("hv1", "odd", "test:///", cpus=16, memory_mib=8192)


@pytest.fixture
def host(tmp_path):
    from bootsrv.virt.libvirt_adapter import LibvirtHost

    h = LibvirtHost(node_uri(tmp_path))
    yield h
    h.close()


@pytest.fixture
def bindings():
    return MemoryBindings()


@pytest.fixture
def guests(tmp_path, host, bindings):
    """The use cases over one test-driver connection acting as the storage and as hv1."""
    return Guests(make_settings(tmp_path), host, MemoryHypervisors([HV1]), lambda h: host, bindings)
