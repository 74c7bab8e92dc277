"""Flask app factory. Blueprints register here; only bootsrv.http imports Flask.

One error handler for the whole app (bootsrv.http.errors has the shape and why /boot/ uses it
too): every exception a view raises, and werkzeug's own 404, 405 and 413, answer the same JSON.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from bootsrv import __version__
from bootsrv.errors import BootsrvError
from bootsrv.http.api import bp as api_bp
from bootsrv.http.body import MAX_BODY
from bootsrv.http.boot import bp as boot_bp
from bootsrv.http.errors import refusal
from bootsrv.http.site import Site
from bootsrv.log import event, failure

log = logging.getLogger("bootsrv.http")


def create_app(site: Site) -> Flask:
    """The WSGI app. Blueprints get their collaborators from `site` (one per process)."""
    config = site.config
    app = Flask("bootsrv")
    app.extensions["bootsrv"] = site
    # Werkzeug refuses to read more (413, bootsrv.http.errors names the body and the limit).
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", server=config.server.name, version=__version__)

    app.register_blueprint(api_bp)
    app.register_blueprint(boot_bp)
    # Flask hands HTTPExceptions to a handler registered for Exception too, except routing
    # redirects (a missing trailing slash, 308), which stay redirects.
    app.register_error_handler(Exception, answer_error)
    return app


def answer_error(exc: Exception):
    body, status, headers = refusal(exc, request.method, request.path)
    if not isinstance(exc, (BootsrvError, HTTPException)):
        # A bug: the client gets the fixed 500 of bootsrv.http.errors, the log the traceback.
        failure(log, "http.failed", method=request.method, path=request.path)
    else:
        # A 5xx is the server's own state (a damaged registry, a broken profile): the answer says
        # only that (bootsrv.http.errors); the log has the whole message, file and line included.
        failed = status >= 500
        name, level = ("http.failed", logging.ERROR) if failed else ("http.refused", logging.INFO)
        reason = str(exc) if failed and isinstance(exc, BootsrvError) else body["reason"]
        fields = {"status": status, "error": body["error"], "reason": reason}
        event(log, name, level, method=request.method, path=request.path, **fields)
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    return response
