"""Issue 16, items 1 and 2, over Flask's test client: the install boot, its answer and the
enrollment callback belong to the address bootsrv leased or bound to the machine, and every boot
of one install carries the same token.

The segment is boot_builders.LAN: the machine being installed took 192.0.2.100 from bootsrv's
DHCP (the lease store holds it for its MAC's client id); a stranger on the same segment asks
from other addresses. Every refusal is the JSON error naming `address` and changes nothing."""

from __future__ import annotations

import logging
import re

import pytest
from boot_builders import LAN, NOW, installer_facts, lease, make_wiring

from bootsrv.http.app import create_app
from bootsrv.leases import client_id_of_mac
from bootsrv.machines.enrollment import MAX_TOKENS, digest
from bootsrv.machines.model import Machine, State

MAC = "52:54:00:12:34:56"
OTHER = "52:54:00:ab:cd:ef"
STRANGER = "192.0.2.66"
PXE = "pxelinux.cfg/01-52-54-00-12-34-56"


def facts(**over) -> dict:
    return installer_facts(MAC, **over)


@pytest.fixture
def site(tmp_path):
    """A machine due for install that leased its address from bootsrv; another machine with its
    own lease; the client and the machine's address."""
    wiring = make_wiring(tmp_path, tail=LAN)
    for mac, name in ((MAC, "hv1"), (OTHER, "hv2")):
        wiring.machines.put(Machine(mac=mac, hostname=name, state=State.NEW, profile="lab-test", created=NOW), None)
    own = lease(wiring, MAC)
    return wiring, create_app(wiring).test_client(), own, lease(wiring, OTHER)


def get(client, path: str, remote: str):
    return client.get(path, environ_base={"REMOTE_ADDR": remote})


def token_in(script: str) -> str:
    return re.search(r"\?token=([A-Za-z0-9_-]+)", script)[1]


def refused(resp, words: str) -> None:
    assert resp.status_code == 403, resp.text
    body = resp.json
    assert body["error"] == "NotTheMachine" and body["field"] == "address", body
    assert words in body["reason"], body


# (id, where the request comes from: a function of (own address, other machine's address))
STRANGERS = [
    ("stranger", lambda own, other: STRANGER),
    ("other-machines-lease", lambda own, other: other),
    ("server-itself", lambda own, other: "192.0.2.1"),
    ("loopback", lambda own, other: "127.0.0.1"),
    ("ipv6", lambda own, other: "2001:db8::100"),
    ("ipv4-mapped-stranger", lambda own, other: f"::ffff:{STRANGER}"),
]


@pytest.mark.parametrize("remote", [s[1] for s in STRANGERS], ids=[s[0] for s in STRANGERS])
def test_a_stranger_gets_no_install_boot_and_nothing_changes(site, remote, caplog):
    caplog.set_level(logging.INFO)
    wiring, client, own, other = site
    before = wiring.machines.list()
    resp = get(client, f"/boot/{MAC}.ipxe", remote(own, other))
    refused(resp, f"the install boot of machine {MAC} is given only to an address bootsrv leased or bound")
    assert "token" not in resp.text and own not in resp.text  # no token, and no hint where to stand
    assert wiring.machines.list() == before  # still new, no token issued
    # The same over TFTP (pxelinux, GRUB): no config at all, nothing written.
    assert wiring.tftp_dynamic(PXE, remote(own, other)) is None
    assert wiring.machines.list() == before
    refusals = [r for r in caplog.records if r.getMessage() == "tftp.refused"]
    assert refusals and refusals[0].levelname == "INFO"  # a stranger's request is no server error
    assert "is given only to an address bootsrv leased or bound" in refusals[0].bootsrv_fields["reason"]


def test_the_machine_at_its_leased_address_gets_its_install(site):
    wiring, client, own, _ = site
    resp = get(client, f"/boot/{MAC}.ipxe", own)
    assert resp.status_code == 200 and "kernel " in resp.text
    assert wiring.machines.get(MAC).tokens[0].digest == digest(token_in(resp.text))
    ipv4_mapped = get(client, f"/boot/{MAC}.ipxe", f"::ffff:{own}")  # a dual-stack socket's view of it
    assert token_in(ipv4_mapped.text) == token_in(resp.text)


def test_enrollment_hijack_is_refused(site):
    """The issue's item 1, step by step: even holding the real token (say it was sniffed), a
    stranger can fetch neither the answer nor enroll with invented facts; the machine's own
    installer cannot point the libvirt URI elsewhere either; the real callback then succeeds."""
    wiring, client, own, _ = site
    token = token_in(get(client, f"/boot/{MAC}.ipxe", own).text)
    answer = f"/profiles/{MAC}/answer.sh?token={token}"
    before = wiring.machines.list()
    refused(get(client, answer, STRANGER), f"the answer file of machine {MAC}")
    invented = {"token": token, "mac": MAC, "facts": facts(libvirt_uri="qemu+ssh://root@evil.example/system")}
    resp = client.post("/api/enroll", json=invented, environ_base={"REMOTE_ADDR": STRANGER})
    refused(resp, f"enrollment of machine {MAC}")
    resp = client.post("/api/enroll", json=invented, environ_base={"REMOTE_ADDR": own})
    assert resp.status_code == 400 and resp.json["field"] == "facts.libvirt_uri", resp.json
    assert "host 'evil.example' is not this machine" in resp.json["reason"]
    assert wiring.machines.list() == before
    assert get(client, answer, own).status_code == 200
    real = {"token": token, "mac": MAC, "facts": facts()}
    resp = client.post("/api/enroll", json=real, environ_base={"REMOTE_ADDR": own})
    assert resp.status_code == 200, resp.json
    enrolled = wiring.machines.get(MAC)
    assert enrolled.state is State.ENROLLED and enrolled.libvirt_uri == "qemu+ssh://root@hv1.lab.example/system"


def test_fetches_do_not_lock_the_installer_out(site):
    """The issue's item 2: the installer has its token; then strangers fetch the boot script
    many times, and the machine's own address (a firmware retry, or spoofed-source TFTP
    requests, which need no handshake) asks again and again. Nothing pushes its token out."""
    wiring, client, own, _ = site
    token = token_in(get(client, f"/boot/{MAC}.ipxe", own).text)
    after_issue = wiring.machines.get(MAC)
    for i in range(3 * MAX_TOKENS):
        wiring.clock.now = NOW + i
        assert get(client, f"/boot/{MAC}.ipxe", STRANGER).status_code == 403
        assert token_in(get(client, f"/boot/{MAC}.ipxe", own).text) == token
        assert token_in(wiring.tftp_dynamic(PXE, own).decode()) == token
    assert wiring.machines.get(MAC) == after_issue  # not one write after the first boot
    body = {"token": token, "mac": MAC, "facts": facts()}
    resp = client.post("/api/enroll", json=body, environ_base={"REMOTE_ADDR": own})
    assert resp.status_code == 200, resp.json


# Where bootsrv knows a machine's address from (bootsrv.machines.binding): each lets its
# install through; an address it no longer holds does not. (id, set up, address to ask from, allowed)
def _declared(wiring):
    machine = wiring.machines.get(MAC)
    wiring.machines.put(Machine(**{**machine.__dict__, "addresses": (("lan", "192.0.2.20"),)}), machine.revision)
    return "192.0.2.20"


def _bound(wiring):
    wiring.address_book.bind("lan", "192.0.2.21", MAC, "hv1")  # `machine add --address`'s lease-store half
    return "192.0.2.21"


def _leased(wiring):
    return lease(wiring, MAC)


def _expired(wiring):
    ip = lease(wiring, MAC)
    wiring.clock.now = NOW + 86400 + 1  # the lease ran out: the address is nobody's
    return ip


def _released(wiring):
    ip = lease(wiring, MAC)
    wiring.leases.release("lan", ip, client_id_of_mac(MAC))  # DHCPRELEASE
    return ip


SOURCES = [
    ("declared-in-registry", _declared, True),
    ("manual-binding-in-store", _bound, True),
    ("dhcp-lease", _leased, True),
    ("expired-lease", _expired, False),
    ("released-lease", _released, False),
]


@pytest.mark.parametrize(("setup", "allowed"), [s[1:] for s in SOURCES], ids=[s[0] for s in SOURCES])
def test_where_the_address_comes_from(tmp_path, setup, allowed):
    wiring = make_wiring(tmp_path, tail=LAN)
    wiring.machines.put(Machine(mac=MAC, hostname="hv1", state=State.NEW, profile="lab-test", created=NOW), None)
    ip = setup(wiring)
    before = wiring.machines.list()
    resp = get(create_app(wiring).test_client(), f"/boot/{MAC}.ipxe", ip)
    if allowed:
        assert resp.status_code == 200 and "kernel " in resp.text
    else:
        refused(resp, "it has none")
        assert wiring.machines.list() == before


def test_local_boot_needs_no_address(site):
    """Only the install is bound: an enrolled or unknown machine's local-boot script is no secret."""
    wiring, client, _, _ = site
    assert "boots from its local disk" in get(client, "/boot/52:54:00:99:99:99.ipxe", STRANGER).text
    retired = wiring.machines.get(OTHER)
    wiring.machines.put(Machine(**{**retired.__dict__, "state": State.RETIRED}), retired.revision)
    assert "machine is retired" in get(client, f"/boot/{OTHER}.ipxe", STRANGER).text
