"""The machine registry's and the guest commands' views of the lease store."""

from __future__ import annotations

from ipaddress import IPv4Address as IP

import pytest

from bootsrv import config as configmod
from bootsrv.errors import Conflict
from bootsrv.leases import Flag, client_id_of_mac, pools_from_config
from bootsrv.leases.memory import MemoryStore
from bootsrv.machines.addressbook import LeaseAddressBook
from bootsrv.virt.bindings import Binding
from bootsrv.virt.leasebind import LeaseBindings

SITE = """
[server]
owner_ips = ["10.0.0.1"]
[[networks]]
name = "public"
subnet = "10.0.0.0/24"
ranges = [{start = "10.0.0.100", end = "10.0.0.199"}]
[[networks]]
name = "backend"
subnet = "10.1.0.0/24"
"""


@pytest.fixture
def config():
    return configmod.parse(SITE, "site.toml")


@pytest.fixture
def store(config):
    return MemoryStore(pools_from_config(config), config.server.owner_ips)


def test_machine_addresses_become_named_manual_bindings(config, store):
    book = LeaseAddressBook(store, config, lambda: 0)
    book.bind("public", "10.0.0.11", "52:54:00:12:34:56", "hv1")
    book.bind("backend", "10.1.0.11", "52:54:00:12:34:56", "hv1")
    pub, back = store.get("public", "10.0.0.11"), store.get("backend", "10.1.0.11")
    assert pub.flags == Flag.MANUAL | Flag.PERMANENT and pub.client_id == "01525400123456"
    assert (pub.hostname, back.hostname) == ("hv1", "hv1-backend")
    book.release("public", "10.0.0.11", "52:54:00:99:99:99")  # not its binding: kept
    assert store.get("public", "10.0.0.11") is not None
    book.release("public", "10.0.0.11", "52:54:00:12:34:56")
    assert store.get("public", "10.0.0.11") is None


def test_guest_bindings_round_trip(store):
    bindings = LeaseBindings(lambda: store, lambda: 0)
    bindings.bind(Binding("public", IP("10.0.0.50"), "52:54:00:aa:00:01", "vm-host1", "appl-1:vm-1"))
    assert [(u.ip, u.client, u.hostname) for u in bindings.used("public")] == [
        (IP("10.0.0.50"), "52:54:00:aa:00:01", "vm-host1")
    ]
    with pytest.raises(Conflict):
        bindings.bind(Binding("public", IP("10.0.0.50"), "52:54:00:aa:00:02", "vm-host2"))
    assert bindings.unbind("public", "52:54:00:aa:00:01") == [IP("10.0.0.50")]
    assert bindings.used("public") == []


def test_guest_bindings_see_dynamic_leases_as_used(store):
    cid = client_id_of_mac("52:54:00:bb:00:01")
    store.ack("public", store.offer("public", cid, 10, 30).ip, cid, 10, 3600)
    bindings = LeaseBindings(store, lambda: 20)
    assert [u.client for u in bindings.used("public")] == ["52:54:00:bb:00:01"]


@pytest.mark.parametrize(
    "client_id, mac",
    [
        ("01525400AABBCC", "52:54:00:aa:bb:cc"),  # Ethernet: the inverse of client_id_of_mac
        ("FF00112233", "FF00112233"),  # any other client id (option 61) stays as it is
        ("02525400AABBCC", "02525400AABBCC"),  # hardware type 2 is not Ethernet
    ],
)
def test_mac_of_client_id(client_id, mac):
    from bootsrv.leases import mac_of_client_id

    assert mac_of_client_id(client_id) == mac
    if mac != client_id:
        assert client_id_of_mac(mac) == client_id
