"""`bootsrv serve`'s TFTP service: TftpServer over config.boot.tftp_root on config.tftp.

Per-machine files (pxelinux.cfg/01-<mac>, grub.cfg-<mac>, ...) come from `wiring.tftp_dynamic`
when the wiring has one: a callable (path, client_ip) -> bytes | None, asked before the disk.
"""

from __future__ import annotations

import logging
import os

from bootsrv.app.wiring import Wiring
from bootsrv.errors import ConfigError
from bootsrv.log import event
from bootsrv.tftp.server import Dynamic, TftpServer

log = logging.getLogger("bootsrv.tftp")

# Request/dynamic-file threads, and pump processes for disk transfers (bootsrv/tftp/pump.py);
# four pumps were the fastest measured (docs/tftp.md tells how serve came to 2 and 4).
WORKERS, PUMPS = 2, 4


class TftpService:
    name = "tftp"

    def __init__(self, wiring: Wiring, dynamic: Dynamic | None = None):
        self.config = wiring.config
        self.dynamic = dynamic
        self.server: TftpServer | None = None

    @property
    def port(self) -> int:
        return self.server.port if self.server else self.config.tftp.port

    def start(self) -> None:
        root = self.config.boot.tftp_root
        try:
            # Our own state directory, like the lease store's: created empty (serving nothing until
            # `bootsrv tftp populate`) so the embedded default starts on a fresh machine.
            os.makedirs(root, exist_ok=True)
        except OSError as exc:
            raise ConfigError("config", "boot.tftp_root", f"cannot create {root}: {exc.strerror or exc}") from None
        if not os.path.isdir(root):
            raise ConfigError("config", "boot.tftp_root", f"{root} is not a directory")
        addr, port = str(self.config.tftp.address), self.config.tftp.port
        server = TftpServer(str(root), addr, port, dynamic=self.dynamic, workers=WORKERS, processes=PUMPS)
        try:
            server.bind()
        except OSError as exc:
            raise ConfigError("config", "tftp.port", f"cannot bind UDP {addr}:{port}: {exc.strerror or exc}") from None
        server.start()
        self.server = server
        event(log, "listening", service="tftp", address=addr, port=server.port, root=server.root)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def tftp_services(wiring: Wiring) -> list[TftpService]:
    if not wiring.config.tftp.enabled:
        return []
    # The profiles area provides the per-machine files; a process without it serves the disk only.
    return [TftpService(wiring, dynamic=getattr(wiring, "tftp_dynamic", None))]
