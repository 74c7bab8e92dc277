"""`bootsrv` command line: thin click commands over config, runtime and the areas' services.

Every BootsrvError becomes one line on stderr ("error: <file>: <key>: <rule>") and its exit code;
no traceback for a user mistake.
"""

from __future__ import annotations

import functools
import sys

import click

from bootsrv import __version__, config as configmod
from bootsrv.errors import BootsrvError


class Context:
    """What every command gets as `ctx.obj`: the config, loaded on first use."""

    def __init__(self, config_path: str | None):
        self.config_path = config_path

    @functools.cached_property
    def config(self) -> configmod.Config:
        return configmod.load(self.config_path)


class Group(click.Group):
    """Turns a BootsrvError raised by any command into `error: ...` and the error's exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BootsrvError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "-c", "config_path", metavar="FILE", envvar=configmod.ENV_CONFIG,
              help="Site config (TOML), merged over the embedded default. Env: BOOTSRV_CONFIG.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", default="kv", show_default=True, type=click.Choice(["kv", "json"]),
              help="One line per event: key=value or JSON.")
@click.version_option(__version__, prog_name="bootsrv")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, log_level: str, log_format: str) -> None:
    """Network-boot and hypervisor-bootstrap server."""
    from bootsrv import log

    log.setup(log_level, log_format)
    ctx.obj = Context(config_path)


@main.command()
@click.pass_obj
def serve(obj: Context) -> None:
    """Run every service the config enables, until SIGTERM or SIGINT."""
    from bootsrv import runtime

    runtime.run(obj.config)


@main.command()
def demo() -> None:
    """Run the lab demo: bootsrv serving its own namespace segment (needs root)."""
    from bootsrv import demo as demomod

    sys.exit(demomod.main())


@main.group("config")
def config_group() -> None:
    """Validate and show configuration."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def config_check(file: str) -> None:
    """Validate FILE (merged over the embedded default); exit 2 with the key and rule if invalid."""
    cfg = configmod.load(file)
    click.echo(f"{file}: ok ({len(cfg.networks)} networks, server {cfg.server.name})")


@config_group.command("show")
@click.option("--default", "embedded", is_flag=True, help="Show the embedded default, not the effective config.")
@click.pass_obj
def config_show(obj: Context, embedded: bool) -> None:
    """Print the effective config as TOML."""
    cfg = configmod.load(None, env={}) if embedded else obj.config
    click.echo(cfg.to_toml(), nl=False)


from bootsrv.machines_cli import hypervisor_group, machine_group  # noqa: E402

main.add_command(machine_group)
main.add_command(hypervisor_group)

from bootsrv.virt.commands import guest  # noqa: E402

main.add_command(guest)

from bootsrv.tftp.cli import tftp_group  # noqa: E402

main.add_command(tftp_group)

from bootsrv.leases.cli import lease_group  # noqa: E402

main.add_command(lease_group)

from bootsrv.profiles.cli import profile_group  # noqa: E402

main.add_command(profile_group)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
