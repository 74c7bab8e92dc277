"""Lease housekeeping in `bootsrv serve`: lapsed leases go back to the pool on a timer."""

from __future__ import annotations

from bootsrv import config as configmod
from bootsrv.app.housekeeping import ExpiryService
from bootsrv.app.wiring import Wiring
from bootsrv.leases import client_id_of_mac

SITE = """
[server]
owner_ips = ["10.0.0.1"]
rescan_interval = 1
[store]
directory = "{dir}"
[[networks]]
name = "public"
subnet = "10.0.0.0/24"
ranges = [{{start = "10.0.0.100", end = "10.0.0.110"}}]
"""


def test_sweep_frees_lapsed_leases_and_keeps_live_ones(tmp_path):
    now = [1000.0]
    wiring = Wiring(configmod.parse(SITE.format(dir=tmp_path / "store"), "site.toml"), clock=lambda: now[0])
    store = wiring.leases
    short, long = client_id_of_mac("52:54:00:00:00:01"), client_id_of_mac("52:54:00:00:00:02")
    store.ack("public", store.offer("public", short, now[0], 30).ip, short, now[0], 10)
    store.ack("public", store.offer("public", long, now[0], 30).ip, long, now[0], 3600)
    service = ExpiryService(wiring)
    assert service.sweep() == 0
    now[0] += 11
    assert service.sweep() == 1
    assert store.find("public", short, now[0]) is None and store.find("public", long, now[0]) is not None
    wiring.close()
