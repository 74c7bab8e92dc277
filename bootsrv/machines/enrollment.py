"""Enrollment: one-time tokens for installers, the callback's validation, the machine's transition.

When a machine due for install fetches its install boot, `install_token` moves it to
"installing" and issues a token that the rendered answer file carries. The installer's last
step POSTs the token, the machine's MAC and its facts to `/api/enroll`; `enroll` checks them and
moves the machine to "enrolled", which turns its netboot off (machines.boot_action).

Token rules (each a row of tests/machines/test_enroll.py; docs/security.md has the trust model):
- unguessable: 256 bits (`secrets.token_urlsafe(32)`, or an HMAC-SHA256 under a 256-bit
  process secret, below); only its SHA-256 is stored, so a copy of the store does not let anyone
  enroll; digests are compared with `hmac.compare_digest`;
- bound to one machine: a token presented with another machine's MAC is refused;
- bound to the machine's addresses: the boot that carries it is given, and the callback that
  spends it accepted, only from an address bootsrv leased or bound to the machine
  (bootsrv.machines.binding.check_client);
- one per install and server process: `TokenKey` derives a token from a secret that lives only
  in this process's memory, the MAC and the issue time, so a later fetch of the boot during the
  same install (a firmware retry, a reboot, or a flood of spoofed TFTP requests) gets the same
  token back and writes nothing; it never pushes the installer's token out. A new token is
  issued only for a new install, once the old one expired, or by a process that cannot rebuild
  it (the peer server, or this one after a restart): a few per install, at most MAX_TOKENS kept;
- expiring: `config.api.enroll_token_ttl` seconds after issue;
- single use: the first valid callback marks every token of the machine used, in the same
  compare-and-swap write that enrolls it, so a replay (even to the other server of the pair,
  which shares the registry) is refused. The DHCP path never issues tokens: it asks
  `machines.netboot` (a read).

The facts that matter are checked against what bootsrv already knows (`check_claims`): the
libvirt URI must name the machine itself (its hostname, FQDN or one of its addresses), the
hostname must be the machine's, the hypervisor its profile's, and one NIC must have its MAC.

Every refusal raises before anything is written: a bad callback changes nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Set
from datetime import UTC, datetime
from urllib.parse import urlsplit

from bootsrv.errors import Conflict, Forbidden, InvalidInput
from bootsrv.machines.binding import Identity, check_client
from bootsrv.machines.model import (
    Disk,
    Event,
    Facts,
    Machine,
    MachineRegistry,
    Nic,
    StaleWrite,
    State,
    Token,
    require,
)
from bootsrv.values import normalize_hostname, normalize_mac

MAX_TOKENS = 16
TOKEN_BYTES = 32
TOKEN_TEXT = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_NIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,15}$")  # Linux IFNAMSIZ is 16 with the NUL
_DISK_NAME = re.compile(r"^[A-Za-z0-9._/-]{1,64}$")
# libvirt connection URIs (https://libvirt.org/uri.html): driver[+transport]://[user@][host][:port]/path
_LIBVIRT_URI = re.compile(r"^(?P<driver>[a-z]+)(\+(?P<transport>[a-z]+))?://[A-Za-z0-9._~%@:\[\]-]*/[\w./?=&%-]*$")
HYPERVISOR_DRIVERS = {"kvm": "qemu", "xen": "xen"}
TRANSPORTS = {None, "ssh", "tls", "tcp", "libssh", "libssh2", "unix"}


class TokenRejected(Forbidden):
    """A token that is unknown, expired, or presented for the wrong machine (HTTP 403)."""

    def __init__(self, field: str, rule: str):
        self.field, self.rule = field, rule
        super().__init__(f"{field}: {rule}")


class TokenReplayed(Conflict):
    """A token that was already used to enroll (HTTP 409)."""

    def __init__(self, rule: str):
        self.field, self.rule = "token", rule
        super().__init__(f"token: {rule}")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# Issuing


def start_install(
    registry: MachineRegistry,
    mac: str,
    now: float,
    ttl: int,
    new_token: Callable[[], str] = lambda: secrets.token_urlsafe(TOKEN_BYTES),
) -> tuple[Machine, str]:
    """Move a machine due for install to "installing" and issue it a token (returned in clear,
    once: only its digest is stored). IllegalTransition if the machine is not due for install."""
    token = new_token()
    record = Token(digest=digest(token), issued=now, expires=now + ttl)

    def change(machine: Machine) -> Machine:
        # Used tokens belong to an earlier install, expired ones to nobody: drop them, keep the
        # newest live ones (the same token issued twice in one instant is kept once).
        live = tuple(t for t in machine.tokens if not t.used and t.expires > now and t.digest != record.digest)
        return machine.with_event(Event.INSTALL, now, tokens=live[-(MAX_TOKENS - 1) :] + (record,))

    for _ in range(50):
        current = require(registry, mac)
        try:
            return registry.put(change(current), current.revision), token
        except StaleWrite:
            continue
    raise Conflict(f"machine {mac}: could not issue an enrollment token (too many concurrent changes)")


class TokenKey:
    """The secret one server process derives its enrollment tokens from: HMAC-SHA256 over the
    MAC and the token's issue time. The secret is drawn at start and never written anywhere, so
    the store still holds only digests; what it buys is that this process can give the same
    token again for as long as it lives (`held`) instead of issuing, and storing, another."""

    def __init__(self, secret: bytes | None = None):
        self._secret = secret if secret is not None else secrets.token_bytes(TOKEN_BYTES)

    def token(self, mac: str, issued: float) -> str:
        # float(): the registry keeps `issued` as a JSON number, which reads back as a float.
        message = f"{mac}|{float(issued)!r}".encode()
        mac_bytes = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac_bytes).rstrip(b"=").decode("ascii")  # 43 characters

    def held(self, machine: Machine, now: float) -> str | None:
        """The clear text of `machine`'s newest live token that this key issued, if any."""
        for record in reversed(machine.tokens):
            if record.used or now >= record.expires:
                continue
            candidate = self.token(machine.mac, record.issued)
            if hmac.compare_digest(record.digest, digest(candidate)):
                return candidate
        return None


def install_token(registry: MachineRegistry, mac: str, now: float, ttl: int, key: TokenKey) -> tuple[Machine, str]:
    """The token of this install for the boot being served: the one `key` already issued while
    it lives (nothing is written), else a new one (start_install). IllegalTransition if the
    machine is not due for install."""
    machine = require(registry, mac)
    if machine.state is State.INSTALLING:
        again = key.held(machine, now)
        if again is not None:
            return machine, again
    return start_install(registry, mac, now, ttl, new_token=lambda: key.token(mac, now))


# ---------------------------------------------------------------------------------------------
# Validating the callback


@dataclasses.dataclass(frozen=True)
class EnrollRequest:
    token: str
    mac: str
    facts: Facts


def _object(value: object, field: str, required: Set[str], optional: Set[str] = frozenset()) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput(field, f"must be a JSON object, got {type(value).__name__}")
    for key in value:
        if key not in required and key not in optional:
            shown = key if re.fullmatch(r"[A-Za-z0-9_-]{1,40}", key) else repr(key[:40])
            raise InvalidInput(f"{field}.{shown}" if field else shown, "unknown field")
    for key in sorted(required):
        if key not in value:
            raise InvalidInput(f"{field}.{key}" if field else key, "required field is missing")
    return value


def _int(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidInput(field, f"{value} is outside {low}..{high}")
    return value


def _list(value: object, field: str, low: int, high: int) -> list:
    if not isinstance(value, list):
        raise InvalidInput(field, f"must be a JSON array, got {type(value).__name__}")
    if not low <= len(value) <= high:
        raise InvalidInput(field, f"has {len(value)} entries, expected {low}..{high}")
    return value


def _name(value: object, field: str, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidInput(field, f"{value!r} is not a {what}")
    return value


def parse_facts(value: object, field: str = "facts") -> Facts:
    """The installer's facts, validated field by field; InvalidInput names the first bad field."""
    data = _object(value, field, {"hostname", "cpus", "memory_mib", "nics", "disks", "hypervisor", "libvirt_uri"})
    hostname = normalize_hostname(data["hostname"], f"{field}.hostname")
    cpus = _int(data["cpus"], f"{field}.cpus", 1, 8192)
    memory = _int(data["memory_mib"], f"{field}.memory_mib", 64, 64 * 1024 * 1024)  # up to 64 TiB
    nics: list[Nic] = []
    for i, raw in enumerate(_list(data["nics"], f"{field}.nics", 1, 64)):
        where = f"{field}.nics[{i}]"
        nic = _object(raw, where, {"name", "mac"})
        nic_name = _name(nic["name"], f"{where}.name", _NIC_NAME, "network interface name")
        nic_mac = normalize_mac(nic["mac"], f"{where}.mac")
        if any(n.name == nic_name for n in nics):
            raise InvalidInput(f"{where}.name", f"{nic_name!r} is listed twice")
        if any(n.mac == nic_mac for n in nics):
            raise InvalidInput(f"{where}.mac", f"{nic_mac} is listed twice")
        nics.append(Nic(nic_name, nic_mac))
    disks: list[Disk] = []
    for i, raw in enumerate(_list(data["disks"], f"{field}.disks", 1, 256)):
        where = f"{field}.disks[{i}]"
        disk = _object(raw, where, {"name", "size_bytes"})
        disk_name = _name(disk["name"], f"{where}.name", _DISK_NAME, "disk name")
        size = _int(disk["size_bytes"], f"{where}.size_bytes", 0, 2**63 - 1)
        if any(d.name == disk_name for d in disks):
            raise InvalidInput(f"{where}.name", f"{disk_name!r} is listed twice")
        disks.append(Disk(disk_name, size))
    hypervisor = data["hypervisor"]
    if not isinstance(hypervisor, str) or hypervisor not in HYPERVISOR_DRIVERS:
        raise InvalidInput(f"{field}.hypervisor", f"{hypervisor!r} is not one of {', '.join(HYPERVISOR_DRIVERS)}")
    uri = data["libvirt_uri"]
    match = _LIBVIRT_URI.match(uri) if isinstance(uri, str) and len(uri) <= 255 else None
    if not match:
        raise InvalidInput(f"{field}.libvirt_uri", f"{uri!r} is not a libvirt URI (e.g. qemu+ssh://hv1/system)")
    if match["driver"] != HYPERVISOR_DRIVERS[hypervisor]:
        raise InvalidInput(
            f"{field}.libvirt_uri",
            f"driver {match['driver']!r} does not manage a {hypervisor} hypervisor"
            f" (expected {HYPERVISOR_DRIVERS[hypervisor]})",
        )
    if match["transport"] not in TRANSPORTS:
        raise InvalidInput(f"{field}.libvirt_uri", f"unknown transport {match['transport']!r}")
    return Facts(hostname, cpus, memory, tuple(nics), tuple(disks), hypervisor, uri)


def parse_request(body: object) -> EnrollRequest:
    if not isinstance(body, dict):
        raise InvalidInput("body", f"must be a JSON object with token, mac and facts, got {type(body).__name__}")
    data = _object(body, "", {"token", "mac", "facts"})
    token = data["token"]
    if not isinstance(token, str) or not TOKEN_TEXT.match(token):
        raise InvalidInput("token", "must be the 16-128 character token from the answer file")
    return EnrollRequest(token=token, mac=normalize_mac(data["mac"]), facts=parse_facts(data["facts"]))


# ---------------------------------------------------------------------------------------------
# Enrolling


def _holder(registry: MachineRegistry, token_digest: str) -> tuple[Machine, Token] | None:
    # Every stored digest is compared in constant time; a registry holds hundreds of machines
    # with at most MAX_TOKENS tokens each, so the scan costs microseconds.
    found = None
    for machine in registry.list():
        for record in machine.tokens:
            if hmac.compare_digest(record.digest, token_digest):
                found = (machine, record)
    return found


def check(
    registry: MachineRegistry,
    request: EnrollRequest,
    now: float,
    client: str | None,
    identify: Callable[[Machine], Identity],
) -> Machine:
    """The enrolled machine this request would produce, or the error that refuses it (nothing
    is written). `client` is the request's source address; `identify` says what bootsrv knows
    of the machine the token belongs to (bootsrv.machines.plan.identity)."""
    held = _holder(registry, digest(request.token))
    if held is None:
        raise TokenRejected("token", "unknown token: not issued by this registry, or superseded by a reinstall")
    machine, record = held
    if machine.mac != request.mac:
        raise TokenRejected("mac", f"the token was not issued to machine {request.mac}")
    if record.used:
        raise TokenReplayed(f"already used: machine {machine.mac} is {machine.state.value}")
    if now >= record.expires:
        raise TokenRejected("token", f"expired at {iso_time(record.expires)} (issued {iso_time(record.issued)})")
    known = identify(machine)
    check_client(known, client, "enrollment")
    check_claims(known, request.facts)
    return machine.with_event(
        Event.ENROLL,
        now,
        facts=request.facts,
        libvirt_uri=request.facts.libvirt_uri,
        enrolled_at=now,
        drained=False,
        tokens=tuple(dataclasses.replace(t, used=True) for t in machine.tokens),
    )


def _short(name: str) -> str:
    return name.split(".", 1)[0]


def check_claims(known: Identity, facts: Facts) -> None:
    """Raise InvalidInput, naming the field, for a fact that contradicts what bootsrv knows of
    the machine. Guest placement connects to the libvirt URI and trusts the hypervisor type, so
    those must be the machine's own; cpus, memory and disks are the installer's word (docs/security.md)."""
    if not any(nic.mac == known.mac for nic in facts.nics):
        raise InvalidInput("facts.nics", f"no NIC has the machine's MAC {known.mac}")
    names = sorted(known.names)
    if facts.hostname not in known.names and facts.hostname not in {_short(n) for n in names}:
        raise InvalidInput("facts.hostname", f"{facts.hostname!r} is not this machine's name ({', '.join(names)})")
    if known.hypervisor is not None and facts.hypervisor != known.hypervisor:
        raise InvalidInput(
            "facts.hypervisor", f"{facts.hypervisor!r} is not what the machine's profile installs ({known.hypervisor})"
        )
    host = urlsplit(facts.libvirt_uri).hostname  # lower-cased; without user@, :port and brackets
    where = ", ".join([*names, *sorted(known.addresses)])
    if not host:
        raise InvalidInput(
            "facts.libvirt_uri",
            f"{facts.libvirt_uri!r} names no host: bootsrv reaches a hypervisor over the network ({where})",
        )
    if host.rstrip(".") not in known.names and host not in known.addresses:
        raise InvalidInput("facts.libvirt_uri", f"host {host!r} is not this machine: the URI must name one of {where}")


def enroll(
    registry: MachineRegistry,
    body: object,
    now: float,
    *,
    client: str | None,
    identify: Callable[[Machine], Identity],
) -> Machine:
    """Validate an enrollment callback from `client` and apply it. Raises (changing nothing)
    when it is refused."""
    request = parse_request(body)
    for _ in range(50):
        enrolled = check(registry, request, now, client, identify)
        try:
            return registry.put(enrolled, enrolled.revision)
        except StaleWrite:
            continue  # the peer server wrote meanwhile (perhaps this very token): re-check
    raise Conflict(f"machine {request.mac}: enrollment gave up after repeated concurrent changes")


# ---------------------------------------------------------------------------------------------
# The installer's side: a POSIX sh script (dash, busybox ash) that gathers the facts and calls back


CALLBACK_TEMPLATE = r"""#!/bin/sh
# bootsrv enrollment callback for {mac}: gathers this machine's facts and POSTs them once.
# Generated by bootsrv.machines.enrollment.callback_script; runs under dash or busybox sh, with curl or wget.
set -eu
URL={url}
TOKEN={token}
MAC={mac}
NAME={hostname}
HYPERVISOR={hypervisor}
LIBVIRT_URI={libvirt_uri}
SYS=${{BOOTSRV_SYSFS:-/sys}}
PROC=${{BOOTSRV_PROCFS:-/proc}}

cpus=$(grep -c '^processor' "$PROC/cpuinfo")
memory_mib=$(( $(awk '/^MemTotal:/ {{print $2}}' "$PROC/meminfo") / 1024 ))

# NICs by kernel name with their MAC. A bridge or bond repeats a member's MAC and bootsrv refuses
# duplicates, so physical NICs (those with a `device` link in sysfs) come first and each MAC is
# listed once.
nics="" seen=""
for dev in "$SYS"/class/net/*/device "$SYS"/class/net/*; do
  dev=${{dev%/device}}
  name=${{dev##*/}}
  [ "$name" = lo ] && continue
  [ "$name" = "*" ] && continue
  [ -r "$dev/address" ] || continue
  addr=$(cat "$dev/address")
  case "$addr" in ??:??:??:??:??:??) ;; *) continue ;; esac
  case "$addr" in 00:00:00:00:00:00) continue ;; esac
  case " $seen " in *" $addr "*) continue ;; esac
  seen="$seen $addr"
  nics="$nics${{nics:+,}}{{\"name\":\"$name\",\"mac\":\"$addr\"}}"
done

# Whole disks (sysfs sizes are 512-byte sectors whatever the logical block size).
disks=""
for dev in "$SYS"/block/*; do
  name=${{dev##*/}}
  case "$name" in loop*|ram*|zram*|sr*|fd*|dm-*|md*|nbd*) continue ;; esac
  disks="$disks${{disks:+,}}{{\"name\":\"$name\",\"size_bytes\":$(( $(cat "$dev/size") * 512 ))}}"
done

body="{{\"token\":\"$TOKEN\",\"mac\":\"$MAC\",\"facts\":{{\"hostname\":\"$NAME\",\"cpus\":$cpus,\
\"memory_mib\":$memory_mib,\"nics\":[$nics],\"disks\":[$disks],\"hypervisor\":\"$HYPERVISOR\",\
\"libvirt_uri\":\"$LIBVIRT_URI\"}}}}"

echo "bootsrv: enrolling $MAC as $NAME ($cpus cpus, $memory_mib MiB) at $URL"
if command -v curl >/dev/null 2>&1; then
  curl -sS --fail-with-body --retry 5 --retry-connrefused -H 'Content-Type: application/json' --data "$body" "$URL"
else
  wget -q -O - --header 'Content-Type: application/json' --post-data "$body" "$URL"
fi
echo
"""


def callback_script(base_url: str, token: str, mac: str, hostname: str, hypervisor: str, libvirt_uri: str) -> str:
    """The shell script an answer file runs as its last step (preseed late_command, kickstart
    %post, or the test initramfs). Every value is validated here and shell-quoted."""
    import shlex

    mac = normalize_mac(mac)
    hostname = normalize_hostname(hostname)
    if not TOKEN_TEXT.match(token):
        raise InvalidInput("token", "must be a token issued by start_install")
    if not re.fullmatch(r"https?://[^\s'\"\\]+", base_url):
        raise InvalidInput("base_url", f"{base_url!r} is not an http(s) URL")
    uri = parse_facts(
        {
            "hostname": hostname,
            "cpus": 1,
            "memory_mib": 64,
            "nics": [{"name": "x", "mac": mac}],
            "disks": [{"name": "x", "size_bytes": 0}],
            "hypervisor": hypervisor,
            "libvirt_uri": libvirt_uri,
        }
    ).libvirt_uri
    values = dict(
        url=base_url.rstrip("/") + "/api/enroll",
        token=token,
        mac=mac,
        hostname=hostname,
        hypervisor=hypervisor,
        libvirt_uri=uri,
    )
    return CALLBACK_TEMPLATE.format(**{k: shlex.quote(v) for k, v in values.items()})
