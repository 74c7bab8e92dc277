"""What every command group shares: the invocation's Context (config and Wiring, built once),
errors as one line, and the output helpers (aligned tables, JSON, ages and sizes)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence

import click

from bootsrv import config as configmod
from bootsrv.app.wiring import Wiring
from bootsrv.errors import BootsrvError


class Context:
    """What every command gets as `ctx.obj`: the config and the Wiring, built on first use."""

    def __init__(self, config_path: str | None):
        self.config_path = config_path

    @functools.cached_property
    def config(self) -> configmod.Config:
        return configmod.load(self.config_path)

    @functools.cached_property
    def wiring(self) -> Wiring:
        """The lease store, registry, catalog and guests of this invocation, opened on first use."""
        return Wiring(self.config)

    def close(self) -> None:
        if "wiring" in self.__dict__:
            self.wiring.close()


class Errors:
    """Mixin for click commands and groups: a BootsrvError becomes `error: <field>: <rule>` on
    stderr and the error's exit code, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except BootsrvError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


class Group(Errors, click.Group):
    """The root group."""


def wiring_of(ctx: click.Context) -> Wiring:
    """The invocation's Wiring: one lease store, registry and catalog however many groups ask."""
    return ctx.find_root().obj.wiring


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart; empty values shown as "-"."""
    text_rows = [[("-" if v in (None, "") else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text_rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in text_rows]
    return "\n".join(lines)


def age(ts: float | None, now: float) -> str:
    """ "3m ago", "2h ago": how long since `ts` (epoch seconds); "-" for none."""
    if not ts:
        return "-"
    seconds = max(0, int(now - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def gib(mib: int) -> str:
    return f"{mib / 1024:.1f}G"


def emit_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))
