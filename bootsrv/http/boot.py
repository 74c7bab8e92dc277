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
from zlib import adler32

from flask import Blueprint, Response, current_app, request, send_file

from bootsrv.errors import Forbidden, InvalidInput, NotFound
from bootsrv.http.site import Site
from bootsrv.log import event
from bootsrv.machines.plan import boot_decision, check_answer_client, check_answer_token
from bootsrv.servable import FORBIDDEN, Opened, Refused, open_servable
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


class NotServed(Forbidden):
    """A file that is there but not for the wire (bootsrv.servable's rule): 403 naming the path."""

    field = "path"


def resolve(root: Path, subpath: str) -> Opened:
    """`subpath` inside `root`, opened, or the refusal: '..', absolute paths, backslashes and
    NULs are bad input (400); a missing file or a directory is simply not there (404); a file
    that bootsrv.servable's rule keeps off the wire is refused with that rule (403): a symlink
    leading out of the root, a file that is not world-readable, a hard link whose other names
    may lie outside the root. The rule is TFTP's too (bootsrv.tftp.paths), so /tftp/ serves
    exactly what TFTP serves; and what is sent is the descriptor that was checked."""
    if "\0" in subpath or "\\" in subpath:
        raise InvalidInput("path", "must not contain NUL or backslash")
    parts = subpath.split("/")
    if subpath.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidInput("path", f"{subpath!r} must be a plain relative path (no '.', '..' or empty parts)")
    opened = open_servable(os.path.realpath(root), "/".join(parts))
    if isinstance(opened, Refused):
        if opened.kind == FORBIDDEN:
            raise NotServed(f"path: {subpath!r} is not served: {opened.reason}")
        raise NotFound(f"path: no file {subpath!r} under the files root")
    return opened


def send_opened(opened: Opened) -> Response:
    """The opened file as the answer, with Range (206, 416) and conditional GET (304, ETag and
    Last-Modified) answered by Werkzeug. send_file computes size and validators only for a path,
    which it would open again by name; here they come from the descriptor's own fstat, and the
    ETag is the one send_file makes for a path (mtime-size-adler32(path)), so caches keep theirs."""
    st = opened.stat
    response = send_file(
        os.fdopen(opened.fd, "rb"),
        download_name=os.path.basename(opened.path),
        conditional=False,
        etag=f"{st.st_mtime}-{st.st_size}-{adler32(opened.path.encode()) & 0xFFFFFFFF}",
        last_modified=st.st_mtime,
    )
    response.content_length = st.st_size
    return response.make_conditional(request.environ, accept_ranges=True, complete_length=st.st_size)


@bp.get("/files/<path:subpath>")
def static_file(subpath: str):
    return send_opened(resolve(_site().config.boot.files_root, subpath))


@bp.get("/tftp/<path:subpath>")
def tftp_file(subpath: str):
    """The TFTP root over HTTP, read-only: UEFI HTTP boot (arch 16) is handed
    `{http_base_url}/tftp/<boot file>` by DHCP (bootsrv.dhcp.pxe), the same iPXE binary PXE
    clients fetch by TFTP."""
    return send_opened(resolve(_site().config.boot.tftp_root, subpath))
