"""PXE boot time with real firmware: bootsrv alone against dnsmasq + a plain HTTP server.

Both serve the same payload in the same lab run: a BIOS VM (SeaBIOS + iPXE ROM) and a UEFI VM
(OVMF) PXE-boot under qemu TCG into Debian's kernel and a busybox initramfs that prints a marker
on the serial console. The chain is the same for both servers: DHCP -> TFTP iPXE
(undionly.kpxe / ipxe.efi) -> iPXE DHCP again -> HTTP script -> HTTP kernel + initrd.

    sudo .venv/bin/python bench/bench_pxe.py [--runs N] [--firmware bios,uefi]

Prints seconds from qemu start to the marker per server and firmware (median of --runs), and
bootsrv's ratio to dnsmasq (target: no slower, ratio <= 1.0).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootsrv.lab import demo  # noqa: E402
from bootsrv.lab import netns as labmod
from bootsrv.lab import vm as labvm

MARKER = "PXE-BENCH-MARKER"
IPXE = Path("/usr/lib/ipxe")


def payload(workdir: Path) -> tuple[Path, Path]:
    """The kernel and an initramfs that prints the marker and powers off."""
    init = labvm.INIT_PRELUDE + f"echo {MARKER}\npoweroff -f\n"
    return labvm.kernel_path(), labvm.build_initramfs(workdir / "initrd.gz", init, modules=())


def dnsmasq_server(lab, seg, workdir: Path, kernel: Path, initrd: Path):
    """dnsmasq (DHCP + TFTP) and python's http.server, configured as a site would for iPXE."""
    server_ip, www, tftp = "10.232.0.2", workdir / "www", workdir / "tftp"
    www.mkdir()
    tftp.mkdir()
    for name in ("undionly.kpxe", "ipxe.efi"):
        shutil.copy(IPXE / name, tftp / name)
    shutil.copy(kernel, www / "vmlinuz")
    shutil.copy(initrd, www / "initrd.gz")
    base = f"http://{server_ip}:8000"
    (www / "boot.ipxe").write_text(
        f"#!ipxe\nkernel {base}/vmlinuz initrd=initrd.gz console=ttyS0 quiet\ninitrd {base}/initrd.gz\nboot\n"
    )
    host = lab.host("dnsmasq")
    lab.plug(host, seg, "net0", f"{server_ip}/24")
    host.popen(
        [
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=net0",
            "--bind-interfaces",
            "--no-ping",
            "--dhcp-range=10.232.0.100,10.232.0.200,1h",
            f"--dhcp-leasefile={workdir}/dnsmasq.leases",
            "--enable-tftp",
            f"--tftp-root={tftp}",
            "--dhcp-userclass=set:ipxe,iPXE",
            "--dhcp-match=set:efi,option:client-arch,7",
            "--dhcp-match=set:efi,option:client-arch,9",
            "--dhcp-boot=tag:!ipxe,tag:!efi,undionly.kpxe",
            "--dhcp-boot=tag:!ipxe,tag:efi,ipxe.efi",
            f"--dhcp-boot=tag:ipxe,{base}/boot.ipxe",
        ],
        stdout=open(workdir / "dnsmasq.log", "w"),
        stderr=open(workdir / "dnsmasq.err", "w"),
    )
    host.popen(
        [sys.executable, "-m", "http.server", "-d", str(www), "-b", server_ip, "8000"],
        stdout=open(workdir / "http.log", "w"),
        stderr=open(workdir / "http.err", "w"),
    )
    time.sleep(1)
    return host


def bootsrv_server(lab, seg, workdir: Path, kernel: Path, initrd: Path):
    """`bootsrv serve` alone (its DHCP, TFTP and HTTP) with the machines known and due for the
    lab-test profile that boots this kernel and initramfs."""
    site = demo.Site(workdir, kernel=kernel, initrd=initrd)
    host = site.start(lab, seg)
    return site, host


def boot_once(lab, seg, workdir: Path, firmware: str, mac: str, timeout: float = 180) -> float:
    vm = labvm.Vm(seg, f"vm-{firmware}-{mac[-2:]}", workdir, mac, firmware=firmware)
    started = time.monotonic()
    vm.start()
    try:
        vm.wait_for(MARKER, timeout=timeout)
        return time.monotonic() - started
    finally:
        vm.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--firmware", default="bios,uefi")
    ap.add_argument("--servers", default="dnsmasq,bootsrv")
    args = ap.parse_args(argv)
    ok, reason = labmod.available()
    if not ok:
        print(f"bench_pxe: {reason}", file=sys.stderr)
        return 1
    firmwares = args.firmware.split(",")
    results: dict[tuple[str, str], float] = {}
    for server in args.servers.split(","):
        with tempfile.TemporaryDirectory(prefix=f"bench-pxe-{server}-") as tmp, labmod.Lab() as lab:
            workdir = Path(tmp)
            kernel, initrd = payload(workdir)
            seg = lab.segment("pxe")
            site = None  # dnsmasq boots any MAC; bootsrv boots the machines it knows (netboot once)
            if server == "dnsmasq":
                dnsmasq_server(lab, seg, workdir, kernel, initrd)
            else:
                site, _host = bootsrv_server(lab, seg, workdir, kernel, initrd)
            for firmware in firmwares:
                times = []
                for run in range(args.runs):
                    mac = f"52:54:00:be:{firmwares.index(firmware):02x}:{run:02x}"
                    if site is not None:
                        site.add_machine(mac, f"bench-{firmware}-{run}", profile="lab-test")
                    times.append(boot_once(lab, seg, workdir, firmware, mac))
                    print(f"{server:8} {firmware:5} run {run + 1}: {times[-1]:.1f} s", flush=True)
                results[(server, firmware)] = statistics.median(times)
    print()
    print(f"{'firmware':9} {'dnsmasq s':>10} {'bootsrv s':>10} {'ratio':>7}  (bootsrv/dnsmasq; target <= 1.0)")
    for firmware in firmwares:
        ref, mine = results.get(("dnsmasq", firmware)), results.get(("bootsrv", firmware))
        ratio = f"{mine / ref:.2f}" if ref and mine else "-"
        print(f"{firmware:9} {ref or 0:10.1f} {mine or 0:10.1f} {ratio:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
