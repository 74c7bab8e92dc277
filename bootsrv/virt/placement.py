"""Placement: which hypervisor gets a new guest (pure, explainable).

The original site filled one hypervisor with 4-6 guests before it used the next, so that whole
hypervisors stay free for maintenance and new projects. The rule here, in order:

1. only hypervisors of the requested segment (their Public/Backend bridges are that segment's);
2. only hypervisors that accept guests (enrolled, not drained or retired) and answered libvirt;
3. only those below `guests_per_host` guests and with the guest's memory free after keeping
   `reserve_mib` for the hypervisor itself (dom0 / the host OS);
4. of those, the FULLEST one (most guests), so one host fills up before the next; ties go to the
   one with the least free memory (tightest fit), then by name, so the choice is deterministic.

`place` returns the choice and one line of reason per hypervisor; `--dry-run` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bootsrv.errors import Conflict

DEFAULT_GUESTS_PER_HOST = 5  # the original site ran 4-6


@dataclass(frozen=True)
class HypervisorInfo:
    """What placement and the commands need to know about one pool member."""

    name: str
    segment: str
    uri: str  # libvirt URI, e.g. xen+ssh://root@hv1/ or qemu+ssh://root@hv1/system
    cpus: int
    memory_mib: int
    state: str = "active"  # "active" accepts guests; anything else ("drained", "retired", ...) does not
    address: str = ""  # where live-migration traffic to it goes ("" = its host name)

    @property
    def accepts_guests(self) -> bool:
        return self.state == "active"


@dataclass(frozen=True)
class HostLoad:
    """A hypervisor and what already runs on it (from its libvirt), or why it could not be asked."""

    host: HypervisorInfo
    guests: int = 0
    memory_used_mib: int = 0  # sum of its guests' memory
    error: str = ""  # non-empty: libvirt could not be reached


@dataclass(frozen=True)
class Candidate:
    host: str
    eligible: bool
    reason: str


@dataclass(frozen=True)
class Placement:
    chosen: HypervisorInfo | None
    candidates: tuple[Candidate, ...]

    def explain(self) -> str:
        lines = [
            f"{'->' if self.chosen and c.host == self.chosen.name else '  '} {c.host}: {c.reason}"
            for c in self.candidates
        ]
        return "\n".join(lines) if lines else "   (no hypervisors in the pool)"


class NoRoom(Conflict):
    def __init__(self, segment: str, placement: Placement):
        self.placement = placement
        super().__init__(
            f"segment: no hypervisor of segment {segment!r} has room for this guest\n{placement.explain()}"
        )


def place(
    segment: str,
    memory_mib: int,
    loads: list[HostLoad],
    guests_per_host: int = DEFAULT_GUESTS_PER_HOST,
    reserve_mib: int = 1024,
) -> Placement:
    candidates: list[Candidate] = []
    fits: list[tuple[int, int, str, HostLoad]] = []
    for load in sorted(loads, key=lambda item: item.host.name):
        host = load.host
        free = host.memory_mib - reserve_mib - load.memory_used_mib
        if host.segment != segment:
            reason = f"segment {host.segment!r}, not {segment!r}"
        elif not host.accepts_guests:
            reason = f"state {host.state!r} takes no new guests"
        elif load.error:
            reason = f"libvirt unreachable: {load.error}"
        elif load.guests >= guests_per_host:
            reason = f"full: {load.guests} of {guests_per_host} guests"
        elif free < memory_mib:
            reason = (
                f"{free} MiB free ({host.memory_mib} - {reserve_mib} reserved - {load.memory_used_mib} used),"
                f" guest needs {memory_mib} MiB"
            )
        else:
            fits.append((-load.guests, free, host.name, load))
            candidates.append(Candidate(host.name, True, f"{load.guests} of {guests_per_host} guests, {free} MiB free"))
            continue
        candidates.append(Candidate(host.name, False, reason))
    if not fits:
        return Placement(None, tuple(candidates))
    fits.sort()
    chosen = fits[0][3].host
    final = []
    for c in candidates:
        if c.host == chosen.name:
            c = Candidate(c.host, True, c.reason + " -> chosen: fullest hypervisor with room (fill before the next)")
        elif c.eligible:
            c = Candidate(c.host, True, c.reason + " (has room; used once fuller ones are full)")
        final.append(c)
    return Placement(chosen, tuple(final))


def require(segment: str, placement: Placement) -> HypervisorInfo:
    if placement.chosen is None:
        raise NoRoom(segment, placement)
    return placement.chosen
