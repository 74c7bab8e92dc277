"""Machines: what bootsrv knows about each bare-metal box, its life cycle, and where that is kept.

A machine is known by its MAC (the one its PXE ROM uses), optionally by the SMBIOS GUID (DHCP
option 97, RFC 4578 2.3) and serial. Its life cycle is a data table (`TRANSITIONS`) walked by one
pure function, `transition`, so every rule is visible in one place and testable as a table:

    discovered --adopt--> new --install--> installing --enroll--> enrolled
                                   ^                                   |
                                   +------ reinstall-requested <-------+  (reinstall)
    any state --retire--> retired --reinstall--> reinstall-requested

"Netboot once" (`boot_action`) is a function of the state alone: new, installing and
reinstall-requested machines get their install boot; enrolled, retired and discovered ones boot
from their local disk. A machine leaves the install states only through a valid enrollment
callback (bootsrv.machines.enrollment) or an admin command, so a finished install can never loop.

`MachineRegistry` is the small interface every caller uses (get / list / put with
compare-and-swap on `revision`); `MemoryRegistry` is the in-process version, and
bootsrv.machines.store.FileRegistry the one shared by a server pair through the store directory.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bootsrv.errors import Conflict, InvalidInput, NotFound
from bootsrv.values import normalize_mac

# ---------------------------------------------------------------------------------------------
# The model


class State(enum.StrEnum):
    NEW = "new"
    INSTALLING = "installing"
    ENROLLED = "enrolled"
    REINSTALL_REQUESTED = "reinstall-requested"
    RETIRED = "retired"
    DISCOVERED = "discovered"


class Event(enum.StrEnum):
    ADOPT = "adopt"  # an admin takes a discovered machine into service
    INSTALL = "install"  # the machine fetched its install boot (an enrollment token was issued)
    ENROLL = "enroll"  # the installer's callback was valid
    REINSTALL = "reinstall"  # an admin asks for a fresh install
    RETIRE = "retire"  # an admin takes the machine out of service


# (state, event) -> next state. Anything not listed is illegal. `INSTALL` from `installing` is
# allowed: an installer that restarts (power loss, a retried fetch) fetches its boot again.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.DISCOVERED, Event.ADOPT): State.NEW,
    (State.NEW, Event.INSTALL): State.INSTALLING,
    (State.INSTALLING, Event.INSTALL): State.INSTALLING,
    (State.REINSTALL_REQUESTED, Event.INSTALL): State.INSTALLING,
    (State.INSTALLING, Event.ENROLL): State.ENROLLED,
    (State.ENROLLED, Event.REINSTALL): State.REINSTALL_REQUESTED,
    (State.INSTALLING, Event.REINSTALL): State.REINSTALL_REQUESTED,
    (State.RETIRED, Event.REINSTALL): State.REINSTALL_REQUESTED,
    (State.DISCOVERED, Event.RETIRE): State.RETIRED,
    (State.NEW, Event.RETIRE): State.RETIRED,
    (State.INSTALLING, Event.RETIRE): State.RETIRED,
    (State.ENROLLED, Event.RETIRE): State.RETIRED,
    (State.REINSTALL_REQUESTED, Event.RETIRE): State.RETIRED,
}

# States whose machines get their install boot; every other state boots from local disk.
INSTALL_STATES = frozenset({State.NEW, State.INSTALLING, State.REINSTALL_REQUESTED})


class IllegalTransition(Conflict):
    """An event that the machine's current state does not allow (e.g. enroll twice)."""

    def __init__(self, mac: str, state: State, event: Event):
        self.mac, self.state, self.event = mac, state, event
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s is state)
        super().__init__(
            f"machine {mac}: cannot {event.value} a machine in state {state.value!r}"
            f" (allowed: {', '.join(allowed) or 'nothing'})"
        )


def next_state(mac: str, state: State, event: Event) -> State:
    """The state after `event`, or IllegalTransition."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(mac, state, event) from None


def boot_action(state: State) -> str:
    """Netboot once: "install" for a machine due for install, otherwise "local" (boot from disk)."""
    return "install" if state in INSTALL_STATES else "local"


def netboot(registry: MachineRegistry, mac: str) -> str | None:
    """What DHCP/TFTP/HTTP should boot for `mac`: "install", "local", or None for an unknown
    machine (the caller applies `boot.unknown_machines`). A read only: no token, no write."""
    machine = registry.get(mac)
    return None if machine is None else boot_action(machine.state)


class RegistryNetboot:
    """The registry as the DHCP decision reads it (bootsrv.dhcp.pxe.KnownMachines): `netboot`."""

    def __init__(self, registry: MachineRegistry):
        self.registry = registry

    def netboot(self, mac: str) -> str | None:
        return netboot(self.registry, mac)


@dataclass(frozen=True)
class Nic:
    name: str
    mac: str


@dataclass(frozen=True)
class Disk:
    name: str
    size_bytes: int


@dataclass(frozen=True)
class Facts:
    """What the installer reported at enrollment (validated by bootsrv.machines.enrollment.parse_facts)."""

    hostname: str
    cpus: int
    memory_mib: int
    nics: tuple[Nic, ...]
    disks: tuple[Disk, ...]
    hypervisor: str  # "xen" | "kvm"
    libvirt_uri: str


@dataclass(frozen=True)
class Token:
    """One enrollment token as stored: only its SHA-256, never the token itself."""

    digest: str  # hex sha256 of the token text
    issued: float
    expires: float
    used: bool = False


@dataclass(frozen=True)
class Machine:
    mac: str
    hostname: str
    state: State
    profile: str | None = None
    guid: str | None = None
    serial: str | None = None
    arch: str | None = None  # from DHCP option 93 (RFC 4578 2.1)
    vendor_class: str | None = None  # DHCP option 60, e.g. "PXEClient:Arch:00007:UNDI:003016"
    addresses: tuple[tuple[str, str], ...] = ()  # (network name, IPv4) sorted by network
    segment: str = ""
    comment: str = ""
    facts: Facts | None = None
    libvirt_uri: str | None = None
    drained: bool = False  # an enrolled hypervisor kept out of guest placement
    tokens: tuple[Token, ...] = ()
    created: float = 0.0
    updated: float = 0.0
    enrolled_at: float | None = None
    revision: int = 0  # bumped by every put; a stale writer gets Conflict (compare-and-swap)

    def __post_init__(self) -> None:
        # Construction is the validation point (h11 style): a Machine in hand is well-formed.
        if normalize_mac(self.mac) != self.mac:
            raise InvalidInput("mac", f"{self.mac!r} is not in normalized form {normalize_mac(self.mac)!r}")
        if not isinstance(self.state, State):
            raise InvalidInput("state", f"{self.state!r} is not a machine state")
        if self.profile is None and self.state in INSTALL_STATES:
            raise InvalidInput("profile", f"a machine in state {self.state.value!r} needs a profile")

    def address(self, network: str) -> str | None:
        return dict(self.addresses).get(network)

    def with_event(self, event: Event, now: float, **changes) -> Machine:
        """This machine after `event` (pure; nothing is stored)."""
        return dataclasses.replace(self, state=next_state(self.mac, self.state, event), updated=now, **changes)


# ---------------------------------------------------------------------------------------------
# The registry


class MachineRegistry(Protocol):
    def get(self, mac: str) -> Machine | None: ...

    def list(self) -> list[Machine]: ...

    def put(self, machine: Machine, expected: int | None) -> Machine:
        """Store `machine` if the stored revision is `expected` (None: no machine with that MAC
        may exist). Returns the stored machine with its revision bumped; Conflict otherwise."""
        ...

    def put_many(
        self, machines: Sequence[tuple[Machine, int | None]], removals: Sequence[tuple[str, int]] = ()
    ) -> Sequence[Machine]:
        """Several puts and removals (mac, expected revision) as one update, all or none: one
        write of the store however many machines (discovery records a batch of sightings so)."""
        ...

    def remove(self, mac: str, expected: int) -> None: ...


class StaleWrite(Conflict):
    def __init__(self, mac: str, expected: int | None, found: int | None):
        self.mac = mac
        if expected is None:
            rule = f"machine {mac} already exists"
        elif found is None:
            rule = f"machine {mac} was removed meanwhile"
        else:
            rule = f"machine {mac} changed meanwhile (revision {found}, expected {expected}); retry"
        super().__init__(rule)


def check_revision(mac: str, current: Machine | None, expected: int | None) -> None:
    found = current.revision if current is not None else None
    if found != expected:
        raise StaleWrite(mac, expected, found)


class MemoryRegistry:
    """The in-process registry: tests, and anything that needs no sharing."""

    def __init__(self, machines: Iterable[Machine] = ()):
        self._lock = threading.Lock()
        self._machines: dict[str, Machine] = {m.mac: m for m in machines}

    def get(self, mac: str) -> Machine | None:
        return self._machines.get(mac)

    def list(self) -> list[Machine]:
        return sorted(self._machines.values(), key=lambda m: m.mac)

    def put(self, machine: Machine, expected: int | None) -> Machine:
        return self.put_many([(machine, expected)])[0]

    def put_many(
        self, machines: Sequence[tuple[Machine, int | None]], removals: Sequence[tuple[str, int]] = ()
    ) -> Sequence[Machine]:
        with self._lock:
            stored, gone = apply_changes(self._machines, machines, removals)
            for machine in stored:
                self._machines[machine.mac] = machine
            for mac in gone:
                del self._machines[mac]
            return stored

    def remove(self, mac: str, expected: int) -> None:
        self.put_many([], [(mac, expected)])


def apply_changes(
    current: Mapping[str, Machine], machines: Sequence[tuple[Machine, int | None]], removals: Sequence[tuple[str, int]]
) -> tuple[list[Machine], list[str]]:
    """The machines to store (revisions bumped) and the MACs to delete for a put_many, after
    checking every expected revision against `current` first: all or nothing. Pure."""
    macs = [m.mac for m, _ in machines] + [mac for mac, _ in removals]
    if len(macs) != len(set(macs)):
        raise ValueError("put_many: a MAC appears twice in one update")
    for machine, expected in machines:
        check_revision(machine.mac, current.get(machine.mac), expected)
    for mac, expected in removals:
        check_revision(mac, current.get(mac), expected)
    stored = [dataclasses.replace(m, revision=(expected or 0) + 1) for m, expected in machines]
    return stored, [mac for mac, _ in removals]


def require(registry: MachineRegistry, mac: str) -> Machine:
    machine = registry.get(mac)
    if machine is None:
        raise NotFound(f"mac: no machine {mac} (see `bootsrv machine list`)")
    return machine


def update(registry: MachineRegistry, mac: str, change: Callable[[Machine], Machine], attempts: int = 50) -> Machine:
    """Read-modify-write with compare-and-swap: `change` is re-applied to fresh state on a collision.

    `change` must be a pure function of the machine it gets; it may raise to refuse the change.
    """
    for _ in range(attempts):
        current = require(registry, mac)
        try:
            return registry.put(change(current), current.revision)
        except StaleWrite:
            continue
    raise Conflict(f"machine {mac}: gave up after {attempts} concurrent modifications")


def find(registry: MachineRegistry, key: str) -> Machine:
    """A machine by MAC (any spelling) or by hostname; NotFound names what was looked for."""
    try:
        mac = normalize_mac(key)
    except InvalidInput:
        mac = None
    if mac is not None:
        return require(registry, mac)
    name = key.strip().lower().rstrip(".")
    if not name:
        raise InvalidInput("machine", "give a MAC address or a hostname")
    matches = [m for m in registry.list() if m.hostname == name or m.hostname.split(".")[0] == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(f"machine: no machine with MAC or hostname {key!r}")
    raise Conflict(f"machine: {key!r} names {len(matches)} machines; use the MAC")


# ---------------------------------------------------------------------------------------------
# Plain-data form (JSON file lines, API responses, `--json`)


def to_record(machine: Machine, secrets: bool = True) -> dict:
    """The machine as JSON-able data. `secrets=False` leaves out token digests (API, CLI output)."""
    data = dataclasses.asdict(machine)
    data["state"] = machine.state.value
    data["addresses"] = dict(machine.addresses)
    if not secrets:
        data["tokens"] = [{"issued": t.issued, "expires": t.expires, "used": t.used} for t in machine.tokens]
    return data


def from_record(data: dict) -> Machine:
    """Inverse of to_record; a record that does not fit raises InvalidInput naming the field."""
    try:
        facts = data.get("facts")
        return Machine(
            mac=data["mac"],
            hostname=data["hostname"],
            state=State(data["state"]),
            profile=data.get("profile"),
            guid=data.get("guid"),
            serial=data.get("serial"),
            arch=data.get("arch"),
            vendor_class=data.get("vendor_class"),
            addresses=tuple(sorted((str(k), str(v)) for k, v in data.get("addresses", {}).items())),
            segment=data.get("segment", ""),
            comment=data.get("comment", ""),
            facts=None
            if facts is None
            else Facts(
                hostname=facts["hostname"],
                cpus=int(facts["cpus"]),
                memory_mib=int(facts["memory_mib"]),
                nics=tuple(Nic(n["name"], n["mac"]) for n in facts["nics"]),
                disks=tuple(Disk(d["name"], int(d["size_bytes"])) for d in facts["disks"]),
                hypervisor=facts["hypervisor"],
                libvirt_uri=facts["libvirt_uri"],
            ),
            libvirt_uri=data.get("libvirt_uri"),
            drained=bool(data.get("drained", False)),
            tokens=tuple(
                Token(t["digest"], float(t["issued"]), float(t["expires"]), bool(t["used"]))
                for t in data.get("tokens", ())
            ),
            created=float(data.get("created", 0.0)),
            updated=float(data.get("updated", 0.0)),
            enrolled_at=data.get("enrolled_at"),
            revision=int(data.get("revision", 0)),
        )
    except KeyError as exc:
        raise InvalidInput(str(exc.args[0]), "required field is missing") from None
    except (TypeError, ValueError) as exc:
        raise InvalidInput("machine", f"record does not fit the model: {exc}") from None
