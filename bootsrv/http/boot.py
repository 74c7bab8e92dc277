"""The HTTP half of the boot chain: per-machine iPXE scripts, installer answers, and static files.

    GET /boot/<mac>.ipxe          the machine's iPXE script: install (kernel, initrd, command line
                                  with the answer URL and its one-time token) or local boot
    GET /profiles/<mac>/<file>?token=T   the rendered answer (preseed, kickstart, ...)
    GET /tftp/<path>              the TFTP root, for UEFI HTTP boot (same rules as /files/)
    GET /files/<path>             kernels, initrds, install trees under boot.files_root, with
                                  Range (206/416) and conditional GET (ETag/Last-Modified, 304)

Netboot once: the script is install only while the machine is due for install
(bootsrv.machines.planner.RegistryPlanner, which also issues the token); enrolled, retired and
discovered machines get local boot. An unknown MAC gets local boot, after being recorded as
discovered when `boot.unknown_machines = "discover"` (with `boot.auto_profile` it is then due for
install and gets the install script at once).

The token is the answer's credential (bootsrv.machines.plan.check_answer_token): the boot script
is the only place it is given out, the answer needs it, and it dies when the machine enrolls.
Both go only to the request's source address if bootsrv leased or bound it to that machine
(bootsrv.machines.binding): anyone else gets a 403 naming `address`, no token, and nothing
changes. Every fetch during one install gets the same token (bootsrv.machines.enrollment). The
trust model, and what remains (a client that takes over the machine's MAC and address), is in
docs/security.md.

MACs may be spelt any usual way (colons, dashes, dots, bare); a malformed one is a 400 naming
the field. Errors are the JSON of every route (bootsrv.http.errors, which says why not text: iPXE
and the installers never show the body of a failed fetch).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Blueprint, Response, current_app, request, send_file

from bootsrv.errors import InvalidInput, NotFound
from bootsrv.http.site import Site
from bootsrv.log import event
from bootsrv.machines.plan import boot_decision, check_answer_client, check_answer_token
from bootsrv.values import normalize_mac

log = logging.getLogger("bootsrv.http.boot")

bp = Blueprint("boot", __name__)

TEXT = "text/plain; charset=utf-8"


def _site() -> Site:
    return current_app.extensions["bootsrv"]


def _private(body: str) -> Response:
    # Scripts and answers carry tokens and change with the machine's state: never cached.
    return Response(body, content_type=TEXT, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------------------------------------
# The per-machine iPXE script


@bp.get("/boot/<name>")
def boot_script(name: str):
    if not name.endswith(".ipxe"):
        raise NotFound(f"path: /boot/ serves <mac>.ipxe, not {name!r}")
    mac = normalize_mac(name[: -len(".ipxe")])
    if request.method == "HEAD":
        # A probe (curl -I, a health check) must not issue a token or move the machine.
        return _private("")
    site = _site()
    plan, reason = boot_decision(site, site.planner, mac, request.remote_addr)
    script = site.plans.boot_script("ipxe", plan, mac, reason)
    if plan is None:
        event(log, "boot.script", mac=mac, action="local", reason=reason)
    else:
        event(log, "boot.script", mac=mac, action="install", profile=plan.profile.name)
    return _private(script)


# ---------------------------------------------------------------------------------------------
# Installer answers


@bp.get("/profiles/<mac>/<name>")
def answer_file(mac: str, name: str):
    mac = normalize_mac(mac)
    site = _site()
    machine = site.machines.get(mac)
    check_answer_token(machine, mac, request.args.get("token"), site.clock())
    check_answer_client(site, machine, request.remote_addr)
    plan = site.plans.build(machine, request.args["token"])
    body = site.plans.answer(plan, name)
    event(log, "boot.answer", mac=mac, profile=plan.profile.name, file=name)
    return _private(body)


# ---------------------------------------------------------------------------------------------
# Static files


def resolve(root: Path, subpath: str) -> Path:
    """`subpath` inside `root`, or the refusal: '..', absolute paths, backslashes and NULs are
    bad input (400); a symlink resolving outside the root, a directory or a missing file is
    simply not there (404)."""
    if "\0" in subpath or "\\" in subpath:
        raise InvalidInput("path", "must not contain NUL or backslash")
    parts = subpath.split("/")
    if subpath.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidInput("path", f"{subpath!r} must be a plain relative path (no '.', '..' or empty parts)")
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, *parts))
    if not real.startswith(real_root + os.sep) or not os.path.isfile(real):
        raise NotFound(f"path: no file {subpath!r} under the files root")
    return Path(real)


@bp.get("/files/<path:subpath>")
def static_file(subpath: str):
    path = resolve(_site().config.boot.files_root, subpath)
    # conditional=True: Werkzeug answers Range (206, 416) and If-None-Match/If-Modified-Since
    # (304) itself, streaming the file from disk.
    return send_file(path, conditional=True, etag=True)


@bp.get("/tftp/<path:subpath>")
def tftp_file(subpath: str):
    """The TFTP root over HTTP, read-only: UEFI HTTP boot (arch 16) is handed
    `{http_base_url}/tftp/<boot file>` by DHCP (bootsrv.dhcp.pxe), the same iPXE binary PXE
    clients fetch by TFTP."""
    path = resolve(_site().config.boot.tftp_root, subpath)
    return send_file(path, conditional=True, etag=True)
