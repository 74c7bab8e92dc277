"""`bootsrv profile ...`: list, show and preview install profiles; put the installer in place.

    bootsrv profile list
    bootsrv profile show PROFILE
    bootsrv profile render PROFILE --mac MAC [--hostname H] [--file ipxe|pxelinux|grub|<answer file>]
    bootsrv profile check
    bootsrv profile fetch-installer [--source DIR]

`render` shows what a machine would get, without touching the registry: no token is issued (a
placeholder stands where the token goes) and no state changes. A known MAC's host name and
addresses are used; otherwise --hostname (default node-<mac>).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from bootsrv.app.wiring import Wiring
from bootsrv.cli.common import table, wiring_of
from bootsrv.errors import InvalidInput, NotFound
from bootsrv.machines.model import Machine, State
from bootsrv.machines.plan import BOOT_FORMATS, PREVIEW_TOKEN, PlanBuilder
from bootsrv.profiles.render import Renderer
from bootsrv.values import normalize_hostname, normalize_mac

# Debian's debian-installer-12-netboot-amd64 package: the netboot installer kernel and initrd.
DI_SOURCE = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")
DI_FILES = ("linux", "initrd.gz")
DI_DEST = "installers/debian12/amd64"  # under boot.files_root, as the debian12-* profiles name it


@click.group("profile")
def profile_group() -> None:
    """Install profiles (profiles/*.toml, templates/)."""


@profile_group.command("list")
@click.pass_context
def profile_list(ctx: click.Context) -> None:
    """Every profile of the catalog (loading it validates all of them)."""
    catalog = wiring_of(ctx).profiles
    rows = [(p.name, p.os, p.hypervisor, ", ".join(p.answer_files), p.description) for p in catalog]
    click.echo(table(["name", "os", "hypervisor", "answer files", "description"], rows))


@profile_group.command("show")
@click.argument("profile")
@click.pass_context
def profile_show(ctx: click.Context, profile: str) -> None:
    """One profile: boot files (and whether they are in place), answer files, settings, site."""
    w = wiring_of(ctx)
    p = w.profiles.get(profile)
    root = w.config.boot.files_root
    fields = [
        ("name", p.name),
        ("file", p.source),
        ("description", p.description),
        ("os", p.os),
        ("hypervisor", p.hypervisor),
    ]
    for key in ("kernel", "initrd"):
        value = getattr(p.boot, key)
        where = "" if "://" in value else (" (present)" if (root / value).is_file() else f" (missing under {root})")
        fields.append((key, value + where))
    fields += [("answer arg", p.boot.answer_arg), ("boot args", " ".join(p.boot.args))]
    fields += [(f"answer {name}", template) for name, template in p.answer_files.items()]
    fields += [(f"settings.{k}", v) for k, v in sorted(p.settings.items())]
    fields += [(f"site.{k}", v) for k, v in p.site.model_dump().items() if k != "nics"]
    fields += [(f"site.nics[{i}]", f"{n.name} ({n.role}, network {n.network})") for i, n in enumerate(p.site.nics)]
    width = max(len(name) for name, _ in fields) + 2
    for name, value in fields:
        click.echo(f"{name + ':':{width}}{value}")


def _preview_machine(w: Wiring, profile: str, mac: str, hostname: str | None) -> Machine:
    known = None
    if w.config.store.directory.is_dir():
        known = w.machines.get(mac)
    if known is not None and hostname is None:
        return Machine(
            mac=mac,
            hostname=known.hostname or "node-" + mac.replace(":", ""),
            state=State.INSTALLING,
            profile=profile,
            addresses=known.addresses,
            arch=known.arch,
        )
    name = normalize_hostname(hostname, "hostname") if hostname else "node-" + mac.replace(":", "")
    return Machine(mac=mac, hostname=name, state=State.INSTALLING, profile=profile)


@profile_group.command("render")
@click.argument("profile")
@click.option("--mac", required=True, help="The machine's MAC (any usual spelling).")
@click.option("--hostname", help="Host name for an unknown MAC (default: the registry's, else node-<mac>).")
@click.option(
    "--file",
    "name",
    default="ipxe",
    show_default=True,
    help=f"Boot config ({', '.join(BOOT_FORMATS)}) or one of the profile's answer files.",
)
@click.pass_context
def profile_render(ctx: click.Context, profile: str, mac: str, hostname: str | None, name: str) -> None:
    """Print what MAC would get with PROFILE (no token is issued; nothing is written)."""
    w = wiring_of(ctx)
    p = w.profiles.get(profile)
    mac = normalize_mac(mac, "--mac")
    if name not in BOOT_FORMATS and name not in p.answer_files:
        raise InvalidInput("--file", f"{name!r} is not one of {', '.join([*BOOT_FORMATS, *p.answer_files])}")
    build = PlanBuilder(w.profiles, Renderer(w.profiles.templates_dir), w.config)
    plan = build.build(_preview_machine(w, profile, mac, hostname), PREVIEW_TOKEN)
    text = build.boot_script(name, plan, mac) if name in BOOT_FORMATS else build.answer(plan, name)
    click.echo(text, nl=not text.endswith("\n"))


@profile_group.command("check")
@click.pass_context
def profile_check(ctx: click.Context) -> None:
    """Render every profile's boot configs and answer files for a sample machine (no token, no
    write); the first failure is reported with profile, template and line (exit 2)."""
    w = wiring_of(ctx)
    build = PlanBuilder(w.profiles, Renderer(w.profiles.templates_dir), w.config)
    mac = "52:54:00:00:00:01"
    for fmt in BOOT_FORMATS:
        build.boot_script(fmt, None, mac, "check")
    for p in w.profiles:
        plan = build.build(Machine(mac=mac, hostname="check", state=State.INSTALLING, profile=p.name), PREVIEW_TOKEN)
        for fmt in BOOT_FORMATS:
            build.boot_script(fmt, plan, mac)
        for name in p.answer_files:
            build.answer(plan, name)
        click.echo(f"{p.name}: ok ({len(BOOT_FORMATS)} boot configs, {len(p.answer_files)} answer files)")


def _copy(source: Path, dest: Path) -> bool:
    """Copy atomically (a temp file renamed into place: a client never reads half a kernel);
    False when `dest` already has the same size and modification time."""
    st = source.stat()
    if dest.is_file():
        have = dest.stat()
        if have.st_size == st.st_size and int(have.st_mtime) == int(st.st_mtime):
            return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copy2(source, tmp)  # keeps the mtime: Last-Modified/ETag follow the package's file
    os.replace(tmp, dest)
    return True


@profile_group.command("fetch-installer")
@click.option(
    "--source",
    type=click.Path(file_okay=False, path_type=Path),
    default=DI_SOURCE,
    show_default=True,
    help="Where debian-installer-12-netboot-amd64 put the netboot kernel and initrd.",
)
@click.pass_context
def fetch_installer(ctx: click.Context, source: Path) -> None:
    """Copy Debian's netboot installer (kernel + initrd) under boot.files_root/installers/debian12/amd64/.

    Copies, not symlinks: /files/ serves nothing that resolves outside boot.files_root. Run it
    again after the package is upgraded (the installer must match the mirror's kernel modules).
    """
    w = wiring_of(ctx)
    missing = [name for name in DI_FILES if not (source / name).is_file()]
    if missing:
        raise NotFound(f"--source: no {', '.join(missing)} in {source} (apt install debian-installer-12-netboot-amd64)")
    dest_dir = w.config.boot.files_root / DI_DEST
    for name in DI_FILES:
        changed = _copy(source / name, dest_dir / name)
        size = (dest_dir / name).stat().st_size
        click.echo(f"{'copied' if changed else 'up to date'}: {dest_dir / name} ({size} bytes) from {source / name}")
