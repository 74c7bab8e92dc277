"""`bootsrv lease ...`: the lease store by hand, in the spirit of Solaris pntadm(1M).

    list [--network N] [--json]       pntadm -P: every record
    show IP|MAC|CLIENT_ID             one address, or what a client holds
    add IP CLIENT [--hostname ...]    pntadm -A: a MANUAL+PERMANENT binding
    modify IP [--hostname ...]        pntadm -M (guarded by --expect SIGNATURE if given)
    delete IP                         pntadm -D
    import --format sunwfiles PATH    a Solaris SUNWfiles1_<net> table (all checked, then written)
    export --format sunwfiles         the same format, to stdout or --output
    adopt PEER_IP                     take over a dead peer's addresses for good
    compact                           rewrite the tables with their live records only

Every command opens the store of the config (`store.directory`) as this server
(`server.owner_ips`), like the running server does; they may run while it runs.
"""

from __future__ import annotations

import json
import re
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

import click

from bootsrv.errors import InvalidInput, NotFound
from bootsrv.leases.model import NEVER, NONE, Flag, Record
from bootsrv.leases.rules import expiry_rule, normalize_client_id
from bootsrv.log import cut, printable

FLAG_HELP = "DYNAMIC, PERMANENT, MANUAL, UNUSABLE, BOOTP joined by '+', or their dhcp_network(4) sum"


def _store(obj):
    return obj.wiring.leases


def parse_flags(text: str) -> Flag:
    text = text.strip().upper()
    if re.fullmatch(r"[0-9]{1,3}", text):  # ASCII digits: isdigit() also takes '²', which int() refuses
        value = int(text)
        if value > 15:
            raise InvalidInput("flags", f"{text} is more than 15 ({FLAG_HELP})")
        return Flag(value)
    flags = Flag.DYNAMIC
    for word in filter(None, text.replace(",", "+").split("+")):
        if word not in Flag.__members__:
            raise InvalidInput("flags", f"{word!r} is not a flag ({FLAG_HELP})")
        flags |= Flag[word]
    return flags


def parse_expiry(text: str) -> int:
    """Unix seconds, 'never' (-1), 'none' (0), or an ISO date-time in UTC."""
    low = text.strip().lower()
    if low in ("never", "forever", "-1"):
        return NEVER
    if low in ("none", "0"):
        return NONE
    if re.fullmatch(r"[0-9]+", low):
        # Digits first: int() of thousands of them raises, of other scripts' digits too. The
        # range is the record rule's (bootsrv.leases.rules), checked here to name it at once.
        why = expiry_rule(int(low) if len(low) <= 20 else low)
        if why is not None:
            raise InvalidInput("expiry", why)
        return int(low)
    try:
        return int(time.mktime(time.strptime(text.strip().rstrip("Z"), "%Y-%m-%dT%H:%M:%S")) - time.timezone)
    except ValueError:
        raise InvalidInput("expiry", f"{text!r} is not Unix seconds, 'never', 'none' or YYYY-MM-DDTHH:MM:SS") from None


def _ip(text: str) -> IPv4Address:
    try:
        return IPv4Address(text.strip())
    except ValueError:
        raise InvalidInput("ip", f"{text!r} is not an IPv4 address") from None


def _network_of(store, ip: IPv4Address, network: str | None) -> str:
    if network is not None:
        store.pool(network)
        return network
    for name in store.networks():
        if ip in store.pool(name).subnet:
            return name
    raise InvalidInput("ip", f"{ip} is in no configured network ({', '.join(store.networks()) or 'none'})")


# A store holds only records that obey bootsrv.leases.rules, but `list` and `show` are what an
# operator runs when something is wrong: whatever a record holds, they show it, with a value
# that cannot be rendered marked as INVALID instead of a traceback.
INVALID = "INVALID {}"


def _invalid(value: object) -> str:
    return INVALID.format(printable(cut(repr(value), 40)))


def expiry_text(rec: Record) -> str:
    try:
        if rec.permanent:
            return "never"
        if rec.expiry == NONE:
            return "-"
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rec.expiry))
    except (TypeError, ValueError, OverflowError, OSError):  # no date: out of gmtime's range
        return _invalid(rec.expiry)


def flags_text(rec: Record) -> str:
    try:
        return Flag(rec.flags).names()
    except (TypeError, ValueError):
        return _invalid(rec.flags)


def _owned(store, rec: Record) -> bool | None:
    try:
        return store.owns(rec)
    except (TypeError, ValueError, KeyError):
        return None


def as_dict(store, rec: Record) -> dict:
    return {
        "network": rec.network,
        "ip": str(rec.ip),
        "client_id": rec.client_id,
        "flags": flags_text(rec),
        "owner": str(rec.owner),
        "owned": _owned(store, rec),
        "expiry": rec.expiry if isinstance(rec.expiry, int) else _invalid(rec.expiry),
        "expires": expiry_text(rec),
        "signature": rec.signature,
        "macro": rec.macro,
        "hostname": rec.hostname,
        "comment": rec.comment,
    }


def _json(value) -> str:
    # ensure_ascii (the default) escapes C0, DEL and every non-ASCII character: terminal-safe.
    return json.dumps(value, indent=1, default=str)


COLUMNS = ("NETWORK", "CLIENT IP", "CLIENT ID", "FLAGS", "OWNER", "EXPIRES", "MACRO", "HOSTNAME", "COMMENT")


def _cell(value: object) -> str:
    # A terminal acts on control characters (ESC sequences, carriage returns): shown escaped.
    return printable(str(value))


def _row(store, rec: Record) -> tuple[str, ...]:
    owner = str(rec.owner) + ("" if _owned(store, rec) else " (peer)")
    cells = (
        rec.network,
        rec.ip,
        rec.client_id or "00",
        flags_text(rec),
        owner,
        expiry_text(rec),
        rec.macro,
        rec.hostname,
        rec.comment,
    )
    return tuple(_cell(c) for c in cells)


def _table(rows) -> str:
    rows = [COLUMNS, *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _report_problems(store) -> None:
    for problem in getattr(store, "problems", []):
        click.echo(f"warning: {printable(problem)}", err=True)


@click.group("lease")
def lease_group() -> None:
    """The shared lease store (pntadm-style): list, show, add, modify, delete, import, export."""


@lease_group.command("list")
@click.option("--network", "-n", help="Only this network.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of records.")
@click.pass_obj
def list_cmd(obj, network: str | None, as_json: bool) -> None:
    """Every record, by network and address (pntadm -P)."""
    store = _store(obj)
    try:
        records = store.records(network)
        _report_problems(store)
        if as_json:
            click.echo(_json([as_dict(store, r) for r in records]))
        else:
            click.echo(_table(_row(store, r) for r in records))
    finally:
        store.close()


@lease_group.command("show")
@click.argument("what")
@click.option("--network", "-n", help="Only this network.")
@click.pass_obj
def show_cmd(obj, what: str, network: str | None) -> None:
    """The record of an address, or every record of a client (MAC or client id), as JSON."""
    store = _store(obj)
    try:
        names = [network] if network else store.networks()
        for name in names:
            store.pool(name)
        try:
            ip = IPv4Address(what.strip())
        except ValueError:
            ip = None
        if ip is not None:
            found = [r for name in names if (r := store.get(name, ip)) is not None]
        else:
            client_id = normalize_client_id(what, "client")
            found = [r for name in names for r in store.records(name) if r.client_id == client_id]
        if not found:
            raise NotFound(f"{what}: no record")
        _report_problems(store)
        click.echo(_json([as_dict(store, r) for r in found]))
    finally:
        store.close()


@lease_group.command("add")
@click.argument("ip")
@click.argument("client")
@click.option("--network", "-n", help="Default: the network whose subnet holds IP.")
@click.option("--hostname", default="", help="Answered by DNS (A and PTR).")
@click.option("--macro", "-m", default="", help="Solaris macro / bootsrv profile.")
@click.option("--comment", "-c", default="")
@click.option("--flags", "-f", "flags", default="MANUAL+PERMANENT", show_default=True, help=FLAG_HELP)
@click.pass_obj
def add_cmd(obj, ip, client, network, hostname, macro, comment, flags) -> None:
    """Bind IP to CLIENT (a MAC or client id) for good (pntadm -A)."""
    flag = parse_flags(flags)
    store = _store(obj)
    try:
        address = _ip(ip)
        rec = store.bind(
            _network_of(store, address, network),
            address,
            client,
            hostname,
            now=time.time(),
            flags=flag,
            macro=macro,
            comment=comment,
        )
        click.echo(_json(as_dict(store, rec)))
    finally:
        store.close()


@lease_group.command("modify")
@click.argument("ip")
@click.option("--network", "-n", help="Default: the network whose subnet holds IP.")
@click.option("--client-id", "client_id", default=None, help="A MAC or client id; '' or 00 for none.")
@click.option("--hostname", default=None)
@click.option("--macro", default=None)
@click.option("--comment", default=None)
@click.option("--flags", default=None, help=FLAG_HELP)
@click.option("--owner", default=None, help="The server that owns the record (one of a pair's owner_ips).")
@click.option("--expiry", default=None, help="Unix seconds, 'never', 'none' or YYYY-MM-DDTHH:MM:SS (UTC).")
@click.option("--expect", type=int, default=None, help="Refuse unless the record's signature is this.")
@click.pass_obj
def modify_cmd(obj, ip, network, client_id, hostname, macro, comment, flags, owner, expiry, expect) -> None:
    """Change fields of one record (pntadm -M)."""
    changes = {}
    if client_id is not None:
        changes["client_id"] = "" if client_id.strip() in ("", "00") else normalize_client_id(client_id)
    if hostname is not None:
        changes["hostname"] = hostname
    if macro is not None:
        changes["macro"] = macro  # the store holds every change to the record rules
    if comment is not None:
        changes["comment"] = comment
    if flags is not None:
        changes["flags"] = parse_flags(flags)
    if owner is not None:
        try:
            changes["owner"] = IPv4Address(owner)
        except ValueError:
            raise InvalidInput("owner", f"{owner!r} is not an IPv4 address") from None
    if expiry is not None:
        changes["expiry"] = parse_expiry(expiry)
    if not changes:
        raise InvalidInput(
            "modify",
            "nothing to change (give at least one of --client-id, --hostname, --macro, "
            "--comment, --flags, --owner, --expiry)",
        )
    store = _store(obj)
    try:
        address = _ip(ip)
        rec = store.modify(_network_of(store, address, network), address, expect, **changes)
        click.echo(_json(as_dict(store, rec)))
    finally:
        store.close()


@lease_group.command("delete")
@click.argument("ip")
@click.option("--network", "-n", help="Default: the network whose subnet holds IP.")
@click.option("--expect", type=int, default=None, help="Refuse unless the record's signature is this.")
@click.pass_obj
def delete_cmd(obj, ip, network, expect) -> None:
    """Remove the record of IP (pntadm -D)."""
    store = _store(obj)
    try:
        address = _ip(ip)
        rec = store.delete(_network_of(store, address, network), address, expect)
        click.echo(f"deleted {rec.network}/{rec.ip} ({rec.client_id or 'no client'})")
    finally:
        store.close()


def _sunwfiles_network(store, path: Path, network: str | None) -> str:
    from bootsrv.leases.sunwfiles import network_address_of

    if network is not None:
        store.pool(network)
        return network
    address = network_address_of(path.name)
    if address is None:
        raise InvalidInput("network", f"{path.name} is not named SUNWfiles1_<network address>; give --network")
    for name in store.networks():
        if store.pool(name).subnet.network_address == address:
            return name
    raise InvalidInput("network", f"no configured network has address {address} (from {path.name}); give --network")


@lease_group.command("import")
@click.option("--format", "fmt", type=click.Choice(["sunwfiles"]), required=True)
@click.option("--network", "-n", help="Default: from the file name (SUNWfiles1_10_0_0_0 is 10.0.0.0).")
@click.option("--replace", is_flag=True, help="Overwrite addresses held by other clients.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def import_cmd(obj, fmt, network, replace, path: Path) -> None:
    """Import a Solaris table: every line is checked first; a bad one writes nothing."""
    from bootsrv.leases import sunwfiles

    store = _store(obj)
    try:
        name = _sunwfiles_network(store, path, network)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(str(path), "is not a text file") from None
        records = sunwfiles.parse(text, store.pool(name), source=str(path))
        count = store.load(records, now=time.time(), replace_held=replace)
        click.echo(f"imported {count} records into {name}")
    finally:
        store.close()


@lease_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["sunwfiles"]), required=True)
@click.option("--network", "-n", required=True)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Default: stdout. A directory-less name like SUNWfiles1_10_0_0_0 is fine.",
)
@click.pass_obj
def export_cmd(obj, fmt, network, output: Path | None) -> None:
    """Write one network as a Solaris SUNWfiles table."""
    from bootsrv.leases import sunwfiles

    store = _store(obj)
    try:
        text = sunwfiles.render(store.records(network), store.pool(network))
    finally:
        store.close()
    if output is None:
        sys.stdout.write(text)
    else:
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_text(text)
        tmp.replace(output)


@lease_group.command("adopt")
@click.argument("peer")
@click.pass_obj
def adopt_cmd(obj, peer) -> None:
    """Take over PEER's ranges and records for good (it is gone; its clients keep their leases)."""
    try:
        address = IPv4Address(peer)
    except ValueError:
        raise InvalidInput("peer", f"{peer!r} is not an IPv4 address") from None
    store = _store(obj)
    try:
        moved = store.adopt(address)
        click.echo(f"adopted {address}: {moved} records now owned by {store.owner_ips[0]}")
    finally:
        store.close()


@lease_group.command("compact")
@click.option("--network", "-n", help="Default: every network.")
@click.pass_obj
def compact_cmd(obj, network) -> None:
    """Rewrite tables with their live records only (safe while servers run)."""
    store = _store(obj)
    try:
        for name, (before, after) in store.compact(network).items():
            click.echo(f"{name}: {before} -> {after} bytes")
    finally:
        store.close()
