"""One JSON error shape for every route (bootsrv.http.errors): the boot chain, the API, werkzeug's
404 and 405, and a bug (500 without detail, its traceback in the log)."""

from __future__ import annotations

import logging

import pytest
from boot_builders import make_wiring

from bootsrv.http.app import create_app
from bootsrv.http.errors import INTERNAL, INTERNAL_REASON

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
