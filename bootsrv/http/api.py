"""`/api`: the installer's enrollment callback and the admin API over machines and hypervisors.

    POST /api/enroll                          installer callback (the one-time token is the credential,
                                              from the machine's own address)
    GET  /api/machines[?state=S]              admin: list machines
    POST /api/machines                        admin: add {mac, hostname, profile, addresses?, guid?, serial?,
                                              segment?, comment?}
    GET  /api/machines/<mac>                  admin: one machine
    POST /api/machines/<mac>/adopt            admin: adopt a discovered machine {hostname, profile, addresses?, ...}
    POST /api/machines/<mac>/reinstall        admin
    POST /api/machines/<mac>/retire           admin
    GET  /api/hypervisors[?all=1]             admin: the pool (drained ones only with all=1)
    GET  /api/hypervisors/<name-or-mac>       admin
    POST /api/hypervisors/<name-or-mac>/drain | undrain | retire    admin

Admin calls need `Authorization: Bearer <api.admin_token>`; without an admin token in the config
the admin API is off (403). Every refusal is JSON `{"error", "field", "reason"}` with a 4xx status
(bootsrv.http.errors, as on every route) and changes nothing.
"""

from __future__ import annotations

import functools
import hmac

from flask import Blueprint, current_app, jsonify, request

from bootsrv.errors import BootsrvError, Forbidden, InvalidInput
from bootsrv.http.body import json_object
from bootsrv.http.site import Site
from bootsrv.machines import admin as machines_admin
from bootsrv.machines import enrollment as enrollmod
from bootsrv.machines import pool as machines_pool
from bootsrv.machines.model import State, require, to_record
from bootsrv.machines.plan import identity
from bootsrv.values import normalize_mac

bp = Blueprint("api", __name__, url_prefix="/api")


class Unauthorized(BootsrvError):
    exit_code = 5
    http_status = 401
    http_headers = (("WWW-Authenticate", 'Bearer realm="bootsrv-admin"'),)  # RFC 6750 3


def _site() -> Site:
    return current_app.extensions["bootsrv"]


def _json_body(optional: bool = False) -> dict:
    # Flask's MAX_CONTENT_LENGTH (bootsrv.http.app) makes reading more than MAX_BODY a 413, for a
    # declared Content-Length and a chunked body alike; bootsrv.http.body bounds the nesting.
    return json_object(request.get_data(cache=True), optional)


def _machine_json(machine) -> dict:
    return to_record(machine, secrets=False)


# ---------------------------------------------------------------------------------------------
# The installer's callback


@bp.post("/enroll")
def enroll():
    w = _site()
    # The token, the caller's address and the facts are checked against what bootsrv knows of
    # the machine (bootsrv.machines.enrollment.check, docs/security.md).
    machine = enrollmod.enroll(
        w.machines, _json_body(), w.clock(), client=request.remote_addr, identify=lambda m: identity(w, m)
    )
    current_app.logger.info("enrolled %s %s", machine.mac, machine.hostname)
    return jsonify(status="enrolled", mac=machine.mac, hostname=machine.hostname, boot="local")


# ---------------------------------------------------------------------------------------------
# Admin


def admin(view):
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        expected = _site().config.api.admin_token
        if expected is None:
            raise Forbidden("admin API is disabled: set api.admin_token in the config")
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Unauthorized("Authorization: expected 'Bearer <admin token>'")
        if not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise Forbidden("Authorization: wrong admin token")
        return view(*args, **kwargs)

    return guarded


def _strings(data: dict, allowed: set[str], required: set[str]) -> dict:
    for key in data:
        if key not in allowed:
            raise InvalidInput(key, "unknown field")
    for key in sorted(required):
        if key not in data:
            raise InvalidInput(key, "required field is missing")
    for key, value in data.items():
        if key == "addresses":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise InvalidInput("addresses", 'must be an object {"network": "IPv4"}')
        elif value is not None and not isinstance(value, str):
            raise InvalidInput(key, f"must be a string, got {type(value).__name__}")
    return data


def _profiles(w: Site):
    return w.known_profiles()


@bp.get("/machines")
@admin
def machines_list():
    state = request.args.get("state")
    if state is not None and state not in {s.value for s in State}:
        raise InvalidInput("state", f"{state!r} is not one of {', '.join(s.value for s in State)}")
    machines = [m for m in _site().machines.list() if state is None or m.state.value == state]
    return jsonify(machines=[_machine_json(m) for m in machines])


@bp.post("/machines")
@admin
def machines_add():
    w = _site()
    data = _strings(
        _json_body(),
        {"mac", "hostname", "profile", "addresses", "guid", "serial", "segment", "comment"},
        {"mac", "hostname", "profile"},
    )
    machine = machines_admin.add(
        w.machines, w.address_book, w.config.networks, now=w.clock(), profiles=_profiles(w), **data
    )
    return jsonify(_machine_json(machine)), 201


@bp.get("/machines/<mac>")
@admin
def machines_show(mac: str):
    return jsonify(_machine_json(require(_site().machines, normalize_mac(mac))))


@bp.post("/machines/<mac>/adopt")
@admin
def machines_adopt(mac: str):
    w = _site()
    data = _strings(_json_body(), {"hostname", "profile", "addresses", "segment", "comment"}, {"hostname", "profile"})
    machine = machines_admin.adopt(
        w.machines,
        w.address_book,
        w.config.networks,
        mac=mac,
        now=w.clock(),
        profiles=_profiles(w),
        **data,
    )
    return jsonify(_machine_json(machine))


@bp.post("/machines/<mac>/reinstall")
@admin
def machines_reinstall(mac: str):
    w = _site()
    return jsonify(_machine_json(machines_admin.reinstall(w.machines, mac, w.clock())))


@bp.post("/machines/<mac>/retire")
@admin
def machines_retire(mac: str):
    w = _site()
    return jsonify(_machine_json(machines_admin.retire(w.machines, mac, w.clock())))


@bp.get("/hypervisors")
@admin
def hypervisors_list():
    flag = request.args.get("all", "0")
    if flag not in ("0", "1"):
        raise InvalidInput("all", f"{flag!r} must be 0 or 1")
    hosts = machines_pool.pool(_site().machines, include_drained=flag == "1")
    return jsonify(hypervisors=[h.to_dict() for h in hosts], totals=machines_pool.totals(hosts))


@bp.get("/hypervisors/<key>")
@admin
def hypervisors_show(key: str):
    return jsonify(machines_pool.hypervisor(_site().machines, key).to_dict())


@bp.post("/hypervisors/<key>/<action>")
@admin
def hypervisors_action(key: str, action: str):
    w = _site()
    if action in ("drain", "undrain"):
        return jsonify(machines_pool.drain(w.machines, key, w.clock(), drained=action == "drain").to_dict())
    if action == "retire":
        machine = machines_pool.hypervisor(w.machines, key)  # refuses a machine that is not a hypervisor
        return jsonify(_machine_json(machines_admin.retire(w.machines, machine.mac, w.clock())))
    raise InvalidInput("action", f"{action!r} is not one of drain, undrain, retire")
