"""Flask app factory. Blueprints register here; only bootsrv.http imports Flask."""

from __future__ import annotations

from flask import Flask, jsonify

from bootsrv import __version__
from bootsrv.errors import BootsrvError
from bootsrv.http.api import bp as api_bp
from bootsrv.http.boot import bp as boot_bp
from bootsrv.http.site import Site


def create_app(site: Site) -> Flask:
    """The WSGI app. Blueprints get their collaborators from `site` (one per process)."""
    config = site.config
    app = Flask("bootsrv")
    app.extensions["bootsrv"] = site

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", server=config.server.name, version=__version__)

    app.register_blueprint(api_bp)
    app.register_blueprint(boot_bp)

    @app.errorhandler(BootsrvError)
    def bootsrv_error(exc: BootsrvError):
        return jsonify(error=type(exc).__name__, message=str(exc)), exc.http_status

    return app
