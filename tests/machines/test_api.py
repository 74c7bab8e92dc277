"""/api over Flask's test client: enrollment refusals change nothing; admin calls need the token."""

from __future__ import annotations

import json

import pytest
from machines_builders import ADDRESSES, MAC, NOW, OTHER_MAC, STRANGER, facts, machine

from bootsrv.app.wiring import Wiring
from bootsrv.config import parse
from bootsrv.http.app import create_app
from bootsrv.machines.admin import discover
from bootsrv.machines.enrollment import start_install
from bootsrv.machines.model import State

ADMIN = "s3cret-admin-token-0123456789"
TOKEN = "T" * 43


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_wiring(tmp_path, admin_token: str | None = ADMIN) -> Wiring:
    api = f'[api]\nadmin_token = "{admin_token}"\n' if admin_token else ""
    # No profile catalog here (profile names are checked in test_cli against the real one).
    config = parse(
        f'[store]\ndirectory = "{tmp_path}/store"\n[profiles]\nprofiles_dir = "{tmp_path}/none"\n{api}', "test.toml"
    )
    return Wiring(config, clock=Clock(NOW))


@pytest.fixture
def wiring(tmp_path):
    w = make_wiring(tmp_path)
    # The machine's address as `machine add --address` declares it; its installer calls from there.
    w.machines.put(machine(addresses=(("public", ADDRESSES[MAC]),)), None)
    start_install(w.machines, MAC, NOW - 60, 3600, new_token=lambda: TOKEN)
    return w


@pytest.fixture
def client(wiring):
    client = create_app(wiring).test_client()
    client.environ_base["REMOTE_ADDR"] = ADDRESSES[MAC]
    return client


def auth(token: str = ADMIN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def enroll_body(**over) -> dict:
    # No profile catalog here, so bootsrv knows the machine by its hostname and address only.
    data = {"token": TOKEN, "mac": MAC, "facts": facts(hostname="hv1", libvirt_uri="qemu+ssh://hv1/system")}
    data.update(over)
    return data


def test_enroll_ok(client, wiring):
    resp = client.post("/api/enroll", json=enroll_body())
    assert resp.status_code == 200, resp.json
    assert resp.json == {"status": "enrolled", "mac": MAC, "hostname": "hv1", "boot": "local"}
    assert wiring.machines.get(MAC).state is State.ENROLLED


CASES = [
    ("forged", enroll_body(token="F" * 43), 403, "token", "unknown token"),
    ("wrong-mac", enroll_body(mac=OTHER_MAC, facts=facts(OTHER_MAC)), 403, "mac", "not issued to machine"),
    ("malformed-facts", enroll_body(facts=facts(cpus=-1)), 400, "facts.cpus", "outside"),
    ("missing-token", {"mac": MAC, "facts": facts()}, 400, "token", "required"),
    ("array-body", [1, 2], 400, "body", "JSON object"),
]


@pytest.mark.parametrize(("case", "payload", "status", "field", "words"), CASES, ids=[c[0] for c in CASES])
def test_enroll_refusals(client, wiring, case, payload, status, field, words):
    before = wiring.machines.list()
    resp = client.post("/api/enroll", json=payload)
    assert resp.status_code == status
    assert resp.json["field"] == field and words in resp.json["reason"], resp.json
    assert wiring.machines.list() == before


# Issue 16, enrollment hijack: the token is right (as if fetched by the hijacker), the facts are
# invented. (id, client address, facts, status, field named, words in the reason)
HIJACKS = [
    (
        "stranger-other-host-uri",
        STRANGER,
        facts(libvirt_uri="qemu+ssh://evil.example/system"),
        403,
        "address",
        "this request came from 192.0.2.66",
    ),
    ("other-machines-address", ADDRESSES[OTHER_MAC], facts(hostname="hv1"), 403, "address", "came from 192.0.2.11"),
    (
        "own-address-other-host-uri",
        ADDRESSES[MAC],
        facts(hostname="hv1", libvirt_uri="qemu+ssh://evil.example/system"),
        400,
        "facts.libvirt_uri",
        "host 'evil.example' is not this machine",
    ),
    (
        "own-address-local-uri",
        ADDRESSES[MAC],
        facts(hostname="hv1", libvirt_uri="qemu:///system"),
        400,
        "facts.libvirt_uri",
        "names no host",
    ),
    ("own-address-other-name", ADDRESSES[MAC], facts(hostname="hv2"), 400, "facts.hostname", "not this machine's"),
]


@pytest.mark.parametrize(
    ("case", "remote", "claimed", "status", "field", "words"), HIJACKS, ids=[c[0] for c in HIJACKS]
)
def test_enroll_hijack_refused(client, wiring, case, remote, claimed, status, field, words):
    before = wiring.machines.list()
    resp = client.post("/api/enroll", json=enroll_body(facts=claimed), environ_base={"REMOTE_ADDR": remote})
    assert resp.status_code == status, resp.json
    assert resp.json["field"] == field and words in resp.json["reason"], resp.json
    assert wiring.machines.list() == before
    # and the real installer still enrolls
    assert client.post("/api/enroll", json=enroll_body()).status_code == 200


def test_enroll_not_json(client, wiring):
    before = wiring.machines.list()
    resp = client.post("/api/enroll", data=b"token=abc", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 400 and resp.json["field"] == "body" and "not valid JSON" in resp.json["reason"]
    assert wiring.machines.list() == before


def test_enroll_too_large(client, wiring):
    before = wiring.machines.list()
    resp = client.post("/api/enroll", data=b"{" + b" " * 70000 + b"}", content_type="application/json")
    assert resp.status_code == 413 and resp.json["field"] == "body" and "larger than" in resp.json["reason"]
    assert wiring.machines.list() == before


def test_enroll_replayed(client, wiring):
    assert client.post("/api/enroll", json=enroll_body()).status_code == 200
    after_first = wiring.machines.list()
    resp = client.post("/api/enroll", json=enroll_body())
    assert resp.status_code == 409 and "already used" in resp.json["reason"]
    assert wiring.machines.list() == after_first


def test_enroll_expired(client, wiring):
    wiring.clock.now = NOW + 7200
    before = wiring.machines.list()
    resp = client.post("/api/enroll", json=enroll_body())
    assert resp.status_code == 403 and "expired at" in resp.json["reason"]
    assert wiring.machines.list() == before


def test_enroll_needs_no_admin_token_but_admin_calls_do(client):
    assert client.get("/api/machines").status_code == 401
    assert client.get("/api/machines").headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ({}, 401, "expected 'Bearer"),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, 401, "expected 'Bearer"),
        ({"Authorization": "Bearer "}, 401, "expected 'Bearer"),
        (auth("wrong-token-0123456789"), 403, "wrong admin token"),
        (auth(ADMIN + "x"), 403, "wrong admin token"),
        (auth(ADMIN[:-1]), 403, "wrong admin token"),
        ({"Authorization": f"bearer {ADMIN}"}, 200, ""),
    ],
    ids=["none", "basic", "empty", "wrong", "longer", "prefix", "lowercase-scheme"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/machines"),
        ("post", f"/api/machines/{MAC}/retire"),
        ("get", "/api/hypervisors"),
        ("post", "/api/hypervisors/hv1/drain"),
    ],
)
def test_admin_auth(client, wiring, headers, status, words, method, path):
    before = wiring.machines.list()
    resp = getattr(client, method)(path, headers=headers)
    if status == 200:
        assert resp.status_code < 500 and resp.status_code not in (401, 403)
        return
    assert resp.status_code == status and words in resp.json["reason"]
    assert wiring.machines.list() == before


def test_admin_api_disabled_without_configured_token(tmp_path):
    w = make_wiring(tmp_path, admin_token=None)
    resp = create_app(w).test_client().get("/api/machines", headers=auth())
    assert resp.status_code == 403 and "api.admin_token" in resp.json["reason"]


def test_admin_machine_lifecycle(client, wiring):
    resp = client.post(
        "/api/machines",
        headers=auth(),
        json={"mac": "52-54-00-AA-00-01", "hostname": "hv9", "profile": "debian12-kvm-hypervisor"},
    )
    assert resp.status_code == 201, resp.json
    assert resp.json["mac"] == "52:54:00:aa:00:01" and resp.json["state"] == "new"
    listed = client.get("/api/machines?state=new", headers=auth()).json["machines"]
    assert [m["mac"] for m in listed] == ["52:54:00:aa:00:01"]
    shown = client.get(f"/api/machines/{MAC}", headers=auth()).json
    assert shown["state"] == "installing"
    assert "digest" not in json.dumps(shown)  # token digests never leave the store
    assert client.post(f"/api/machines/{MAC}/retire", headers=auth()).json["state"] == "retired"
    assert client.post(f"/api/machines/{MAC}/reinstall", headers=auth()).json["state"] == "reinstall-requested"


@pytest.mark.parametrize(
    ("payload", "status", "field", "words"),
    [
        ({"mac": "zz", "hostname": "a", "profile": "p"}, 400, "mac", "not a MAC"),
        ({"mac": MAC, "hostname": "b", "profile": "p"}, 409, None, "already exists"),
        ({"mac": OTHER_MAC, "hostname": "hv1", "profile": "p"}, 409, None, "hostname: 'hv1' is already used"),
        ({"mac": OTHER_MAC, "hostname": "x", "profile": "p", "cpus": 1}, 400, "cpus", "unknown field"),
        ({"mac": OTHER_MAC, "profile": "p"}, 400, "hostname", "required"),
        ({"mac": OTHER_MAC, "hostname": 5, "profile": "p"}, 400, "hostname", "must be a string"),
        ({"mac": OTHER_MAC, "hostname": "x", "profile": "../etc"}, 400, "profile", "not a profile name"),
        (
            {"mac": OTHER_MAC, "hostname": "x", "profile": "p", "addresses": {"mars": "1.2.3.4"}},
            400,
            "address.mars",
            "unknown network",
        ),
        (
            {"mac": OTHER_MAC, "hostname": "x", "profile": "p", "addresses": ["1.2.3.4"]},
            400,
            "addresses",
            "must be an object",
        ),
    ],
    ids=[
        "bad-mac",
        "duplicate-mac",
        "duplicate-hostname",
        "unknown-field",
        "missing",
        "type",
        "profile",
        "unknown-network",
        "addresses-list",
    ],
)
def test_admin_add_refusals(client, wiring, payload, status, field, words):
    before = wiring.machines.list()
    resp = client.post("/api/machines", headers=auth(), json=payload)
    assert resp.status_code == status, resp.json
    assert words in resp.json["reason"]
    if field:
        assert resp.json["field"] == field
    assert wiring.machines.list() == before


def test_admin_adopt_discovered(client, wiring):
    discover(wiring.machines, OTHER_MAC, 7, None, "PXEClient:Arch:00007:UNDI:003016", NOW)
    resp = client.post(
        f"/api/machines/{OTHER_MAC}/adopt", headers=auth(), json={"hostname": "hv2", "profile": "alma9-kvm-hypervisor"}
    )
    assert resp.status_code == 200, resp.json
    assert resp.json["state"] == "new" and resp.json["arch"] == "efi-x64"


def test_admin_not_found_and_bad_mac(client):
    assert client.get("/api/machines/52:54:00:99:99:99", headers=auth()).status_code == 404
    resp = client.get("/api/machines/nonsense", headers=auth())
    assert resp.status_code == 400 and resp.json["field"] == "mac"
    assert client.get("/api/machines?state=bogus", headers=auth()).status_code == 400


def test_hypervisors(client, wiring):
    assert client.post("/api/enroll", json=enroll_body()).status_code == 200
    pool = client.get("/api/hypervisors", headers=auth()).json
    assert [h["name"] for h in pool["hypervisors"]] == ["hv1"]
    assert pool["totals"]["cpus"] == 16 and pool["totals"]["memory_mib"] == 65536
    one = client.get("/api/hypervisors/hv1", headers=auth()).json
    assert one["libvirt_uri"] == "qemu+ssh://hv1/system" and one["state"] == "active"
    assert client.post("/api/hypervisors/hv1/drain", headers=auth()).json["state"] == "drained"
    assert client.get("/api/hypervisors", headers=auth()).json["hypervisors"] == []
    assert len(client.get("/api/hypervisors?all=1", headers=auth()).json["hypervisors"]) == 1
    assert client.post("/api/hypervisors/hv1/undrain", headers=auth()).json["state"] == "active"
    resp = client.post("/api/hypervisors/hv1/explode", headers=auth())
    assert resp.status_code == 400 and resp.json["field"] == "action"
    assert client.post("/api/hypervisors/hv1/retire", headers=auth()).json["state"] == "retired"
    assert client.get("/api/hypervisors", headers=auth()).json["hypervisors"] == []
    resp = client.get("/api/hypervisors/hv1", headers=auth())
    assert resp.status_code == 404 and "'retired', not an enrolled hypervisor" in resp.json["reason"]
