"""Flask app factory. Blueprints register here; only bootsrv.http imports Flask."""

from __future__ import annotations

from flask import Flask, jsonify

from bootsrv import __version__
from bootsrv.errors import BootsrvError
from bootsrv.wiring import Wiring


def create_app(wiring: Wiring) -> Flask:
    """The WSGI app. Blueprints get their collaborators from `wiring` (one per process)."""
    config = wiring.config
    app = Flask("bootsrv")
    app.extensions["bootsrv"] = wiring

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", server=config.server.name, version=__version__)

    from bootsrv.http.api import bp as api_bp

    app.register_blueprint(api_bp)

    from bootsrv.http.boot import bp as boot_bp

    app.register_blueprint(boot_bp)

    @app.errorhandler(BootsrvError)
    def bootsrv_error(exc: BootsrvError):
        return jsonify(error=type(exc).__name__, message=str(exc)), exc.http_status

    return app
