"""The lab demo, run by `bootsrv demo` (README's first command), and the site the integration
tests and bench/bench_pxe.py build with it.

It creates its own namespaces (never touching this machine's interfaces), writes a site config for
them, starts `bootsrv serve` inside the server namespace and walks a hypervisor through its whole
life, printing each step: a VM with a blank disk PXE-boots real firmware from bootsrv alone (its
DHCP, TFTP and HTTP), its "installer" (a busybox initramfs built from Debian's packages) fetches
its answer file, stamps the disk and calls the enrollment API; the VM reboots and is told to boot
from its disk; `bootsrv hypervisor list` shows it with its facts. Then a guest is provisioned
the original domu way on a lab hypervisor (libvirtd in a namespace): clone of a frozen master,
domain from the template, fe0/be0 bound in the lease store; it gets its address from bootsrv's
DHCP and its name from bootsrv's DNS. It stops by itself and tears everything down.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bootsrv.lab import netns as labmod

SERVER_IP = "10.231.0.2"
PREFIX = "10.231.0"
SUBNET = f"{PREFIX}.0/24"
BACKEND_PREFIX = "10.231.1"
ADMIN_TOKEN = "demo-admin-token-0123456789"
# What firmware prints when DHCP gives it no boot file: qemu's iPXE ROM, and EDK2's own PXE.
NO_BOOT_FILE = ("Nothing to boot", "PXE-E16: No valid offer")

# The test installer: bring the NIC up by DHCP, fetch the answer file named on the kernel command
# line and run it (it stamps the disk and calls back). MACs listed in /etc/fail-macs stand for an
# install that dies before its last step: no callback, so that machine must keep its install boot.
INSTALLER_INIT = """
echo BOOTSRV-INSTALLER-START
ip link set lo up
nic=$(vm_nic)
dhcp_up "$nic" || echo BOOTSRV-INSTALLER-NO-DHCP
answer=$(arg bootsrv.answer)
mac=$(cat "/sys/class/net/$nic/address")
if grep -qx "$mac" /etc/fail-macs 2>/dev/null; then
  echo BOOTSRV-INSTALLER-FAILED-BEFORE-CALLBACK
elif wget -q -O /tmp/answer.sh "$answer"; then
  sh /tmp/answer.sh && echo BOOTSRV-INSTALLER-DONE || echo BOOTSRV-INSTALLER-ANSWER-FAILED
else
  echo BOOTSRV-INSTALLER-NO-ANSWER
fi
sleep 1
reboot -f
"""


# A guest's /init (demo and tests/virt): DHCP on its first NIC (fe0) from bootsrv, then its own name
# through bootsrv's DNS (busybox nslookup); `guest=` and `dns=` come from the command line.
GUEST_NET_INIT = """
dhcp_up "$(vm_nic)" || echo DHCP-FAILED
nslookup "$(arg guest).lab.example" "$(arg dns)" 2>&1 | sed 's/^/DNS: /'
echo GUEST-NET-DONE
while true; do sleep 1; done
"""


def guest_net_boot(workdir: Path, dns: str, guest: str = "vm-host1"):
    """Direct kernel boot of a guest running GUEST_NET_INIT against bootsrv's DNS at `dns`."""
    from bootsrv.lab import vm as labvm
    from bootsrv.virt.guests import Boot

    initrd = labvm.build_initramfs(workdir / "guest-initrd.gz", labvm.INIT_PRELUDE + GUEST_NET_INIT)
    return Boot(str(labvm.kernel_path()), str(initrd), f"console=ttyS0 quiet guest={guest} dns={dns}")


def installer_initrd(dest: Path, fail_macs: tuple[str, ...] = ()) -> Path:
    from bootsrv.lab import vm as labvm

    files = {"etc/fail-macs": "".join(f"{m}\n" for m in fail_macs).encode()}
    return labvm.build_initramfs(dest, labvm.INIT_PRELUDE + INSTALLER_INIT, files)


class Site:
    """bootsrv configured for one lab segment: its config file, TFTP and files roots, its store."""

    def __init__(
        self,
        workdir: Path,
        kernel: Path | None = None,
        initrd: Path | None = None,
        server_ip: str = SERVER_IP,
        prefix: str = PREFIX,
        name: str = "demo-a",
        backend_prefix: str | None = None,
        boot: bool = True,
    ):
        self.workdir, self.server_ip, self.prefix, self.name = workdir, server_ip, prefix, name
        self.backend_prefix = backend_prefix  # a second network, served by nobody (guests' be0)
        self.boot = boot  # populate the TFTP root (bootsrv tftp populate)
        self.kernel, self.initrd = kernel, initrd
        self.config = workdir / "site.toml"
        self.log = workdir / "serve.log"
        self.proc: subprocess.Popen | None = None
        self.host: labmod.Host | None = None

    def config_text(self) -> str:
        w, ip, p = self.workdir, self.server_ip, self.prefix
        return f"""
[server]
name = "{self.name}"
owner_ips = ["{ip}"]
rescan_interval = 5

[store]
directory = "{w}/store"

[[networks]]
name = "public"
segment = "odd"
subnet = "{p}.0/24"
router = "{ip}"
dns_servers = ["{ip}"]
domain = "lab.example"
lease_time = 600
interface = "net0"
[[networks.ranges]]
start = "{p}.100"
end = "{p}.150"

{self.backend_text()}
[boot]
tftp_root = "{w}/tftp"
files_root = "{w}/files"
http_base_url = "http://{ip}:8080"

[api]
admin_token = "{ADMIN_TOKEN}"

[tftp]
address = "{ip}"
[http]
address = "{ip}"
[dns]
address = "{ip}"
"""

    def backend_text(self) -> str:
        if self.backend_prefix is None:
            return ""
        b = self.backend_prefix
        return f"""
[[networks]]
name = "backend"
segment = "odd"
subnet = "{b}.0/24"
[[networks.ranges]]
start = "{b}.100"
end = "{b}.150"
"""

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "bootsrv", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"bootsrv {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def prepare(self) -> None:
        for d in ("store", "tftp", "files/lab"):
            (self.workdir / d).mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.config_text())
        if self.boot:
            self.cli("tftp", "populate")
        if self.kernel is not None:
            shutil.copy(self.kernel, self.workdir / "files/lab/vmlinuz")
        if self.initrd is not None:
            shutil.copy(self.initrd, self.workdir / "files/lab/initrd.gz")

    def start(self, lab: labmod.Lab, segment: labmod.Segment) -> labmod.Host:
        """Prepare the site, plug the server namespace into `segment` and run `bootsrv serve`."""
        self.prepare()
        self.host = lab.host(self.name.replace("-", "")[:12])
        lab.plug(self.host, segment, "net0", f"{self.server_ip}/24")
        self.proc = self.host.popen(
            [sys.executable, "-m", "bootsrv", "--config", str(self.config), "serve"], stderr=open(self.log, "w")
        )
        wait_for("bootsrv to answer HTTP", self.healthy)
        return self.host

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"bootsrv exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        r = self.host.run(["curl", "-s", "-m", "1", f"http://{self.server_ip}:8080/healthz"], check=False)
        return r.returncode == 0

    def add_machine(self, mac: str, hostname: str, profile: str = "lab-test") -> dict:
        return json.loads(
            self.cli("machine", "add", mac, "--hostname", hostname, "--profile", profile, "--json").stdout
        )

    def machine(self, mac: str) -> dict:
        return json.loads(self.cli("machine", "show", mac, "--json").stdout)

    def hypervisors(self) -> list[dict]:
        return json.loads(self.cli("hypervisor", "list", "--json").stdout)["hypervisors"]

    def served(self) -> str:
        return self.log.read_text()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def install_cycle(
    lab: labmod.Lab, workdir: Path, say: Callable[[str], None] = print, firmware: str = "bios", second: bool = True
) -> dict:
    """The full cycle with two VMs (one with `second=False`); returns what happened, for the
    integration test to check."""
    from bootsrv.lab import vm as labvm

    good, failing = "52:54:00:de:00:01", "52:54:00:de:00:02"
    initrd = installer_initrd(workdir / "installer.gz", fail_macs=(failing,))
    site = Site(workdir, kernel=labvm.kernel_path(), initrd=initrd, backend_prefix=BACKEND_PREFIX)
    seg = lab.segment("public")
    say(f"[1] lab: segment 'public' {SUBNET}; bootsrv serve in its own namespace at {site.server_ip}")
    site.start(lab, seg)
    say("[2] bootsrv machine add: hv1 and hv2 with profile lab-test (hv2's installer will die before its callback)")
    site.add_machine(good, "hv1")
    if second:
        site.add_machine(failing, "hv2")
    # UEFI VMs boot by OVMF's own PXE (no iPXE ROM on the NIC), so their chain goes through TFTP
    # as on most servers; BIOS VMs have qemu's iPXE ROM, which is iPXE already and goes to HTTP.
    uefi = firmware == "uefi"
    vms = [
        labvm.Vm(
            seg,
            name,
            workdir,
            mac,
            firmware=firmware,
            disk=labvm.blank_disk(workdir / f"{name}.img"),
            option_rom=not uefi,
        )
        for name, mac in (("hv1", good), ("hv2", failing))[: 2 if second else 1]
    ]
    chain = "UEFI PXE -> TFTP ipxe.efi -> iPXE DHCP" if uefi else "iPXE ROM DHCP"
    say(
        f"[3] {len(vms)} {firmware.upper()} VM(s) with blank disks power on (qemu TCG): {chain}"
        " -> HTTP script -> kernel + installer"
    )
    started = time.monotonic()
    for vm in vms:
        vm.start()
    vms[0].wait_for("BOOTSRV-INSTALLER-DONE", timeout=240)
    say(
        f"[4] hv1 installed and called back after {time.monotonic() - started:.0f} s; machine state: "
        f"{site.machine(good)['state']}"
    )
    # After the reboot the enrolled machine gets no boot file: iPXE says "Nothing to boot", UEFI's
    # own PXE "PXE-E16: No valid offer", and the firmware goes on to its next boot option (the disk).
    wait_for(
        "hv1's firmware to find no boot file after its reboot",
        lambda: any(m in vms[0].output().split("BOOTSRV-INSTALLER-DONE", 1)[-1] for m in NO_BOOT_FILE),
        timeout=180,
    )
    local = vms[0].output()
    say("[5] hv1 rebooted and was told to boot from its disk (no boot file in DHCP)")
    again = ""
    if second:
        vms[1].wait_for("BOOTSRV-INSTALLER-FAILED-BEFORE-CALLBACK", timeout=240)
        again = vms[1].wait_for("BOOTSRV-INSTALLER-START", timeout=240, count=2)
        say("[6] hv2 never called back: it is still 'installing' and got its install boot again after its reboot")
    pool = site.hypervisors()
    for hv in pool:
        say(
            f"    bootsrv hypervisor list: {hv['name']} state={hv['state']} cpus={hv['cpus']} "
            f"memory={hv['memory_mib']} MiB uri={hv['libvirt_uri']}"
        )
    for vm in vms:
        vm.stop()
    return {
        "site": site,
        "segment": seg,
        "hv1_console": local,
        "hv2_console": again,
        "hypervisors": pool,
        "hv1": site.machine(good),
        "hv2": site.machine(failing) if second else None,
    }


def guest_cycle(
    lab: labmod.Lab, workdir: Path, site: Site, public: labmod.Segment, say: Callable[[str], None] = print
) -> str:
    """A guest provisioned the original domu way on a lab hypervisor, bound in bootsrv's lease
    store, getting its address from bootsrv's DHCP and its name from bootsrv's DNS. Returns the
    guest's console text."""
    import re

    from bootsrv.config import load
    from bootsrv.lab import guests as guestlab
    from bootsrv.leases import open_store
    from bootsrv.virt.bindings import AddressPlan
    from bootsrv.virt.leasebind import LeaseBindings

    config = load(str(site.config))
    segments = {"fe0": public, "be0": lab.segment("backend")}
    say(
        "[7] guests: a lab hypervisor (libvirtd + qemu in its own namespace; hv1 above is a test VM, not a "
        "real hypervisor) with bridges fe0/be0 on the Public and Backend segments"
    )
    hv = guestlab.hypervisor(lab, workdir, "hvlab", 1, segments, prefix=site.prefix)
    try:
        shared = workdir / "guests"
        shared.mkdir()
        plans = {n.name: AddressPlan.from_network(n, config.server.owner_ips) for n in config.networks}
        bindings = LeaseBindings(open_store(config), time.time)
        g = guestlab.guests([hv], shared, bindings=bindings, plans=plans)
        ref, console, host = guestlab.provision(g, guest_net_boot(workdir, site.server_ip), workdir)
        say(
            f"    domu-project appl-1; domu-clone masters/{guestlab.MASTER.volume} appl-1/vm-1"
            " (qcow2 clone, ~0 bytes); "
            f"domu-init hvm fe-be odd 256 1 appl-1/vm-1 -> defined on {host.name}"
        )
        fe = g.assign_ip(ref, "fe0", "vm-host1")
        be = g.assign_ip(ref, "be0", "vm-host1-be")
        say(
            f"    domu-assign-ip: fe0 {fe.mac} -> {fe.ip} vm-host1, be0 {be.mac} -> {be.ip} vm-host1-be "
            "(MANUAL+PERMANENT records in the lease store)"
        )
        g.control(ref, "start")
        wait_for(
            "the guest's DHCP and DNS",
            lambda: "GUEST-NET-DONE" in console.read_text(errors="replace") if console.exists() else False,
            timeout=150,
        )
        text = console.read_text(errors="replace")
        got = re.search(r"DHCP-GOT (\S+)", text)
        answer = re.findall(r"DNS: Address: (\S+)", text)
        say(
            f"    virsh start appl-1:vm-1: the guest got {got.group(1) if got else 'no address'} from bootsrv's DHCP; "
            f"vm-host1.lab.example resolves to {answer[-1] if answer else 'nothing'} through bootsrv's DNS"
        )
        g.destroy(ref)
        g.connections.close()
        return text
    finally:
        hv.daemon.stop()


def run(say: Callable[[str], None] = print) -> None:
    with tempfile.TemporaryDirectory(prefix="bootsrv-demo-") as tmp, labmod.Lab() as lab:
        got = install_cycle(lab, Path(tmp), say)
        guest_cycle(lab, Path(tmp), got["site"], got["segment"], say)
        say("[8] done; tearing the lab down")


def main() -> int:
    ok, reason = labmod.available()
    if not ok:
        print(f"demo: {reason}", file=sys.stderr)
        return 1
    try:
        run()
    except (TimeoutError, RuntimeError, labmod.LabError, subprocess.SubprocessError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0
