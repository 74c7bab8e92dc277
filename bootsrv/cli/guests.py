"""`bootsrv guest ...` and the original console scripts (domu-project, domu-clone, domu-init,
domu-assign-ip) with their original argument syntax: thin click commands over `Guests`.

    domu-project appl-1
    domu-clone masters/osol-0811@version-01 appl-1/vm-1
    domu-init pv fe-be odd 1024 1 appl-1/vm-1
    domu-assign-ip appl-1:vm-1 fe0 vm-host1
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path

import click

from bootsrv.cli.common import Context, Errors
from bootsrv.errors import InvalidInput, NotFound
from bootsrv.virt.guests import Boot, Guests
from bootsrv.virt.names import GuestRef, VersionRef


def _guests(ctx: click.Context) -> Guests:
    """The invocation's guest use cases; a domu-* script has no root group, so its Context is
    made here from its own --config."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = Context(root.params.get("config_path"))
        root.call_on_close(root.obj.close)
    return root.obj.wiring.guests


# -- the operations (shared by `bootsrv guest` and the domu-* scripts) --------------------------------


def do_project(ctx, name: str) -> None:
    directory = _guests(ctx).create_project(name)
    click.echo(f"project {name}: {directory}")


def do_clone(ctx, version: str, guest: str) -> None:
    ref, target = VersionRef.parse(version, "version"), GuestRef.parse(guest, "guest")
    vol = _guests(ctx).clone(ref, target)
    click.echo(f"{target.disk}: clone of {ref} ({vol.allocation} bytes used, {vol.capacity >> 20} MiB) at {vol.path}")


def do_init(
    ctx,
    kind,
    layout,
    segment,
    memory,
    vcpus,
    guest,
    dry_run=False,
    kernel=None,
    initrd=None,
    cmdline="",
    console_log=None,
) -> None:
    memory, vcpus = _int(memory, "memory"), _int(vcpus, "vcpus")
    ref = GuestRef.parse(guest, "guest")
    g = _guests(ctx)
    boot = Boot(kernel, initrd, cmdline) if kernel else None
    if dry_run:
        placement, spec = g.plan(kind, layout, segment, memory, vcpus, ref, boot)
        click.echo(f"placement of {ref.domain} ({memory} MiB, segment {segment}):")
        click.echo(placement.explain())
        if placement.chosen is None:
            click.echo("-> no hypervisor has room; nothing would be defined")
        else:
            nics = ", ".join(f"{n.name} on {n.network} ({n.attach} {n.source})" for n in spec.nics)
            click.echo(f"would define {ref.domain} on {placement.chosen.name}: {kind}, {nics}")
        return
    host, facts, placement = g.init(kind, layout, segment, memory, vcpus, ref, boot, console_log)
    click.echo(placement.explain())
    click.echo(f"defined {ref.domain} on {host.name} ({host.uri})")
    for nic in facts.nics:
        click.echo(f"  {nic.name} {nic.mac} -> {nic.network}")


def do_assign_ip(ctx, guest, nic, hostname, address=None) -> None:
    b = _guests(ctx).assign_ip(GuestRef.parse(guest, "guest"), nic, hostname, address)
    click.echo(f"{guest} {nic} {b.mac} -> {b.ip} {b.hostname} (network {b.network}, MANUAL+PERMANENT)")


_NAME = click.argument("name")
_GUEST = click.argument("guest", metavar="PROJECT:VM")


def _int(value: str, field: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not an integer") from None


INIT_ARGS = [
    click.argument("kind", metavar="pv|hvm"),
    click.argument("layout", metavar="fe|be|fe-be"),
    click.argument("segment"),
    click.argument("memory", metavar="MEMORY_MIB"),
    click.argument("vcpus", metavar="VCPUS"),
    click.argument("guest", metavar="PROJECT/VM"),
    click.option("--dry-run", is_flag=True, help="Show the placement and its reasons; define nothing."),
    click.option("--kernel", help="Direct kernel boot: kernel path on the hypervisor."),
    click.option("--initrd", help="Direct kernel boot: initrd path on the hypervisor."),
    click.option("--cmdline", default="", help="Direct kernel boot: kernel command line."),
    click.option("--console-log", help="hvm: keep the serial console output in this file (virtlogd)."),
]


def _apply(decorators, fn):
    for d in reversed(decorators):
        fn = d(fn)
    return fn


# -- bootsrv guest ... ----------------------------------------------------------------------------


@click.group("guest")
def guest() -> None:
    """Guests on the hypervisor pool: projects, images, clones, domains, addresses (docs/guests.md)."""


@guest.command("project")
@_NAME
@click.pass_context
def project_cmd(ctx, name):
    """Create project NAME (a storage pool on the shared storage, defined on every hypervisor)."""
    do_project(ctx, name)


@guest.command("clone")
@click.argument("version", metavar="masters/IMAGE@VERSION")
@click.argument("guest", metavar="PROJECT/VM")
@click.pass_context
def clone_cmd(ctx, version, guest):
    """Clone a frozen image version into PROJECT/VM (a qcow2 overlay: ~0 bytes until written)."""
    do_clone(ctx, version, guest)


@click.pass_context
def _init(ctx, **kw):
    """Define PROJECT/VM from templates/domains on the hypervisor placement chooses."""
    do_init(ctx, **kw)


init_cmd = guest.command("init")(_apply(INIT_ARGS, _init))


@guest.command("assign-ip")
@_GUEST
@click.argument("nic", metavar="fe0|be0")
@click.argument("hostname")
@click.argument("address", required=False)
@click.pass_context
def assign_ip_cmd(ctx, guest, nic, hostname, address):
    """Bind the NIC's MAC to ADDRESS (default: the next free one) and HOSTNAME in the lease store."""
    do_assign_ip(ctx, guest, nic, hostname, address)


@guest.command("start")
@_GUEST
@click.pass_context
def start_cmd(ctx, guest):
    """Start the guest."""
    found = _guests(ctx).control(GuestRef.parse(guest), "start")
    click.echo(f"started {guest} on {found.host.name}")


@guest.command("stop")
@_GUEST
@click.option("--force", is_flag=True, help="Power off instead of an ACPI shutdown request.")
@click.pass_context
def stop_cmd(ctx, guest, force):
    """Ask the guest to shut down (ACPI), or power it off with --force."""
    found = _guests(ctx).control(GuestRef.parse(guest), "destroy" if force else "shutdown")
    click.echo(f"{'powered off' if force else 'shutdown requested for'} {guest} on {found.host.name}")


@guest.command("console")
@_GUEST
@click.pass_context
def console_cmd(ctx, guest):
    """Attach to the guest's serial console (virsh console; leave with Ctrl-]) ."""
    found = _guests(ctx).locate(GuestRef.parse(guest))
    virsh = shutil.which("virsh")
    if virsh is None:
        raise NotFound("virsh: not installed (Debian package libvirt-clients)")
    os.execv(virsh, [virsh, "-c", found.host.uri, "console", found.domain.facts.name])


@guest.command("list")
@click.pass_context
def list_cmd(ctx):
    """Every guest on every hypervisor of the pool, with its NICs."""
    from bootsrv.cli.machines import table

    rows = []
    for host, dom, error in _guests(ctx).all():
        if dom is None:
            rows.append((host.name, host.segment, "-", f"unreachable: {error}", "", "", ""))
            continue
        f = dom.facts
        nics = " ".join(f"{n.name}={n.mac}" for n in f.nics) or " ".join(i.mac for i in f.interfaces)
        rows.append((host.name, host.segment, f.name, dom.state, f.memory_mib, f.vcpus, nics))
    click.echo(table(["hypervisor", "segment", "guest", "state", "mib", "vcpus", "nics"], rows))


@guest.command("destroy")
@_GUEST
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def destroy_cmd(ctx, guest, yes):
    """Remove the guest: power off, unbind its addresses, undefine, delete its clone."""
    g = _guests(ctx)
    ref = GuestRef.parse(guest)
    found = g.find(ref)
    what = [
        f"domain {ref.domain} on {found.host.name}" if found else f"(no domain {ref.domain})",
        *(f"bindings of {n.name} {n.mac}" for n in (found.domain.facts.nics if found else ())),
        f"clone {ref.disk}",
    ]
    if not yes and not click.confirm(f"Remove {', '.join(what)}?"):
        raise click.Abort()
    for line in g.destroy(ref):
        click.echo(line)


@guest.command("migrate")
@_GUEST
@click.argument("destination")
@click.option("--dry-run", is_flag=True, help="Run the pre-flight checks only.")
@click.option(
    "--unsafe",
    is_flag=True,
    help="Let libvirt migrate although it cannot tell the disk's filesystem is shared (lab only).",
)
@click.pass_context
def migrate_cmd(ctx, guest, destination, dry_run, unsafe):
    """Live-migrate a running guest (or move a stopped one) to DESTINATION, after pre-flight checks."""
    from bootsrv.virt.guests import MigrationRefused

    g = _guests(ctx)
    ref = GuestRef.parse(guest)
    if dry_run:
        found, _, _, problems = g.preflight(ref, destination)
        if problems:
            raise MigrationRefused(ref, destination, problems)
        click.echo(f"{ref.domain}: {found.host.name} -> {destination}: pre-flight checks pass")
        return
    import time

    start = time.monotonic()
    g.migrate(ref, destination, unsafe=unsafe)
    click.echo(f"migrated {ref.domain} to {destination} in {time.monotonic() - start:.1f} s")


@guest.group("image")
def image_group():
    """Master images in project `masters` and their frozen versions."""


@image_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("name")
@click.pass_context
def image_import(ctx, file, name):
    """Import FILE (qcow2 or raw) as master image NAME, with a progress bar."""
    with click.progressbar(
        length=max(1, file.stat().st_size if file.is_file() else 1), label=f"import {name}", file=sys.stderr
    ) as bar:
        last = [0]

        def progress(done, total):
            bar.update(done - last[0])
            last[0] = done

        vol = _guests(ctx).import_image(name, file, progress)
    click.echo(f"masters/{vol.name}: {vol.format}, {vol.capacity >> 20} MiB")


@image_group.command("freeze")
@click.argument("image", metavar="IMAGE@VERSION")
@click.pass_context
def image_freeze(ctx, image):
    """Freeze the image as it is now into an immutable version IMAGE@VERSION."""
    ref = VersionRef.parse(image, "version")
    vol = _guests(ctx).freeze(ref.image, ref.version)
    click.echo(f"{ref}: frozen ({vol.path}, read-only)")


@image_group.command("list")
@click.pass_context
def image_list(ctx):
    """Master images and their frozen versions."""
    for img in _guests(ctx).images():
        click.echo(f"{img.volume.name}  {img.volume.format}  {img.volume.capacity >> 20} MiB")
        for v in img.versions:
            click.echo(f"  @{v.name.split('@', 1)[1]}  {v.allocation >> 20} MiB used")


# -- console scripts ------------------------------------------------------------------------------


class Script(Errors, click.Command):
    """A standalone command: --config like bootsrv, and `error: field: rule` instead of a traceback."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.params.insert(
            0,
            click.Option(
                ["--config", "-c", "config_path"], metavar="FILE", envvar="BOOTSRV_CONFIG", help="Site config (TOML)."
            ),
        )
        self.context_settings.setdefault("help_option_names", ["-h", "--help"])


def _script(fn, decorators, name):
    @functools.wraps(fn)
    def callback(config_path=None, **kw):
        return fn(click.get_current_context(), **kw)

    return click.command(name, cls=Script)(_apply(decorators, callback))


domu_project = _script(do_project, [_NAME], "domu-project")
domu_clone = _script(
    do_clone,
    [click.argument("version", metavar="masters/IMAGE@VERSION"), click.argument("guest", metavar="PROJECT/VM")],
    "domu-clone",
)
domu_init = _script(do_init, INIT_ARGS, "domu-init")
domu_assign_ip = _script(
    do_assign_ip,
    [
        _GUEST,
        click.argument("nic", metavar="fe0|be0"),
        click.argument("hostname"),
        click.argument("address", required=False),
    ],
    "domu-assign-ip",
)
