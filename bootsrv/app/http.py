"""Runs the Flask app under waitress (a production WSGI server) in a thread of `bootsrv serve`."""

from __future__ import annotations

import logging
import threading

from waitress.server import create_server

from bootsrv.app.wiring import Wiring
from bootsrv.http.app import create_app
from bootsrv.log import event

log = logging.getLogger("bootsrv.http")


class HttpService:
    name = "http"

    def __init__(self, wiring: Wiring):
        self.wiring = wiring
        self.config = wiring.config
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.effective_port) if self._server else self.config.http.port

    def start(self) -> None:
        app = create_app(self.wiring)
        # threads: waitress' worker pool; kernels and install trees are streamed, so a few
        # slow clients do not starve the others. max_request_body_size: waitress reads a whole
        # body before the app sees it (1 GiB by default, spooled to disk); the app takes 64 KiB
        # (bootsrv.http.body, a JSON 413 beyond), so anything past 1 MiB is refused at the door.
        self._server = create_server(
            app,
            host=str(self.config.http.address),
            port=self.config.http.port,
            threads=16,
            ident="bootsrv",
            max_request_body_size=1 << 20,
        )
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._thread.start()
        event(log, "listening", service="http", address=str(self.config.http.address), port=self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.task_dispatcher.shutdown()
            self._server.close()
            if self._thread:
                self._thread.join(timeout=5)


def http_services(wiring: Wiring) -> list[HttpService]:
    return [HttpService(wiring)] if wiring.config.http.enabled else []
