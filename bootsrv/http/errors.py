"""One error shape for every HTTP route: JSON `{"error": ..., "field": ..., "reason": ...}`.

`refusal(exc, method, path)` is the one serializer, registered on the app for every exception
(bootsrv.http.app), so the boot chain, the API, 404 and 405 all answer alike:

- a BootsrvError of the client's making (4xx): its class name, its field (InvalidInput names
  one) and its message, with its `http_status` and `http_headers` (the API's 401 carries
  WWW-Authenticate);
- a BootsrvError about the server's own state (5xx: a damaged machine registry or lease store, a
  broken profile or template, a config error): its class name and a fixed reason. Its message
  names server files and lines ("/var/lib/bootsrv/store/machines.jsonl:3: not JSON"), which are
  for the operator, not for whoever asked: it goes to the log (bootsrv.http.app);
- a werkzeug HTTPException (404 no route, 405 wrong method, 400 bad request, 413 too large):
  its class name, and a reason that names what was asked (the path, the method and the methods
  allowed, the body and its limit); its headers (Allow on a 405) are kept;
- anything else is a bug: 500 with a fixed reason and no detail (no traceback, no server path,
  no exception text); the traceback goes to the log (bootsrv.http.app).

/boot/ and /profiles/ answer errors in this shape too, not in text: iPXE never shows the body
of a failed fetch (src/net/tcp/httpcore.c, http_content_deliver: "Ignore content if this is
anything other than a successful transfer"; it prints its own error number), and the installers'
fetchers (d-i's wget, GRUB's http) report the status line, not the body. The body is read by a
person with curl or by the log, for whom the JSON carries the same words.
"""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from bootsrv.errors import BootsrvError
from bootsrv.http.body import MAX_BODY

INTERNAL = "InternalServerError"
INTERNAL_REASON = "the server failed to answer this request; its log has the details"
# A 5xx BootsrvError: a damaged registry or store, a broken profile, a failing libvirt.
SERVER_STATE_REASON = (
    "the server cannot answer: the failure is on its side (its stored state, configuration or a service it uses);"
    " its log has the details"
)


def refusal(exc: BaseException, method: str, path: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """(body, status, headers) for an exception raised while answering `method path`. Pure."""
    if isinstance(exc, BootsrvError):
        if exc.http_status >= 500:
            return {"error": type(exc).__name__, "field": None, "reason": SERVER_STATE_REASON}, exc.http_status, {}
        body = {"error": type(exc).__name__, "field": getattr(exc, "field", None), "reason": str(exc)}
        return body, exc.http_status, dict(exc.http_headers)
    if isinstance(exc, HTTPException):
        headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
        field, reason = None, exc.description or exc.name
        if isinstance(exc, NotFound):
            field, reason = "path", f"nothing is served at {_short(path)}"
        elif isinstance(exc, MethodNotAllowed):
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            field, reason = "method", f"{_short(method)} is not allowed on {_short(path)} (allowed: {allowed})"
        elif isinstance(exc, RequestEntityTooLarge):
            field, reason = "body", f"body: larger than {MAX_BODY} bytes"
        return {"error": type(exc).__name__, "field": field, "reason": reason}, exc.code or 500, headers
    return {"error": INTERNAL, "field": None, "reason": INTERNAL_REASON}, 500, {}


def _short(text: str, limit: int = 200) -> str:
    # The client's own path echoed back, bounded: a 100 kB URL does not make a 100 kB error.
    return text if len(text) <= limit else text[:limit] + "..."
