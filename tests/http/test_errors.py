"""One JSON error shape for every route (bootsrv.http.errors): the boot chain, the API, werkzeug's
404 and 405, and a bug (500 without detail, its traceback in the log)."""

from __future__ import annotations

import io
import logging

import pytest
from boot_builders import make_wiring

from bootsrv.http.app import create_app
from bootsrv.http.errors import INTERNAL, INTERNAL_REASON, SERVER_STATE_REASON
from bootsrv.machines.store import FileRegistry

MAC = "52:54:00:12:34:56"

CASES = [
    # (method, path, status, error, field, words in the reason)
    ("get", "/nothing/here", 404, "NotFound", "path", "nothing is served at /nothing/here"),
    ("get", "/api", 404, "NotFound", "path", "nothing is served at /api"),
    (
        "post",
        "/healthz",
        405,
        "MethodNotAllowed",
        "method",
        "POST is not allowed on /healthz (allowed: GET, HEAD, OPTIONS)",
    ),
    ("delete", f"/boot/{MAC}.ipxe", 405, "MethodNotAllowed", "method", "allowed: GET, HEAD, OPTIONS"),
    ("get", "/boot/zz.ipxe", 400, "InvalidInput", "mac", "'zz' is not a MAC address"),
    ("get", f"/boot/{MAC}.cfg", 404, "NotFound", None, "/boot/ serves <mac>.ipxe"),
    ("get", f"/profiles/{MAC}/answer.sh", 403, "TokenRejected", "token", "missing"),
    ("get", "/files/../etc/passwd", 400, "InvalidInput", "path", "must be a plain relative path"),
    ("get", "/files/no/such/file", 404, "NotFound", None, "no file 'no/such/file'"),
    ("get", "/api/machines", 403, "Forbidden", None, "api.admin_token"),
    ("post", "/api/enroll", 400, "InvalidInput", "body", "not valid JSON"),
]


@pytest.mark.parametrize(
    "method, path, status, error, field, words", CASES, ids=[f"{c[2]}-{c[0]}-{c[1]}" for c in CASES]
)
def test_every_error_has_the_one_shape(client, method, path, status, error, field, words):
    resp = getattr(client, method)(path, data=b"{not json" if method == "post" else None)
    assert resp.status_code == status and resp.mimetype == "application/json", resp.text
    body = resp.json
    assert set(body) == {"error", "field", "reason"}
    assert (body["error"], body["field"]) == (error, field) and words in body["reason"], body


def test_405_says_which_methods_are_allowed(client):
    resp = client.post("/healthz")
    assert sorted(resp.headers["Allow"].split(", ")) == ["GET", "HEAD", "OPTIONS"]


def test_401_keeps_its_challenge(tmp_path):
    wiring = make_wiring(tmp_path, '[api]\nadmin_token = "' + "a" * 32 + '"')
    resp = create_app(wiring).test_client().get("/api/machines")
    assert resp.status_code == 401 and resp.json["error"] == "Unauthorized"
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="bootsrv-admin"'


class BrokenRegistry:
    """A MachineRegistry whose storage fails under it, as a bug or a broken disk would."""

    def get(self, mac):
        raise RuntimeError("/var/lib/bootsrv/store/machines.jsonl: something internal went wrong")

    list = put = remove = get


def test_a_bug_is_a_500_without_detail_and_its_traceback_is_logged(tmp_path, caplog):
    wiring = make_wiring(tmp_path)
    wiring.machines = BrokenRegistry()
    with caplog.at_level(logging.INFO, logger="bootsrv.http"):
        resp = create_app(wiring).test_client().get(f"/boot/{MAC}.ipxe")
    assert resp.status_code == 500 and resp.mimetype == "application/json"
    assert resp.json == {"error": INTERNAL, "field": None, "reason": INTERNAL_REASON}
    for secret in ("Traceback", "/var/lib", "RuntimeError", "something internal", ".py"):
        assert secret not in resp.text
    (line,) = [r for r in caplog.records if r.getMessage() == "http.failed"]
    assert line.exc_info[0] is RuntimeError and line.bootsrv_fields["path"] == f"/boot/{MAC}.ipxe"


# ---------------------------------------------------------------------------------------------
# Bodies a client can make absurd: too deep to parse, too big to read (bootsrv.http.body)

TOKEN = "T" * 43
BODIES = [
    # (id, body, status, error, words in the reason); None: parsed, so refused for something else
    # than the body (enrollment's own rules, which are not this test's)
    ("arrays 1,000 deep", b"[" * 1000 + b"]" * 1000, 400, "InvalidInput", "more than 32 deep"),
    ("arrays 30,000 deep", b"[" * 30000 + b"]" * 30000, 400, "InvalidInput", "more than 32 deep"),
    ("objects 10,000 deep", b'{"a":' * 10000 + b"1" + b"}" * 10000, 400, "InvalidInput", "more than 32 deep"),
    ("unbalanced, 60,000 open", b"[" * 60000, 400, "InvalidInput", "more than 32 deep"),
    ("33 deep", b'{"token":' + b"[" * 32 + b"]" * 32 + b"}", 400, "InvalidInput", "more than 32 deep"),
    ("32 deep: parsed", b'{"token":' + b"[" * 31 + b"]" * 31 + b"}", None, None, None),
    ("brackets inside a string are text", b'{"token": "' + b"[{" * 2000 + b'\\"[[[", "mac": "x"}', None, None, None),
    ("100,000 deep: too large first", b"[" * 100000 + b"]" * 100000, 413, "RequestEntityTooLarge", "larger than 65536"),
    ("70 kB of spaces", b"{" + b" " * 70000 + b"}", 413, "RequestEntityTooLarge", "body: larger than 65536 bytes"),
]


@pytest.mark.parametrize("body, status, error, words", [b[1:] for b in BODIES], ids=[b[0] for b in BODIES])
def test_absurd_bodies_are_refused_naming_the_body(client, wiring, body, status, error, words):
    resp = client.post("/api/enroll", data=body, content_type="application/json")
    assert resp.mimetype == "application/json", resp.text
    if status is None:
        assert 400 <= resp.status_code < 500 and resp.json["field"] != "body", resp.json
    else:
        assert resp.status_code == status and resp.json["error"] == error, resp.json
        assert resp.json["field"] == "body" and words in resp.json["reason"], resp.json
    assert wiring.machines.list() == []


def test_a_chunked_body_is_bounded_while_it_is_read(client):
    """No Content-Length (chunked, as waitress marks with wsgi.input_terminated): Werkzeug stops
    reading at MAX_CONTENT_LENGTH and answers 413, not after buffering whatever is sent."""
    resp = client.post(
        "/api/enroll",
        input_stream=io.BytesIO(b"[" * 200_000),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert resp.status_code == 413 and resp.json["field"] == "body", resp.text


# ---------------------------------------------------------------------------------------------
# The server's own state, damaged: a 5xx that names no server file


def test_a_damaged_registry_is_a_500_without_its_path(tmp_path, caplog):
    wiring = make_wiring(tmp_path, '[api]\nadmin_token = "' + "a" * 32 + '"')
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    (store / "machines.jsonl").write_text("# bootsrv machines v1\n{not json\n")
    wiring.machines = FileRegistry(store)
    client = create_app(wiring).test_client()
    with caplog.at_level(logging.INFO, logger="bootsrv.http"):
        answers = [
            client.get(f"/boot/{MAC}.ipxe"),
            client.get("/api/machines", headers={"Authorization": "Bearer " + "a" * 32}),
        ]
    for resp in answers:
        assert resp.status_code == 500 and resp.mimetype == "application/json", resp.text
        assert resp.json == {"error": "RegistryCorrupt", "field": None, "reason": SERVER_STATE_REASON}
        for detail in (str(tmp_path), "machines.jsonl", ":2:", "not JSON", "Traceback"):
            assert detail not in resp.text
    # The operator finds the file and line in the log.
    lines = [r for r in caplog.records if r.getMessage() == "http.failed"]
    assert len(lines) == 2 and all(f"{store}/machines.jsonl:2: not JSON" in r.bootsrv_fields["reason"] for r in lines)
