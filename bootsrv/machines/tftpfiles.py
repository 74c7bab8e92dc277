"""Per-machine boot configs rendered on request for the TFTP server.

`dynamic_files(wiring)` returns `fetch(path, client) -> bytes | None`: the rendered file for a
path that names a machine, None for any other path (the TFTP server then serves the file from
its root, or "file not found"). `client` is the peer's address: the install config goes only
to an address bootsrv leased or bound to the machine (bootsrv.machines.binding), and the log names it.

    pxelinux.cfg/01-<mac>            pxelinux (syslinux: "01" is the ARP type of Ethernet, then
                                     the MAC in lowercase hex with dashes)
    [<dir>/]grub.cfg-01-<mac>        GRUB's network boot searches $prefix/grub.cfg-01-<mac> first
                                     (grub_net_search_config_file, GRUB >= 2.04)
    [<dir>/]<mac>.ipxe               iPXE script, as at HTTP /boot/<mac>.ipxe
    grub/grub.cfg                    the same for every machine: Debian's signed network GRUB
                                     (prefix /grub) sources it; it chains to grub.cfg-01-<mac>

Each is the install config while the machine is due for install (its token issued by the
netboot-once planner, exactly as over HTTP), else local boot; an unknown MAC gets local boot
(see bootsrv.machines.plan.boot_decision). A render failure is logged and answered with None
rather than a half-written config.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from bootsrv.errors import BootsrvError
from bootsrv.log import event
from bootsrv.machines.plan import boot_decision

log = logging.getLogger("bootsrv.tftp.dynamic")

_HEX = r"[0-9a-f]{2}"
_DASHED = rf"{_HEX}(?:-{_HEX}){{5}}"
_PATTERNS = [
    (re.compile(rf"^(?:.*/)?pxelinux\.cfg/01-(?P<mac>{_DASHED})$"), "pxelinux"),
    (re.compile(rf"^(?:.*/)?grub\.cfg-01-(?P<mac>{_DASHED})$"), "grub"),
    (re.compile(rf"^(?:.*/)?(?P<mac>{_HEX}(?:[:-]?{_HEX}){{5}})\.ipxe$"), "ipxe"),
]


CHAIN = "grub/grub.cfg"


def match(path: str) -> tuple[str, str] | None:
    """(format, mac as sent) for a path that names a machine's boot config; None otherwise."""
    text = path.replace("\\", "/").lstrip("/").lower()
    if text == CHAIN:
        return "chain", ""
    for pattern, fmt in _PATTERNS:
        found = pattern.match(text)
        if found:
            return fmt, found["mac"]
    return None


def dynamic_files(wiring) -> Callable[[str, str], bytes | None]:
    # wiring.plans and wiring.planner are built on the first machine request, so a TFTP server
    # that only serves static boot files never loads the profile catalog.
    def fetch(path: str, client: str) -> bytes | None:
        found = match(path)
        if found is None:
            return None
        fmt, mac = found
        if fmt == "chain":
            try:
                return wiring.plans.renderer.render("(grub chain)", "boot/chain.grub.j2", {}).encode()
            except BootsrvError as exc:
                event(log, "tftp.render_failed", logging.ERROR, path=path, client=client, error=str(exc))
                return None
        try:
            plan, reason = boot_decision(wiring, wiring.planner, mac, client)
            text = wiring.plans.boot_script(fmt, plan, mac, reason)
        except BootsrvError as exc:
            if exc.http_status < 500:  # the asker's fault, e.g. a stranger asking for an install
                event(log, "tftp.refused", path=path, client=client, reason=str(exc))
            else:
                event(log, "tftp.render_failed", logging.ERROR, path=path, client=client, error=str(exc))
            return None
        event(
            log,
            "tftp.rendered",
            path=path,
            client=client,
            mac=plan.machine.mac if plan else mac,
            action="install" if plan else "local",
        )
        return text.encode()

    return fetch
