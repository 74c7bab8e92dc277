"""Issue 16, items 1 and 2, from real clients on a boot segment (integration): `bootsrv serve`
(DHCP, HTTP) in a lab namespace; the machine being installed takes its address from bootsrv's
DHCP (busybox udhcpc, with the machine's MAC on its NIC) and speaks curl from there; a stranger
on the same segment, at an address of its own, tries the issue's hijack and lockout with curl.

The stranger gets no install boot (403, field `address`), no answer and no enrollment even with
the real token in hand; its fetches never push the installer's token out; the installer cannot
point the libvirt URI at another host; its real callback enrolls the machine."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from boot_builders import installer_facts

from bootsrv.lab import demo
from tests.conftest import need

pytestmark = pytest.mark.integration

PREFIX = "10.239.0"
SERVER = f"{PREFIX}.2"
STRANGER = f"{PREFIX}.66"
MAC = "52:54:00:39:00:01"
URL = f"http://{SERVER}:8080"
FLOOD = 40  # more than MAX_TOKENS (16) fetches, each of which issued a token before

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"; echo "$ip" > "%s" ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
exit 0
"""


def curl(host, *args: str) -> tuple[int, str]:
    """(HTTP status, body) of one curl run in `host`'s namespace."""
    done = host.run(["curl", "-s", "-m", "10", "-w", "\n%{http_code}", *args], check=False, timeout=30)
    body, _, status = done.stdout.rpartition("\n")
    return int(status or 0), body


def post(host, path: str, body: dict) -> tuple[int, dict]:
    status, text = curl(host, "-H", "Content-Type: application/json", "--data", json.dumps(body), f"{URL}{path}")
    return status, json.loads(text)


def facts(**over) -> dict:
    return installer_facts(MAC, **over)


def test_hijack_and_lockout_from_the_boot_segment(lab, tmp_path):
    need(shutil.which("curl") is not None, "curl is not installed")
    need(shutil.which("busybox") is not None, "busybox (busybox-static) is not installed")
    seg = lab.segment("boot")
    site = demo.Site(tmp_path, server_ip=SERVER, prefix=PREFIX, name="sec", boot=False)
    site.start(lab, seg)
    site.add_machine(MAC, "hv1")
    machine, stranger = lab.host("hv1"), lab.host("evil")
    lab.plug(machine, seg, "net0", mac=MAC)
    lab.plug(stranger, seg, "net0", f"{STRANGER}/24")
    script = f"/boot/{MAC}.ipxe"

    # Before the machine has even booted: the stranger asks for its install boot.
    status, text = curl(stranger, f"{URL}{script}")
    assert status == 403, text
    refusal = json.loads(text)
    assert refusal["field"] == "address", text
    assert "it has none" in refusal["reason"] and "token" not in text  # no lease yet, no install for anyone
    assert site.machine(MAC)["state"] == "new" and site.machine(MAC)["tokens"] == []

    # The machine's firmware takes its lease from bootsrv, then fetches its boot script.
    leased = tmp_path / "leased"
    (tmp_path / "udhcpc.sh").write_text(UDHCPC_SCRIPT % leased)
    (tmp_path / "udhcpc.sh").chmod(0o755)
    machine.run(
        ["busybox", "udhcpc", "-f", "-q", "-n", "-i", "net0", "-s", str(tmp_path / "udhcpc.sh"), "-t", "6", "-T", "1"],
        check=False,
        timeout=30,
    )
    assert leased.is_file(), site.served()[-2000:]
    own = leased.read_text().strip()
    assert own.startswith(f"{PREFIX}.1")
    status, text = curl(machine, f"{URL}{script}")
    assert status == 200 and "kernel " in text, text
    token = re.search(r"\?token=([A-Za-z0-9_-]+)", text)[1]

    # The lockout: the stranger fetches the script again and again; the machine asks again too.
    codes = [curl(stranger, f"{URL}{script}")[0] for _ in range(FLOOD)]
    assert codes == [403] * FLOOD
    assert f"this request came from {STRANGER}" in curl(stranger, f"{URL}{script}")[1]
    assert re.search(r"\?token=([A-Za-z0-9_-]+)", curl(machine, f"{URL}{script}")[1])[1] == token
    assert len(site.machine(MAC)["tokens"]) == 1

    # The hijack, with the real token in hand: no answer, no enrollment for the stranger.
    before = site.machine(MAC)
    status, text = curl(stranger, f"{URL}/profiles/{MAC}/answer.sh?token={token}")
    assert status == 403 and json.loads(text)["field"] == "address"
    status, body = post(
        stranger,
        "/api/enroll",
        {"token": token, "mac": MAC, "facts": facts(libvirt_uri="qemu+ssh://root@10.239.0.66/system")},
    )
    assert status == 403 and body["field"] == "address", body
    # Nor can the installer itself name another host for guest placement to connect to.
    status, body = post(
        machine,
        "/api/enroll",
        {"token": token, "mac": MAC, "facts": facts(libvirt_uri="qemu+ssh://evil.example/system")},
    )
    assert status == 400 and body["field"] == "facts.libvirt_uri", body
    assert site.machine(MAC) == before  # nothing changed

    # The installer's own steps still work: its answer, then its callback.
    status, text = curl(machine, f"{URL}/profiles/{MAC}/answer.sh?token={token}")
    assert status == 200 and f"TOKEN={token}" in text
    status, body = post(machine, "/api/enroll", {"token": token, "mac": MAC, "facts": facts()})
    assert status == 200 and body["status"] == "enrolled", body
    enrolled = site.machine(MAC)
    assert enrolled["state"] == "enrolled" and enrolled["libvirt_uri"] == "qemu+ssh://root@hv1.lab.example/system"
    served = site.served()
    assert served.count("event=http.refused") >= FLOOD + 4 and f"came from {STRANGER}" in served
