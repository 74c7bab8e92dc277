"""`bootsrv tftp ...`: fill the TFTP root from Debian's packages."""

from __future__ import annotations

from pathlib import Path

import click

from bootsrv.tftp.populate import populate


@click.group("tftp")
def tftp_group() -> None:
    """The TFTP root (first-stage boot loaders)."""


@tftp_group.command("populate")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="TFTP root to fill (default: boot.tftp_root of the config).",
)
@click.pass_context
def populate_cmd(ctx: click.Context, root: Path | None) -> None:
    """Copy iPXE (ipxe), shim (shim-signed) and GRUB (grub-efi-amd64-signed) into the TFTP root."""
    target = root or ctx.find_root().obj.config.boot.tftp_root
    for f, what in populate(Path(target)):
        click.echo(f"{what:9s} {target}/{f.name}  <- {f.source} ({f.package})")
