"""The install plan: what one machine due for install gets, and the files rendered from it.

`Planner.plan(mac)` answers "install or local boot?" for the boot chain: None means boot from
the local disk (enrolled, retired, discovered or unknown machines); an InstallPlan carries the
profile, the machine, its one-time enrollment token and the URLs derived from them.
bootsrv.machines.planner.RegistryPlanner is the Planner over the machine registry (it moves the
machine to "installing" and issues the token); the Wiring builds it with this module's
`PlanBuilder.from_install` as its `to_plan`.

The token travels in the answer URL (`/profiles/<mac>/<file>?token=...`) on the installer's
kernel command line, so the answer fetch works with the installer's plain HTTP client and only
the holder of the boot script can fetch the answer (`check_answer_token` has the rules). The
boot script and the answer go only to an address bootsrv leased or bound to the machine
(`boot_decision`, `check_answer_client`; bootsrv.machines.binding says why), and `identity` is
what bootsrv knows of a machine, which enrollment checks the installer's facts against.

PlanBuilder and check_answer_token are pure over their inputs (catalog, renderer, config values,
machine, token, time); `boot_decision`, `identity` and `planner` are the edge that reads the
machine registry and the lease store and writes the registry.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from ipaddress import IPv4Interface
from typing import Any, Protocol

from bootsrv.config import Config
from bootsrv.dhcp.pxe import Sighting
from bootsrv.errors import BootsrvError, Conflict, InvalidInput, NotFound
from bootsrv.machines import admin
from bootsrv.machines.binding import Identity, check_client
from bootsrv.machines.enrollment import (
    HYPERVISOR_DRIVERS,
    TOKEN_TEXT,
    TokenRejected,
    TokenReplayed,
    callback_script,
    digest,
    iso_time,
)
from bootsrv.machines.model import Machine, boot_action
from bootsrv.profiles.catalog import Catalog, Profile
from bootsrv.profiles.render import Renderer
from bootsrv.values import normalize_mac

BOOT_FORMATS = ("ipxe", "pxelinux", "grub")
# What `bootsrv profile render` puts where a real token would be: never valid (enroll refuses
# any token it did not issue), but of the token alphabet so templates render as for real.
PREVIEW_TOKEN = "PREVIEW-not-an-issued-token"


class UnknownProfile(BootsrvError):
    """A machine due for install names a profile the catalog does not have (a site mistake)."""

    exit_code = 3
    http_status = 500


class Planner(Protocol):
    def plan(self, mac: str) -> InstallPlan | None: ...


@dataclass(frozen=True)
class Urls:
    base: str
    files: str
    kernel: str
    initrd: str
    answer: str
    enroll: str


@dataclass(frozen=True)
class InstallPlan:
    profile: Profile
    machine: Machine
    token: str
    urls: Urls
    args: tuple[str, ...]  # the installer kernel's command line, one argument each

    @property
    def cmdline(self) -> str:
        return " ".join(self.args)


def dashed(mac: str) -> str:
    return normalize_mac(mac).replace(":", "-")


def fqdn(machine: Machine, profile: Profile) -> str:
    return machine.hostname if "." in machine.hostname else f"{machine.hostname}.{profile.site.domain}"


class PlanBuilder:
    """Turns (profile, machine, token) into plans, template contexts and rendered files."""

    def __init__(self, catalog: Catalog, renderer: Renderer, config: Config):
        self.catalog = catalog
        self.renderer = renderer
        self.config = config

    # -- plans ---------------------------------------------------------------------------------

    def from_install(self, install) -> InstallPlan:
        """`to_plan` for RegistryPlanner: an Install (machine + token) becomes a plan."""
        return self.build(install.machine, install.token)

    def build(self, machine: Machine, token: str) -> InstallPlan:
        if machine.profile is None:
            raise InvalidInput("profile", f"machine {machine.mac} has no profile")
        profile = self.catalog.get(machine.profile)
        base = self.config.boot.http_base_url.rstrip("/")
        files = f"{base}/files"

        def located(value: str) -> str:
            return value if "://" in value else f"{files}/{value}"

        urls = Urls(
            base=base,
            files=files,
            kernel=located(profile.boot.kernel),
            initrd=located(profile.boot.initrd),
            answer=f"{base}/profiles/{dashed(machine.mac)}/{profile.answer.file}?token={token}",
            enroll=f"{base}/api/enroll",
        )
        partial = InstallPlan(profile, machine, token, urls, args=())
        context = self._base_context(partial)
        args = [
            self.renderer.render_string(profile.name, f"boot.args[{i}]", arg, context)
            for i, arg in enumerate(profile.boot.args)
        ]
        # BOOTIF (pxelinux IPAPPEND 2 form) tells d-i's netcfg and dracut which NIC booted, so a
        # two-NIC machine installs over the NIC it PXE-booted from without asking.
        args.append(f"BOOTIF=01-{dashed(machine.mac)}")
        args.append(f"{profile.boot.answer_arg}={urls.answer}")
        return InstallPlan(profile, machine, token, urls, args=tuple(a for a in args if a))

    # -- contexts ------------------------------------------------------------------------------

    def _nics(self, plan: InstallPlan) -> list[dict[str, Any]]:
        """The site NICs with this machine's addresses (static config when the machine has an
        address on that network and the network is in the config; DHCP otherwise)."""
        nets = {n.name: n for n in self.config.networks}
        out = []
        for i, nic in enumerate(plan.profile.site.nics):
            entry: dict[str, Any] = {
                "name": nic.name,
                "role": nic.role,
                "network": nic.network,
                "mac": plan.machine.mac if i == 0 else None,
                "address": None,
                "prefixlen": None,
                "netmask": None,
                "gateway": None,
                "dns": [],
            }
            address, net = plan.machine.address(nic.network), nets.get(nic.network)
            if address and net is not None:
                iface = IPv4Interface(f"{address}/{net.subnet.prefixlen}")
                entry.update(
                    address=address,
                    prefixlen=net.subnet.prefixlen,
                    netmask=str(iface.netmask),
                    gateway=str(net.router) if net.router else None,
                    dns=[str(d) for d in net.dns_servers],
                )
            out.append(entry)
        return out

    def _base_context(self, plan: InstallPlan) -> dict[str, Any]:
        m, profile = plan.machine, plan.profile
        name = fqdn(m, profile)
        return {
            "profile": profile,
            "settings": profile.settings,
            "site": profile.site,
            "machine": {
                "mac": m.mac,
                "mac_dashed": dashed(m.mac),
                "hostname": m.hostname,
                "fqdn": name,
                "short": name.split(".")[0],
                "arch": m.arch,
                "addresses": dict(m.addresses),
            },
            "token": plan.token,
            "urls": plan.urls,
            # Every file of the profile's answer, by name, with this install's token.
            "answer_urls": {name: self.answer_url(plan, name) for name in profile.answer_files},
            "nics": self._nics(plan),
            "libvirt_uri": self.libvirt_uri(plan),
        }

    @staticmethod
    def answer_url(plan: InstallPlan, name: str) -> str:
        return f"{plan.urls.base}/profiles/{dashed(plan.machine.mac)}/{name}?token={plan.token}"

    def libvirt_uri(self, plan: InstallPlan) -> str:
        return plan.profile.site.libvirt_uri.format(
            driver=HYPERVISOR_DRIVERS[plan.profile.hypervisor], fqdn=fqdn(plan.machine, plan.profile)
        )

    def context(self, plan: InstallPlan) -> dict[str, Any]:
        ctx = self._base_context(plan)
        ctx["cmdline"] = plan.cmdline
        ctx["args"] = list(plan.args)
        # The installer's last step (bootsrv.machines.enrollment): POSIX sh, values validated and quoted there.
        ctx["enroll_script"] = callback_script(
            plan.urls.base,
            plan.token,
            plan.machine.mac,
            ctx["machine"]["fqdn"],
            plan.profile.hypervisor,
            ctx["libvirt_uri"],
        )
        return ctx

    # -- files ---------------------------------------------------------------------------------

    def boot_script(self, fmt: str, plan: InstallPlan | None, mac: str, reason: str = "") -> str:
        """The boot config of `fmt` (ipxe, pxelinux, grub): install for a plan, else local boot."""
        if fmt not in BOOT_FORMATS:
            raise InvalidInput("format", f"{fmt!r} is not one of {', '.join(BOOT_FORMATS)}")
        if plan is None:
            context = {"mac": normalize_mac(mac), "reason": reason or "not due for install"}
            return self.renderer.render("(local boot)", f"boot/local.{fmt}.j2", context)
        return self.renderer.render(plan.profile.name, f"boot/install.{fmt}.j2", self.context(plan))

    def answer(self, plan: InstallPlan, name: str | None = None) -> str:
        """The answer file `name` (default: the profile's main one); NotFound if the profile has
        no such file."""
        files = plan.profile.answer_files
        name = name or plan.profile.answer.file
        if name not in files:
            raise NotFound(f"file: profile {plan.profile.name} serves {', '.join(files)}, not {name!r}")
        return self.renderer.render(plan.profile.name, files[name], self.context(plan))


def boot_decision(wiring, planner_: Planner, mac: str, client: str | None) -> tuple[InstallPlan | None, str]:
    """Install plan or local boot for `mac`, asked by `client` (the request's source address),
    and why local: what every boot config (iPXE over HTTP, pxelinux/GRUB over TFTP) is rendered
    from.

    An unknown MAC boots locally; with `boot.unknown_machines = "discover"` it is reported as
    DHCP's sightings are (`wiring.sightings`): the recorder writes it in its next batch, within
    `boot.discovery_rate` and `boot.discovered_limit` (bootsrv.machines.discovery). Anyone on
    the segment can ask for any MAC's script, so this request writes nothing (issue 16: 2,000
    fetches for random MACs were 2,000 registry rewrites). With `boot.auto_profile` the answer
    depends on the record, a new machine that installs at this very boot: it is written at once,
    if the rate has a token for it (`wiring.discovery_rate`); if not, this boot is local and it
    is reported as above, to install at a later boot.

    A machine due for install gets its install boot only at an address bootsrv leased or bound
    to it (bootsrv.machines.binding.check_client): anyone else is refused before a token is
    issued or the machine moves, so a stranger's fetch gets no token and changes nothing.
    """
    mac = normalize_mac(mac)
    known = wiring.machines.get(mac)
    boot = wiring.config.boot
    if known is None and boot.unknown_machines == "discover":
        now = wiring.clock()
        if boot.auto_profile is not None and wiring.discovery_rate.take(now):
            known = admin.discover(
                wiring.machines, mac, None, None, None, now, boot.auto_profile, boot.discovered_limit
            )
        else:
            wiring.sightings.saw(Sighting(mac, None, None, b"", now))
    if known is not None and boot_action(known.state) == "install":
        if known.profile not in wiring.profiles:
            # Refused before the planner issues a token and moves the machine: nothing changes.
            raise UnknownProfile(
                f"profile: machine {mac} has profile {known.profile!r}, which is not in the "
                f"catalog ({', '.join(wiring.profiles.names()) or 'none'})"
            )
        check_client(identity(wiring, known), client, "the install boot")
    plan = planner_.plan(mac)
    if plan is not None:
        return plan, ""
    now = wiring.machines.get(mac)
    return None, "unknown machine" if now is None else f"machine is {now.state.value}"


def identity(wiring, machine: Machine) -> Identity:
    """What bootsrv knows of `machine`: its names (hostname, and the FQDN the install gave it by
    its profile's site domain), its addresses (declared in the registry, bound or leased in the
    lease store: wiring.machine_addresses) and its profile's hypervisor. Without its profile at
    hand (no catalog, or a profile since removed) only the hostname is known, and no hypervisor."""
    names = {machine.hostname}
    hypervisor = None
    profile = _profile_of(wiring, machine)
    if profile is not None:
        names.add(fqdn(machine, profile))
        hypervisor = profile.hypervisor
    leased = wiring.machine_addresses.addresses(machine.mac, wiring.clock())
    addresses = frozenset({ip for _, ip in machine.addresses} | leased)
    return Identity(machine.mac, frozenset(names), addresses, hypervisor)


def _profile_of(wiring, machine: Machine) -> Profile | None:
    if machine.profile is None or wiring.known_profiles() is None:
        return None
    try:
        return wiring.profiles.get(machine.profile)
    except BootsrvError:
        return None


def check_answer_client(wiring, machine: Machine, client: str | None) -> None:
    """The answer (which carries the token and the callback) goes where the install boot went:
    to an address bootsrv leased or bound to the machine."""
    check_client(identity(wiring, machine), client, "the answer file")


def check_answer_token(machine: Machine | None, mac: str, token: str | None, now: float) -> None:
    """May the holder of `token` fetch `mac`'s answer files now? Raises the refusal; pure.

    Within bootsrv.machines.enrollment's token rules: the answer carries the token the boot script issued, so
    fetching it needs that very token (a stranger without the boot script gets nothing, and one
    machine's token never opens another's answer). A live token may fetch again and again (an
    installer retries, d-i and the late command fetch two files); once the machine enrolled every
    token is used and the answer is gone (409); an expired token is refused (403).
    """
    if not token:
        raise TokenRejected("token", "missing: the answer URL carries ?token= from the machine's boot script")
    if not TOKEN_TEXT.match(token):
        raise TokenRejected("token", "malformed: not a token bootsrv issues")
    wanted = digest(token)
    record = None
    for candidate in machine.tokens if machine is not None else ():
        if hmac.compare_digest(candidate.digest, wanted):
            record = candidate
    if machine is None or record is None:
        raise TokenRejected("token", f"not issued to machine {mac} (or superseded by a reinstall)")
    if record.used:
        raise TokenReplayed(f"already used: machine {mac} enrolled with it ({machine.state.value} now)")
    if now >= record.expires:
        raise TokenRejected("token", f"expired at {iso_time(record.expires)}")
    if boot_action(machine.state) != "install":
        raise Conflict(f"machine {mac} is {machine.state.value}: it is not being installed")
