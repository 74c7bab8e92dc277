"""The one config model of bootsrv, loaded from TOML.

This module is the only reader of config files and of the environment. Everything else receives a
`Config` (or the part of it that concerns it) as a parameter. `Config.to_toml` (`bootsrv config
show`) writes the effective config back out through bootsrv.tomlwriter.

An embedded default (`default.toml` in this package) lets `bootsrv serve` start with no file; it is
safe by construction: its networks name no interface and no relay, so DHCP answers nobody, and the
TCP/UDP listeners bind to loopback only. A site file is merged over it table by table.

Every rule violation raises `ConfigError(source, key, rule)` with the dotted key path, and unknown
keys are errors (a typo such as `lease_tme` must not silently fall back to a default).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from bootsrv import tomlwriter
from bootsrv.data import shipped
from bootsrv.errors import ConfigError

ENV_CONFIG = "BOOTSRV_CONFIG"
DEFAULT_NAME = "default.toml"

# RFC 4578 section 2.1 processor architecture types (DHCP option 93) that PXE firmware sends.
ARCH_NAMES = {
    "bios": 0,  # x86 BIOS
    "efi-ia32": 6,
    "efi-x64": 7,
    "efi-bc": 9,  # EFI byte code; x64 firmware of several vendors sends 9 (RFC 4578 errata 4624)
    "efi-arm64": 11,
    "efi-x64-http": 16,  # UEFI HTTP boot (UEFI 2.5 spec, IANA processor architecture registry)
    "efi-arm64-http": 19,
}

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[int, Field(ge=1, le=10 * 365 * 86400)]


class Section(BaseModel):
    # Unknown keys are errors; values are not coerced across types ("60" is not 60).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Listen(Section):
    """Where a TCP/UDP service listens. Loopback by default: exposing a service is a decision."""

    enabled: bool = True
    address: IPv4Address = IPv4Address("127.0.0.1")
    port: Port


class ServerSection(Section):
    name: str = Field(default="bootsrv", min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
    # Solaris OWNER_IP: the addresses this server acts for. A pair lists each other's too only
    # when one should serve the other's records (see `bootsrv lease adopt` for a dead peer).
    owner_ips: list[IPv4Address] = Field(default_factory=lambda: [IPv4Address("192.0.2.1")], min_length=1)
    # Solaris RESCAN_INTERVAL, in seconds; the store is also re-read before every allocation.
    rescan_interval: Seconds = 60
    # Seconds (the client's `secs` field) after which this server answers a RENEW/REBIND of a
    # lease owned by its peer: the peer had that long to answer first (Solaris in.dhcpd -t).
    secondary_timeout: Annotated[int, Field(ge=0, le=3600)] = 20


class StoreSection(Section):
    directory: Path = Path("/var/lib/bootsrv/leases")


class RangeSection(Section):
    start: IPv4Address
    end: IPv4Address
    # The server that owns the addresses of this range; defaults to server.owner_ips[0].
    owner: IPv4Address | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RangeSection:
        if int(self.start) > int(self.end):
            raise ValueError(f"end: {self.end} is before start {self.start}")
        return self


class NetworkSection(Section):
    name: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_-]*$")
    # The segment of the pair this network belongs to (e.g. "odd"/"even"); guests are placed
    # on hypervisors of the same segment.
    segment: str = ""
    subnet: IPv4Network
    ranges: list[RangeSection] = Field(default_factory=list)
    router: IPv4Address | None = None  # option 3
    dns_servers: list[IPv4Address] = Field(default_factory=list)  # option 6
    domain: str = ""  # option 15
    mtu: Annotated[int, Field(ge=68, le=65535)] | None = None  # option 26 (RFC 2132 5.1: >= 68)
    lease_time: Seconds = 3600  # option 51
    # Where DHCP for this network is served: a local interface (inside the server's namespace)
    # and/or relay agents identified by the giaddr they stamp (RFC 2131 4.1). A network with
    # neither is never answered: the server never answers on an interface it was not told about.
    interface: str | None = Field(default=None, min_length=1, max_length=15)
    relays: list[IPv4Address] = Field(default_factory=list)
    # Extra options by RFC 2132 number, as strings/ints/address lists: {"42" = ["10.0.0.1"]}.
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("subnet", mode="before")
    @classmethod
    def _strict_subnet(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return IPv4Network(value, strict=True)
            except ValueError as exc:
                raise ValueError(f"{value!r} is not an IPv4 network with host bits zero ({exc})") from None
        return value

    @model_validator(mode="after")
    def _inside_subnet(self) -> NetworkSection:
        for i, rng in enumerate(self.ranges):
            for end in ("start", "end"):
                addr = getattr(rng, end)
                if addr not in self.subnet:
                    raise ValueError(f"ranges[{i}].{end}: {addr} is outside subnet {self.subnet}")
                if addr in (self.subnet.network_address, self.subnet.broadcast_address):
                    raise ValueError(f"ranges[{i}].{end}: {addr} is the network or broadcast address of {self.subnet}")
        if self.router is not None and self.router not in self.subnet:
            raise ValueError(f"router: {self.router} is outside subnet {self.subnet}")
        for key in self.options:
            if not key.isdigit() or not 1 <= int(key) <= 254:
                raise ValueError(f"options.{key}: must be a DHCP option number 1..254")
        return self


class DhcpSection(Section):
    enabled: bool = True
    port: Port = 67
    # How long an offered address stays reserved for the client (the pair must not offer it twice).
    offer_hold: Annotated[int, Field(ge=1, le=600)] = 30
    # ICMP echo before offering: off by default (ISC dhcpd waits its ping-timeout, 1 s by default,
    # on every offer).
    icmp_check: bool = False
    # Processes answering DHCP for this server (SO_REUSEPORT, steered by client MAC; each
    # allocates from its own stripe of the ranges). One Python process is bound by its one core
    # (the GIL); a busy segment wants one per core (figures: docs/dhcp.md, "Several processes").
    processes: Annotated[int, Field(ge=1, le=64)] = 1
    # Options by vendor class (option 60) prefix, between defaults and network in the layering.
    classes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Solaris-style macros: options by name, applied after the network's. A lease record's macro
    # (`Record.macro`) names one; a macro named by a client id (e.g. "01525400123456") is that
    # client's own layer, the last one (bootsrv.dhcp.options).
    macros: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _option_numbers(self) -> DhcpSection:
        for kind in ("classes", "macros"):
            for name, options in getattr(self, kind).items():
                for key in options:
                    if not key.isdigit() or not 1 <= int(key) <= 254:
                        raise ValueError(f"{kind}.{name}.{key}: must be a DHCP option number 1..254")
        return self


class BootSection(Section):
    tftp_root: Path = Path("/var/lib/bootsrv/tftp")
    # Served over HTTP under /files/: installer kernels and initrds (`bootsrv profile
    # fetch-installer`), install trees. Requests never resolve outside it (bootsrv.http.boot).
    files_root: Path = Path("/var/lib/bootsrv/files")
    # Base URL that firmware and installers use to reach the HTTP service (as seen from them).
    http_base_url: str = Field(default="http://127.0.0.1:8080", pattern=r"^https?://[^/\s]+(/\S*)?$")
    # Boot file by firmware architecture (names from ARCH_NAMES).
    files: dict[str, str] = Field(
        default_factory=lambda: {
            "bios": "undionly.kpxe",
            "efi-x64": "ipxe.efi",
            "efi-bc": "ipxe.efi",
            "efi-arm64": "ipxe-arm64.efi",
        }
    )
    # What an unknown machine gets: "local" (boot from disk), "discover" (record it, then local).
    unknown_machines: Literal["local", "discover"] = "discover"
    # Profile given to a machine the moment it is discovered, so it installs without an admin
    # (bootsrv.machines.admin.discover). Off by default: any unknown PXE client would be installed.
    auto_profile: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    # Most machines discovery keeps unadopted; the oldest go first (bootsrv.machines.discovery).
    discovered_limit: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    # New machines discovery records per second, and at once (a rack powering on), whether DHCP
    # or an HTTP boot-script fetch saw them: a token bucket, shared out among dhcp.processes.
    # Beyond it a new MAC is not recorded this time (counted, logged as discovery.dropped).
    discovery_rate: Annotated[float, Field(gt=0, le=100_000)] = 10.0
    discovery_burst: Annotated[int, Field(ge=1, le=1_000_000)] = 100

    @field_validator("files")
    @classmethod
    def _known_arches(cls, files: dict[str, str]) -> dict[str, str]:
        for arch, name in files.items():
            if arch not in ARCH_NAMES:
                raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCH_NAMES)}")
            if not name or name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"boot file {name!r} for {arch} must be a relative path inside tftp_root")
        return files


class TftpSection(Listen):
    port: Port = 69


class HttpSection(Listen):
    port: Port = 8080


class DnsSection(Listen):
    port: Port = 53
    # Zones we are authoritative for; names outside them are REFUSED (never an open resolver).
    zones: list[str] = Field(default_factory=lambda: ["lab.example"])
    ttl: Annotated[int, Field(ge=0, le=86400)] = 300


class ProfilesSection(Section):
    # Relative paths mean the profiles and templates shipped in the package (bootsrv.data), in a
    # wheel's install as in a checkout, whatever directory `bootsrv` is started from; a site
    # keeping its own sets absolute paths.
    profiles_dir: Path = Path("profiles")
    templates_dir: Path = Path("templates")

    @field_validator("profiles_dir", "templates_dir")
    @classmethod
    def _anchored(cls, path: Path) -> Path:
        return path if path.is_absolute() else shipped(path)


class ApiSection(Section):
    # Token required for admin API calls (Authorization: Bearer ...). None disables the admin API.
    admin_token: str | None = Field(default=None, min_length=16)
    # Lifetime of one-time enrollment tokens handed to installers.
    enroll_token_ttl: Seconds = 6 * 3600


class GuestHypervisorSection(Section):
    """A hypervisor listed by hand (besides enrolled machines): bootsrv.virt places guests on it."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
    segment: str = Field(min_length=1)
    uri: str = Field(min_length=1)  # libvirt URI, e.g. qemu+ssh://root@hv1/system
    # Where other hypervisors send live-migration traffic ("" = its host name, resolved by DNS).
    address: str = ""
    cpus: Annotated[int, Field(ge=1)] = 1
    memory_mib: Annotated[int, Field(ge=64)]
    state: Literal["active", "drained"] = "active"


class GuestsSection(Section):
    """Guest provisioning (bootsrv.virt; docs/guests.md)."""

    # Guests per hypervisor before placement fills the next one (the original site ran 4-6).
    guests_per_host: Annotated[int, Field(ge=1, le=64)] = 5
    # Memory kept for the hypervisor itself (dom0 / host OS) when checking room for a guest.
    reserve_mib: Annotated[int, Field(ge=0)] = 1024
    # Root of the project directories on the storage every hypervisor mounts (NFS, iSCSI+cluster fs).
    storage_dir: Path = Path("/var/lib/bootsrv/guests")
    # libvirt connection that manages the shared storage pools; default: the first hypervisor's.
    storage_uri: str | None = None
    # NICs join host bridges named like the NIC (fe0, be0), or libvirt networks named like the
    # bootsrv network they carry.
    attach: Literal["bridge", "network"] = "bridge"
    # hvm guests: "kvm", or "qemu" (TCG) on hosts without hardware virtualization.
    virt_type: Literal["kvm", "qemu"] = "kvm"
    # segment -> NIC -> bootsrv network, e.g. [guests.segments.odd] fe0 = "public", be0 = "backend".
    # Default for a segment: its networks whose `interface` is named like the NIC.
    segments: dict[str, dict[str, str]] = Field(default_factory=dict)
    hypervisors: list[GuestHypervisorSection] = Field(default_factory=list)


class Config(Section):
    server: ServerSection = ServerSection()
    store: StoreSection = StoreSection()
    networks: list[NetworkSection] = Field(default_factory=list)
    dhcp: DhcpSection = DhcpSection()
    boot: BootSection = BootSection()
    tftp: TftpSection = TftpSection()
    http: HttpSection = HttpSection()
    dns: DnsSection = DnsSection()
    profiles: ProfilesSection = ProfilesSection()
    api: ApiSection = ApiSection()
    guests: GuestsSection = GuestsSection()

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        names: set[str] = set()
        served: dict[str, str] = {}
        for i, net in enumerate(self.networks):
            if net.name in names:
                raise ValueError(f"networks[{i}].name: {net.name!r} is used by another network too")
            names.add(net.name)
            if net.interface:
                if net.interface in served:
                    raise ValueError(
                        f"networks[{i}].interface: {net.interface!r} already serves network {served[net.interface]!r}"
                    )
                served[net.interface] = net.name
        for i, a, b in _overlapping_subnets(self.networks):
            raise ValueError(f"networks[{i}].subnet: {a.subnet} overlaps {b.subnet} of network {b.name!r}")
        return self

    def network(self, name: str) -> NetworkSection:
        for net in self.networks:
            if net.name == name:
                return net
        raise KeyError(name)

    def range_owner(self, rng: RangeSection) -> IPv4Address:
        return rng.owner or self.server.owner_ips[0]

    def to_toml(self) -> str:
        return tomlwriter.dumps(self.model_dump(mode="json", exclude_none=True))


def _overlapping_subnets(networks: list[NetworkSection]):
    for i, a in enumerate(networks):
        for b in networks[:i]:
            if a.subnet.overlaps(b.subnet):
                yield i, a, b


# ---------------------------------------------------------------------------------------------
# Loading


def embedded_default_text() -> str:
    return resources.files("bootsrv").joinpath(DEFAULT_NAME).read_text(encoding="utf-8")


def parse(text: str, source: str, base: dict[str, Any] | None = None) -> Config:
    """Parse TOML text (merged over `base`, the embedded default when None) into a Config."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from None
    if base is None:
        base = tomllib.loads(embedded_default_text())
    return validate(merge(base, data), source)


def validate(data: dict[str, Any], source: str) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key, rule = _key_path(err["loc"]), _rule(err)
        # Model-level rules name their own sub-key as "subkey: rule" (see the validators above).
        sub = _SUBKEY.match(rule) if err["type"] == "value_error" else None
        if sub:
            key = key + ("" if not key or sub[1].startswith("[") else ".") + sub[1]
            rule = sub[2]
        raise ConfigError(source, key, rule) from None


def load(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the config: `path`, else $BOOTSRV_CONFIG, else the embedded default alone."""
    environ: Mapping[str, str] = os.environ if env is None else env
    chosen = path if path is not None else environ.get(ENV_CONFIG)
    if not chosen:
        return parse("", "<embedded default>")
    source = str(chosen)
    try:
        text = Path(chosen).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    return parse(text, source)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; anything else (arrays included) in `over` replaces `base`."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


_SUBKEY = re.compile(r"^([A-Za-z_][\w.\[\]-]*): (.*)$", re.S)


def _key_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith(("function-", "constrained-")) or part in ("str", "int", "list[...]"):
            continue  # pydantic's internal union/validator labels are not keys of the file
        else:
            path += ("." if path else "") + str(part)
    return path


def _rule(err: ErrorDetails) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = msg.removeprefix("Value error, ")
    if "input" in err and not isinstance(err["input"], (dict, list)):
        return f"{msg} (got {err['input']!r})"
    return msg


def is_loopback(address: IPv4Address) -> bool:
    return address in ipaddress.IPv4Network("127.0.0.0/8")
