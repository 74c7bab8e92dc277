"""/boot/<mac>.ipxe and /profiles/<mac>/<file> over Flask's test client: netboot once, the
unknown-machine policy, MAC spellings, and the answer's token rules as a table."""

from __future__ import annotations

import logging
import re

import pytest
from boot_builders import BASE, LAN, NOW, lease, make_wiring

from bootsrv.app.discovery import discovery_recorder
from bootsrv.http.app import create_app
from bootsrv.machines import enrollment
from bootsrv.machines.admin import reinstall, retire
from bootsrv.machines.enrollment import digest
from bootsrv.machines.model import Machine, State
from bootsrv.machines.plan import identity

MAC = "52:54:00:12:34:56"
OTHER = "52:54:00:ab:cd:ef"
FACTS = {
    "hostname": "hv1.lab.example",
    "cpus": 4,
    "memory_mib": 4096,
    "nics": [{"name": "eth0", "mac": MAC}],
    "disks": [{"name": "vda", "size_bytes": 1 << 30}],
    "hypervisor": "kvm",
    "libvirt_uri": "qemu+ssh://root@hv1.lab.example/system",
}


# Each machine's address as `machine add --address` declares it: its boot and its installer come
# from there (tests/http/test_boot_binding.py has the other sources and the refusals).
ADDRESS = {MAC: "192.0.2.50", OTHER: "192.0.2.51"}


@pytest.fixture
def client(wiring):
    client = create_app(wiring).test_client()
    client.environ_base["REMOTE_ADDR"] = ADDRESS[MAC]
    return client


def add(wiring, mac=MAC, state=State.NEW, profile="lab-test", hostname="hv1"):
    machine = Machine(
        mac=mac, hostname=hostname, state=state, profile=profile, created=NOW, addresses=(("lan", ADDRESS[mac]),)
    )
    wiring.machines.put(machine, None)


def enroll(wiring, body, now):
    """The installer's callback, from its machine's address, checked as the API checks it."""
    return enrollment.enroll(wiring.machines, body, now, client=ADDRESS[MAC], identify=lambda m: identity(wiring, m))


def answer_url(script: str) -> str:
    found = re.search(r"bootsrv\.answer=(\S+)", script) or re.search(r"\burl=(\S+)", script)
    assert found, script
    return found[1]


def token_of(url: str) -> str:
    return url.split("?token=", 1)[1]


def test_install_script_for_a_new_machine(client, wiring):
    add(wiring)
    resp = client.get(f"/boot/{MAC}.ipxe")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    script = resp.text
    assert script.startswith("#!ipxe\n")
    assert f"kernel {BASE}/files/lab/vmlinuz initrd=initrd " in script
    assert f"initrd --name initrd {BASE}/files/lab/initrd.gz" in script
    url = answer_url(script)
    assert url.startswith(f"{BASE}/profiles/52-54-00-12-34-56/answer.sh?token=")
    machine = wiring.machines.get(MAC)
    assert machine.state is State.INSTALLING
    assert [t.digest for t in machine.tokens] == [digest(token_of(url))]  # the script's token is the one issued


def test_enrolled_machine_boots_locally_and_nothing_is_written(client, wiring):
    add(wiring)
    script = client.get(f"/boot/{MAC}.ipxe").text
    enroll(wiring, {"token": token_of(answer_url(script)), "mac": MAC, "facts": FACTS}, NOW)
    before = wiring.machines.list()
    for _ in range(3):  # every later boot: local, no token, no write (no reinstall loop)
        local = client.get(f"/boot/{MAC}.ipxe").text
        assert "sanboot --no-describe --drive 0x80 || exit" in local and "kernel" not in local
        assert "machine is enrolled" in local
    assert wiring.machines.list() == before
    reinstall(wiring.machines, MAC, NOW + 10)  # an admin asks: install again
    assert "kernel " in client.get(f"/boot/{MAC}.ipxe").text
    retire(wiring.machines, MAC, NOW + 20)
    assert "kernel " not in client.get(f"/boot/{MAC}.ipxe").text


@pytest.mark.parametrize(
    "spelling",
    ["52:54:00:12:34:56", "52-54-00-12-34-56", "5254.0012.3456", "525400123456", "52:54:00:12:34:56".upper()],
)
def test_mac_spellings(client, wiring, spelling):
    add(wiring)
    assert "kernel " in client.get(f"/boot/{spelling}.ipxe").text


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/boot/52:54:00:12:34.ipxe", 400, "mac: "),
        ("/boot/zz:54:00:12:34:56.ipxe", 400, "mac: "),
        ("/boot/01:00:5e:00:00:01.ipxe", 400, "multicast"),
        ("/boot/52:54:00:12:34:56.cfg", 404, "path: "),
        ("/profiles/not-a-mac/answer.sh?token=" + "A" * 43, 400, "mac: "),
    ],
    ids=["short", "hex", "multicast", "suffix", "answer-mac"],
)
def test_bad_requests_name_the_field(client, wiring, path, status, words):
    add(wiring)
    before = wiring.machines.list()
    resp = client.get(path)
    assert resp.status_code == status and words in resp.text, resp.text
    assert wiring.machines.list() == before


def test_unknown_machine_gets_local_boot_by_default(tmp_path):
    wiring = make_wiring(tmp_path, 'unknown_machines = "local"')
    resp = create_app(wiring).test_client().get(f"/boot/{OTHER}.ipxe")
    assert resp.status_code == 200 and "exit" in resp.text and "unknown machine" in resp.text
    assert wiring.machines.list() == []


def test_unknown_machine_discovered_by_policy(tmp_path):
    wiring = make_wiring(tmp_path)  # the embedded default: unknown_machines = "discover"
    resp = create_app(wiring).test_client().get(f"/boot/{OTHER}.ipxe")
    assert "kernel " not in resp.text  # discovered machines boot locally until adopted
    assert wiring.machines.list() == []  # the request writes nothing: any client may ask for any MAC
    discovery_recorder(wiring).record_pending()  # the recorder's next batch (bootsrv.app.discovery)
    assert wiring.machines.get(OTHER).state is State.DISCOVERED


def test_unknown_machine_installs_with_auto_profile(tmp_path):
    wiring = make_wiring(tmp_path, 'auto_profile = "lab-test"', tail=LAN)
    leased = lease(wiring, OTHER)  # its PXE ROM took a lease from bootsrv's DHCP first
    script = create_app(wiring).test_client().get(f"/boot/{OTHER}.ipxe", environ_base={"REMOTE_ADDR": leased}).text
    assert "kernel " in script and "bootsrv.answer=" in script
    assert wiring.machines.get(OTHER).state is State.INSTALLING


# ---------------------------------------------------------------------------------------------
# The answer file and its token


def boot(client) -> str:
    return answer_url(client.get(f"/boot/{MAC}.ipxe").text).removeprefix(BASE)


def test_answer_carries_the_token_and_a_retry_works(client, wiring):
    add(wiring)
    path = boot(client)
    token = token_of(path)
    first = client.get(path)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    assert f"TOKEN={token}" in first.text and "MAC=52:54:00:12:34:56" in first.text
    second = client.get(path)  # an installer that retries its fetch gets the same answer
    assert second.status_code == 200 and second.text == first.text
    assert len(wiring.machines.get(MAC).tokens) == 1  # answer fetches issue nothing


def _expire(client, wiring):
    path = boot(client)
    wiring.clock.now = NOW + wiring.config.api.enroll_token_ttl + 1
    return path


def _enrolled(client, wiring):
    path = boot(client)
    enroll(wiring, {"token": token_of(path), "mac": MAC, "facts": FACTS}, NOW)
    return path


def _other_machines_token(client, wiring):
    add(wiring, mac=OTHER, hostname="hv2")
    theirs = token_of(answer_url(client.get(f"/boot/{OTHER}.ipxe", environ_base={"REMOTE_ADDR": ADDRESS[OTHER]}).text))
    boot(client)
    return f"/profiles/{MAC}/answer.sh?token={theirs}"


def _retired(client, wiring):
    path = boot(client)
    retire(wiring.machines, MAC, NOW)
    return path


def _reinstalled(client, wiring):
    path = boot(client)
    reinstall(wiring.machines, MAC, NOW)
    return path


ANSWER_REFUSALS = [
    ("no-token", lambda c, w: boot(c).split("?")[0], 403, "token: missing"),
    ("malformed", lambda c, w: boot(c).split("?")[0] + "?token=abc", 403, "token: malformed"),
    ("unknown-token", lambda c, w: boot(c).split("?")[0] + "?token=" + "x" * 43, 403, "not issued to machine"),
    ("other-machines-token", _other_machines_token, 403, "not issued to machine 52:54:00:12:34:56"),
    (
        "token-for-unknown-mac",
        lambda c, w: boot(c).replace("52-54-00-12-34-56", "52-54-00-99-99-99"),
        403,
        "not issued to machine 52:54:00:99:99:99",
    ),
    ("expired", _expire, 403, "expired at"),
    ("replayed-after-enroll", _enrolled, 409, "already used"),
    ("retired-meanwhile", _retired, 403, "superseded"),  # retire forgets the tokens
    ("reinstall-requested", _reinstalled, 403, "superseded"),
    ("unknown-file", lambda c, w: boot(c).replace("answer.sh", "preseed.cfg"), 404, "serves answer.sh"),
]


@pytest.mark.parametrize(
    ("make_path", "status", "words"), [r[1:] for r in ANSWER_REFUSALS], ids=[r[0] for r in ANSWER_REFUSALS]
)
def test_answer_refusals(client, wiring, make_path, status, words):
    add(wiring)
    path = make_path(client, wiring)
    before = wiring.machines.list()
    resp = client.get(path)
    assert resp.status_code == status and words in resp.text, resp.text
    assert wiring.machines.list() == before  # a refused fetch changes nothing


def test_debian_answer_and_its_setup_script_share_the_token(client, wiring):
    add(wiring, profile="debian12-xen-hypervisor")
    script = client.get(f"/boot/{MAC}.ipxe").text
    assert f"kernel {BASE}/files/installers/debian12/amd64/linux initrd=initrd " in script
    path = answer_url(script).removeprefix(BASE)
    assert path.startswith("/profiles/52-54-00-12-34-56/preseed.cfg?token=")
    preseed = client.get(path).text
    setup_url = re.search(r"wget -q -O /target/root/bootsrv-setup.sh '([^']+)'", preseed)[1]
    assert token_of(setup_url) == token_of(path)
    setup = client.get(setup_url.removeprefix(BASE))
    assert setup.status_code == 200 and f"TOKEN={token_of(path)}" in setup.text
    assert "HYPERVISOR=xen" in setup.text and "LIBVIRT_URI=xen+ssh://root@hv1.lab.example/system" in setup.text


def test_machine_with_a_profile_not_in_the_catalog_changes_nothing(client, wiring, caplog):
    add(wiring, profile="gone-profile")
    before = wiring.machines.list()
    with caplog.at_level(logging.ERROR, logger="bootsrv.http"):
        resp = client.get(f"/boot/{MAC}.ipxe")
    # The server's own state: the client learns the kind of failure, the log the details.
    assert resp.status_code == 500 and resp.json["error"] == "UnknownProfile" and "gone-profile" not in resp.text
    (line,) = [r for r in caplog.records if r.getMessage() == "http.failed"]
    assert "has profile 'gone-profile', which is not in the catalog" in line.bootsrv_fields["reason"]
    assert wiring.machines.list() == before  # no token issued, still new


def test_head_probe_issues_nothing(client, wiring):
    add(wiring)
    before = wiring.machines.list()
    assert client.head(f"/boot/{MAC}.ipxe").status_code == 200
    assert wiring.machines.list() == before
