"""Which options a reply carries, in which order: layered values (pure, built once from the config).

Layers, as Solaris dhcptab macros were applied (each later one overrides the earlier ones per
option): the server's defaults, then the client class (vendor class option 60 by prefix, config
`dhcp.classes`; a longer prefix is more specific and applies later), then the network (router,
DNS servers, domain, MTU, lease time and `networks[i].options`), then the macro named by the
address's record (`Record.macro`), then the macro named by the client id itself (Solaris'
client-id macro: per-machine options).

Config values become option bytes here, once, at start: a value that cannot be encoded for its
option is a ConfigError naming the key, never a failure per packet.

Order in the reply: message type (53) and server identifier (54) first, then the lease times
(51, 58, 59), then what the client asked for in its parameter request list (55) in the order it
asked (RFC 2132 9.8: "the client MAY list the options in order of preference"), then the options
the caller forces (PXE options some firmware needs but does not request), then, only for a client
that sent no list, everything else the layers hold. The codec drops from the end when the client's
maximum message size is reached, so this order is also the priority.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bootsrv.config import Config, NetworkSection
from bootsrv.errors import ConfigError

# RFC 2132 option types, for turning config values into bytes.
ADDRESSES = {
    1,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    16,
    28,
    32,
    41,
    42,
    44,
    45,
    48,
    49,
    54,
    65,
    68,
    69,
    70,
    71,
    72,
    73,
    74,
    75,
    76,
}
TEXTS = {12, 14, 15, 17, 18, 40, 47, 56, 60, 64, 66, 67}
U32 = {2, 24, 35, 38, 51, 58, 59}
U16 = {13, 22, 26, 57}
U8 = {19, 20, 23, 27, 29, 30, 31, 34, 36, 37, 39, 46}

# Lease times: RFC 2131 4.4.5 defaults T1 = 0.5 and T2 = 0.875 of the lease.
T1_FRACTION, T2_FRACTION = 0.5, 0.875
LEASE_OPTIONS = (51, 58, 59)


def encode_value(code: int, value: Any, key: str) -> bytes:
    """A config value as the bytes of option `code`; ConfigError names `key` on a bad value."""
    try:
        if isinstance(value, str) and value.startswith("hex:"):
            return bytes.fromhex(value[4:].replace(":", ""))  # any option, raw octets
        if code in ADDRESSES:
            items = value if isinstance(value, list) else [value]
            return b"".join(ipaddress.IPv4Address(str(v)).packed for v in items)
        if code in U32 | U16 | U8:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected an integer, got {value!r}")
            fmt = "!I" if code in U32 else "!H" if code in U16 else "!B"
            if code == 2:
                fmt = "!i"  # time offset is signed (RFC 2132 3.4)
            return struct.pack(fmt, value)
        if code in TEXTS or isinstance(value, str):
            if not isinstance(value, str):
                raise ValueError(f"expected a string, got {value!r}")
            return value.encode("ascii")
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return b"".join(ipaddress.IPv4Address(v).packed for v in value)  # unknown code: addresses
        if isinstance(value, bool):
            return b"\x01" if value else b"\x00"
        raise ValueError(f'cannot tell how to encode {value!r} for option {code}; write it as "hex:..."')
    except (ValueError, struct.error, UnicodeEncodeError) as exc:
        raise ConfigError("config", key, f"option {code}: {exc}") from None


def encode_table(table: Mapping[str, Any], key: str) -> dict[int, bytes]:
    out = {}
    for name, value in table.items():
        if not str(name).isdigit() or not 1 <= int(name) <= 254:
            raise ConfigError("config", f"{key}.{name}", "must be a DHCP option number 1..254")
        code = int(name)
        out[code] = encode_value(code, value, f"{key}.{name}")
    return out


def network_options(net: NetworkSection) -> dict[int, bytes]:
    """The network layer from a `NetworkSection`."""
    out: dict[int, bytes] = {1: net.subnet.netmask.packed, 28: net.subnet.broadcast_address.packed}
    if net.router is not None:
        out[3] = net.router.packed
    if net.dns_servers:
        out[6] = b"".join(a.packed for a in net.dns_servers)
    if net.domain:
        out[15] = net.domain.encode("ascii")
    if net.mtu is not None:
        out[26] = struct.pack("!H", net.mtu)
    out[51] = struct.pack("!I", net.lease_time)
    out.update(encode_table(net.options, f"networks[{net.name}].options"))
    return out


@dataclass(frozen=True)
class Layers:
    defaults: dict[int, bytes] = field(default_factory=dict)
    classes: tuple[tuple[bytes, dict[int, bytes]], ...] = ()  # (vendor class prefix, options), shortest first
    networks: dict[str, dict[int, bytes]] = field(default_factory=dict)
    macros: dict[str, dict[int, bytes]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config, macros: Mapping[str, Mapping[str, Any]] | None = None) -> Layers:
        if macros is None:
            macros = config.dhcp.macros
        classes = sorted(
            (
                (prefix.encode(), encode_table(opts, f"dhcp.classes.{prefix}"))
                for prefix, opts in config.dhcp.classes.items()
            ),
            key=lambda c: len(c[0]),
        )
        return cls(
            defaults={},
            classes=tuple(classes),
            networks={net.name: network_options(net) for net in config.networks},
            macros={
                name.upper() if _is_client_id(name) else name: encode_table(opts, f"dhcp.macros.{name}")
                for name, opts in macros.items()
            },
        )

    def resolve(
        self, network: str, vendor_class: bytes | None = None, macro: str = "", client_id: str = ""
    ) -> dict[int, bytes]:
        """Every option value for this client on this network, layers applied in order."""
        out = dict(self.defaults)
        if vendor_class:
            for prefix, opts in self.classes:
                if vendor_class.startswith(prefix):
                    out.update(opts)
        out.update(self.networks.get(network, {}))
        if macro and macro in self.macros:
            out.update(self.macros[macro])
        if client_id and client_id in self.macros:
            out.update(self.macros[client_id])
        return out


def _is_client_id(name: str) -> bool:
    # Client ids are upper-case hex in the store; let a config write them in either case.
    return len(name) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in name)


def lease_times(values: Mapping[int, bytes]) -> tuple[int, Mapping[int, bytes]]:
    """The lease time and options 51/58/59; T1/T2 from RFC 2131 4.4.5 unless a layer sets them.
    The mapping is shared between callers (read-only)."""
    return _lease_times(values[51], values.get(58), values.get(59))


@functools.lru_cache(maxsize=256)
def _lease_times(lease_time: bytes, renewal: bytes | None, rebinding: bytes | None) -> tuple[int, Mapping[int, bytes]]:
    # Cached: every OFFER and ACK asks (the ACK twice), and the layers of a site give a handful
    # of distinct lease times; packing them again cost ~1 us per call.
    lease = struct.unpack("!I", lease_time)[0]
    return lease, MappingProxyType(
        {
            51: lease_time,
            58: renewal or struct.pack("!I", int(lease * T1_FRACTION)),
            59: rebinding or struct.pack("!I", int(lease * T2_FRACTION)),
        }
    )


def ordered(
    first: Mapping[int, bytes],
    values: Mapping[int, bytes],
    requested: bytes | None,
    forced: Iterable[int] = (),
    skip: Iterable[int] = (),
) -> dict[int, bytes]:
    """The reply's options in priority order (see the module doc)."""
    out = dict(first)
    skip = set(skip) | set(out)
    if requested:
        for code in requested:
            if code in values and code not in skip and code not in out:
                out[code] = values[code]
    for code in forced:
        if code in values and code not in out and code not in set(first):
            out[code] = values[code]
    if not requested:
        for code in sorted(values):
            if code not in skip and code not in out:
                out[code] = values[code]
    return out
