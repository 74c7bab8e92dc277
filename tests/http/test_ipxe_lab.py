"""Real iPXE runs bootsrv's scripts (integration): in a lab namespace, `bootsrv serve` (HTTP only)
serves the lab-test profile; a qemu VM (TCG) starts iPXE (Debian's ipxe.lkrn, given a tiny
start script that sets a static address and chains /boot/${mac}.ipxe, so no DHCP or TFTP is
involved), which loads the kernel and the busybox "installer" named by the install script; the
installer fetches its answer with the token from its command line, stamps the disk and enrolls.
After its reboot iPXE is told to boot from the local disk."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from boot_builders import REPO, lab_serve_config

from bootsrv.lab import vm as labvm
from bootsrv.machines.model import Machine, State
from bootsrv.machines.store import FileRegistry
from tests.conftest import need

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IPXE = Path("/usr/lib/ipxe/ipxe.lkrn")
SERVER = "10.236.0.2"
MAC = "52:54:00:36:00:01"

START = f"""#!ipxe
set net0/ip 10.236.0.50
set net0/netmask 255.255.255.0
ifopen net0
chain http://{SERVER}:8080/boot/${{net0/mac}}.ipxe
"""

INSTALLER = """
echo INSTALLER-START
ip link set lo up
nic=$(vm_nic)
ip link set "$nic" up
ip addr add 10.236.0.50/24 dev "$nic"
sleep 1
answer=$(arg bootsrv.answer)
if wget -q -O /tmp/answer.sh "$answer"; then
  sh /tmp/answer.sh && echo INSTALLER-DONE || echo INSTALLER-ANSWER-FAILED
else
  echo INSTALLER-NO-ANSWER
fi
sync
reboot -f
"""


def test_ipxe_install_then_local(lab, tmp_path):
    need(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 is not installed")
    need(IPXE.is_file(), "ipxe is not installed (/usr/lib/ipxe/ipxe.lkrn)")
    files = tmp_path / "files/lab"
    files.mkdir(parents=True)
    shutil.copy(labvm.kernel_path(), files / "vmlinuz")
    labvm.build_initramfs(files / "initrd.gz", labvm.INIT_PRELUDE + INSTALLER)
    (tmp_path / "store").mkdir()
    # No DHCP here: the machine's static address is declared, as `machine add --address` does, and
    # bootsrv gives the install boot, the answer and the enrollment only to it (docs/security.md).
    FileRegistry(tmp_path / "store").put(
        Machine(
            mac=MAC,
            hostname="hv1",
            state=State.NEW,
            profile="lab-test",
            created=time.time(),
            addresses=(("lan", "10.236.0.50"),),
        ),
        None,
    )
    config = tmp_path / "site.toml"
    config.write_text(lab_serve_config(tmp_path, SERVER))
    seg = lab.segment("lan")
    srv = lab.host("srv")
    lab.plug(srv, seg, "net0", f"{SERVER}/24")
    log = open(tmp_path / "serve.log", "wb")
    srv.popen(
        [sys.executable, "-m", "bootsrv", "--config", str(config), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(REPO),
    )
    deadline = time.monotonic() + 60
    while True:
        probe = srv.run(
            [
                sys.executable,
                "-c",
                f"import urllib.request; urllib.request.urlopen('http://{SERVER}:8080/healthz', timeout=1)",
            ],
            check=False,
        )
        if probe.returncode == 0:
            break
        assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
        time.sleep(0.3)

    (tmp_path / "start.ipxe").write_text(START)
    disk = labvm.blank_disk(tmp_path / "hv1.img")
    vm = labvm.Vm(seg, "hv1", tmp_path, MAC, disk=disk, kernel=IPXE, initrd=tmp_path / "start.ipxe").start()
    try:
        vm.wait_for("INSTALLER-DONE", timeout=240)
        vm.wait_for("bootsrv: booting from the local disk", timeout=240)
        out = vm.wait_for("Booting from Hard Disk", timeout=120)
    finally:
        vm.stop()
    assert "bootsrv: installing lab-test on hv1.lab.example" in out
    assert "BOOTSRV-LAB-INSTALLED mac=52:54:00:36:00:01" in out and "BOOTSRV-LAB-ENROLLED" in out
    assert "(machine is enrolled)" in out.split("INSTALLER-DONE", 1)[1]
    assert out.count("INSTALLER-START") == 1  # installed once, then local: no reinstall loop
    assert disk.read_bytes()[:512].startswith(b"BOOTSRV-LAB-INSTALLED hv1.lab.example")
    machine = FileRegistry(tmp_path / "store").get(MAC)
    assert machine.state is State.ENROLLED and machine.facts.nics[0].mac == MAC
    # BIOS local boot: sanboot of drive 0x80 (a stamped disk has no boot sector, so it fails),
    # then `exit` hands back to SeaBIOS, which tries the disk itself.
    after = out.split("(machine is enrolled)", 1)[1]
    assert "Booting from SAN device 0x80" in after and "Booting from Hard Disk" in after
    served = (tmp_path / "serve.log").read_text()
    assert "event=boot.answer" in served and "file=answer.sh" in served
