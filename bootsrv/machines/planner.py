"""Netboot once, as the boot chain sees it: install or local boot for a MAC, from the registry.

`RegistryPlanner.plan(mac)` is the Planner of bootsrv.machines.plan over the machine registry:
None (boot from local disk) unless the machine is due for install; for a machine due for
install it moves the machine to "installing", issues a one-time enrollment token (bootsrv.machines.enrollment)
and returns the install plan carrying it, for the boot script and the answer file. The planner
holds this process's `TokenKey`, so every boot it serves during one install carries the same
token and only the first one writes.

Whether the client asking may have the install boot at all (its address) is decided before the
planner is asked (bootsrv.machines.plan.boot_decision, bootsrv.machines.binding).

It is called where a plan is rendered (the iPXE script, the answer file), never per DHCP packet:
the DHCP engine asks `bootsrv.machines.model.netboot`, a read. An unknown MAC gets None here; the
`boot.unknown_machines` policy and discovery are bootsrv.machines.plan.boot_decision's and
bootsrv.machines.discovery's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bootsrv.machines.enrollment import TokenKey, install_token
from bootsrv.machines.model import IllegalTransition, Machine, MachineRegistry, boot_action
from bootsrv.values import normalize_mac


@dataclass(frozen=True)
class Install:
    """One install boot granted: the machine (now "installing") and its token, in clear, once."""

    machine: Machine
    token: str


def decide(registry: MachineRegistry, mac: str, now: float, ttl: int, key: TokenKey | None = None) -> Install | None:
    """None for local boot; otherwise the machine moved to "installing" with this install's
    token (the one `key` issued before, else a new one; a fresh key each call without one)."""
    machine = registry.get(normalize_mac(mac))
    if machine is None or boot_action(machine.state) != "install":
        return None
    try:
        installing, token = install_token(registry, machine.mac, now, ttl, key or TokenKey())
    except IllegalTransition:
        return None  # enrolled or retired since the read above (by the peer): boot locally
    return Install(installing, token)


class RegistryPlanner:
    def __init__(
        self,
        registry: MachineRegistry,
        clock: Callable[[], float],
        token_ttl: int,
        to_plan: Callable[[Install], object] | None = None,
        key: TokenKey | None = None,
    ):
        self.registry = registry
        self.clock = clock
        self.token_ttl = token_ttl
        self.to_plan = to_plan or (lambda install: install)
        self.key = key or TokenKey()  # one per process: the Wiring builds one planner

    def plan(self, mac: str):
        install = decide(self.registry, mac, self.clock(), self.token_ttl, self.key)
        return None if install is None else self.to_plan(install)
