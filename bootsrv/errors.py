"""The error tree. Each error says which field or rule failed, and maps to an exit code and HTTP status.

"Unknown machine" and "pool exhausted" style outcomes of normal operation are results, not errors;
these classes are for input that is wrong and for state that forbids an operation.
"""

from __future__ import annotations


class BootsrvError(Exception):
    """Base of every error bootsrv reports to a user."""

    exit_code = 1
    http_status = 500
    http_headers: tuple[tuple[str, str], ...] = ()  # sent with the HTTP answer (bootsrv.http.errors)


class ConfigError(BootsrvError):
    """A config file (or the embedded default plus overrides) breaks a rule.

    `source` is the file, `key` the dotted path of the offending key ("networks[0].subnet"),
    `rule` what it must satisfy. The server does not start with an invalid config.
    """

    exit_code = 2
    http_status = 500

    def __init__(self, source: str, key: str, rule: str):
        self.source, self.key, self.rule = source, key, rule
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {rule}")


class InvalidInput(BootsrvError):
    """A user or network input is malformed: names the field and the rule."""

    exit_code = 2
    http_status = 400

    def __init__(self, field: str, rule: str):
        self.field, self.rule = field, rule
        super().__init__(f"{field}: {rule}")


class MalformedPacket(InvalidInput):
    """A datagram from the network breaks a rule of its protocol (for DHCP RFC 2131/2132, see
    bootsrv.dhcp.packet); `rule` names the field or option ("option 97 has length 5, expected
    17"). The server logs it (MAC, xid), counts it and drops it; it is the client's fault, never
    a bug of ours, which is why the socket loops catch exactly this class and nothing wider."""

    def __init__(self, rule: str, field: str = "packet"):
        super().__init__(field, rule)


class NotFound(BootsrvError):
    exit_code = 3
    http_status = 404


class Conflict(BootsrvError):
    """The operation collides with existing state (duplicate name, address in use, stale write)."""

    exit_code = 4
    http_status = 409


class Forbidden(BootsrvError):
    exit_code = 5
    http_status = 403
