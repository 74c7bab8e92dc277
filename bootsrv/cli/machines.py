"""`bootsrv machine ...` and `bootsrv hypervisor ...`: thin click commands over the machine use cases.

Every listing prints a table, or JSON with `--json` (the same records as the admin API). Errors
are BootsrvErrors, which the main group turns into `error: <field>: <rule>` and an exit code.
"""

from __future__ import annotations

import time

import click

from bootsrv.cli.common import age, emit_json, gib, table, wiring_of
from bootsrv.machines import admin as machines_admin
from bootsrv.machines import pool as machines_pool
from bootsrv.machines.model import Machine, State, find, to_record

STATES = [s.value for s in State]


def _show_machine(machine: Machine, as_json: bool) -> None:
    if as_json:
        emit_json(to_record(machine, secrets=False))
        return
    now = time.time()
    fields = [
        ("mac", machine.mac),
        ("hostname", machine.hostname),
        ("state", machine.state.value),
        ("profile", machine.profile),
        ("segment", machine.segment),
        ("addresses", ", ".join(f"{n}={ip}" for n, ip in machine.addresses)),
        ("guid", machine.guid),
        ("serial", machine.serial),
        ("arch", machine.arch),
        ("vendor class", machine.vendor_class),
        ("libvirt uri", machine.libvirt_uri),
        ("drained", "yes" if machine.drained else None),
        ("comment", machine.comment),
        ("created", age(machine.created, now)),
        ("updated", age(machine.updated, now)),
        ("enrolled", age(machine.enrolled_at, now)),
        (
            "tokens",
            f"{sum(1 for t in machine.tokens if not t.used and t.expires > now)} live" if machine.tokens else None,
        ),
    ]
    if machine.facts:
        f = machine.facts
        fields += [
            ("cpus", f.cpus),
            ("memory", gib(f.memory_mib)),
            ("hypervisor", f.hypervisor),
            ("nics", ", ".join(f"{n.name}={n.mac}" for n in f.nics)),
            ("disks", ", ".join(f"{d.name}={d.size_bytes / 1e9:.0f}GB" for d in f.disks)),
        ]
    for name, value in fields:
        if value not in (None, ""):
            click.echo(f"{name + ':':14}{value}")


# ---------------------------------------------------------------------------------------------
# bootsrv machine


@click.group("machine")
def machine_group() -> None:
    """Bare-metal machines: register, list, reinstall, retire, adopt discovered ones."""


_address_option = click.option(
    "--address",
    "addresses",
    multiple=True,
    metavar="NETWORK=IP",
    help="Fixed address on a configured network (repeatable), bound MANUAL+PERMANENT in the lease store.",
)


@machine_group.command("add")
@click.argument("mac")
@click.option("--hostname", required=True)
@click.option("--profile", required=True, help="Install profile (see `bootsrv profile list`).")
@_address_option
@click.option("--guid", help="SMBIOS UUID the firmware sends in DHCP option 97.")
@click.option("--serial")
@click.option("--segment", help="Pair segment; default: that of the machine's networks.")
@click.option("--comment", default="")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def machine_add(ctx, mac, hostname, profile, addresses, guid, serial, segment, comment, as_json):
    """Register MAC for install: it gets PROFILE at its next netboot, once."""
    w = wiring_of(ctx)
    machine = machines_admin.add(
        w.machines,
        w.address_book,
        w.config.networks,
        mac=mac,
        hostname=hostname,
        profile=profile,
        now=w.clock(),
        addresses=machines_admin.parse_address_options(addresses),
        guid=guid,
        serial=serial,
        segment=segment,
        comment=comment,
        profiles=w.known_profiles(),
    )
    _done(machine, as_json, "added")


@machine_group.command("adopt")
@click.argument("mac")
@click.option("--hostname", required=True)
@click.option("--profile", required=True)
@_address_option
@click.option("--segment")
@click.option("--comment", default="")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def machine_adopt(ctx, mac, hostname, profile, addresses, segment, comment, as_json):
    """Take a discovered MAC into service with PROFILE (it installs at its next netboot)."""
    w = wiring_of(ctx)
    machine = machines_admin.adopt(
        w.machines,
        w.address_book,
        w.config.networks,
        mac=mac,
        hostname=hostname,
        profile=profile,
        now=w.clock(),
        addresses=machines_admin.parse_address_options(addresses),
        segment=segment,
        comment=comment,
        profiles=w.known_profiles(),
    )
    _done(machine, as_json, "adopted")


@machine_group.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only machines in this state.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def machine_list(ctx, state, as_json):
    """All machines, by MAC."""
    machines = [m for m in wiring_of(ctx).machines.list() if state is None or m.state.value == state]
    if as_json:
        emit_json([to_record(m, secrets=False) for m in machines])
        return
    now = time.time()
    rows = [
        (
            m.mac,
            m.hostname,
            m.state.value,
            m.profile,
            m.segment,
            " ".join(ip for _, ip in m.addresses),
            m.arch,
            age(m.updated, now),
        )
        for m in machines
    ]
    click.echo(table(["mac", "hostname", "state", "profile", "segment", "addresses", "arch", "updated"], rows))


@machine_group.command("show")
@click.argument("machine")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def machine_show(ctx, machine, as_json):
    """One machine by MAC or hostname."""
    _show_machine(find(wiring_of(ctx).machines, machine), as_json)


@machine_group.command("reinstall")
@click.argument("machine")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def machine_reinstall(ctx, machine, as_json):
    """Install MACHINE again at its next netboot (its old enrollment tokens stop working)."""
    w = wiring_of(ctx)
    _done(
        machines_admin.reinstall(w.machines, find(w.machines, machine).mac, w.clock()),
        as_json,
        "reinstall requested for",
    )


@machine_group.command("retire")
@click.argument("machine")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def machine_retire(ctx, machine, as_json):
    """Take MACHINE out of service: it boots from disk and leaves the pool."""
    w = wiring_of(ctx)
    _done(machines_admin.retire(w.machines, find(w.machines, machine).mac, w.clock()), as_json, "retired")


def _done(machine: Machine, as_json: bool, verb: str) -> None:
    if as_json:
        emit_json(to_record(machine, secrets=False))
    else:
        click.echo(f"{verb} {machine.mac} ({machine.hostname or 'no hostname'}): state {machine.state.value}")


# ---------------------------------------------------------------------------------------------
# bootsrv hypervisor


@click.group("hypervisor")
def hypervisor_group() -> None:
    """The hypervisor pool: enrolled machines with their capacity and libvirt URI."""


@hypervisor_group.command("list")
@click.option("--all", "include_drained", is_flag=True, help="Include drained hypervisors.")
@click.option("--segment", help="Only this segment.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hypervisor_list(ctx, include_drained, segment, as_json):
    """Enrolled hypervisors, by segment and name (drained ones only with --all)."""
    w = wiring_of(ctx)
    hosts = machines_pool.pool(w.machines, include_drained=include_drained)
    if segment is not None:
        hosts = [h for h in hosts if h.segment == segment]
    if as_json:
        emit_json({"hypervisors": [h.to_dict() for h in hosts], "totals": machines_pool.totals(hosts)})
        return
    rows = [(h.name, h.segment, h.state, h.hypervisor, h.cpus, gib(h.memory_mib), h.libvirt_uri) for h in hosts]
    click.echo(table(["name", "segment", "state", "type", "cpus", "memory", "libvirt uri"], rows))
    t = machines_pool.totals(hosts)
    click.echo(
        f"{t['hypervisors']} hypervisors ({t['active']} active), {t['cpus']} cpus, {gib(t['memory_mib'])} memory"
    )


@hypervisor_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hypervisor_show(ctx, name, as_json):
    """One hypervisor by name or MAC."""
    w = wiring_of(ctx)
    host = machines_pool.hypervisor(w.machines, name)
    if as_json:
        emit_json(host.to_dict())
        return
    _show_machine(find(w.machines, host.mac), False)
    click.echo(f"{'pool:':14}{host.state}")


@hypervisor_group.command("drain")
@click.argument("name")
@click.pass_context
def hypervisor_drain(ctx, name):
    """Keep NAME out of guest placement (its guests keep running)."""
    w = wiring_of(ctx)
    host = machines_pool.drain(w.machines, name, w.clock())
    click.echo(f"drained {host.name}: no new guests are placed on it")


@hypervisor_group.command("undrain")
@click.argument("name")
@click.pass_context
def hypervisor_undrain(ctx, name):
    """Put NAME back into guest placement."""
    w = wiring_of(ctx)
    host = machines_pool.drain(w.machines, name, w.clock(), drained=False)
    click.echo(f"{host.name} is active again")


@hypervisor_group.command("retire")
@click.argument("name")
@click.pass_context
def hypervisor_retire(ctx, name):
    """Remove NAME from the pool for good (the machine is retired; reinstall brings it back)."""
    w = wiring_of(ctx)
    host = machines_pool.hypervisor(w.machines, name)
    machines_admin.retire(w.machines, host.mac, w.clock())
    click.echo(f"retired {host.name} ({host.mac})")
