"""Issue 6's full cycle with real firmware, from bootsrv alone (its DHCP, TFTP and HTTP): a VM
with a blank disk PXE-boots, its installer fetches the answer file, stamps the disk and enrolls;
after its reboot it is told to boot locally. A second VM whose installer dies before the callback
keeps getting its install boot. This is what `bootsrv demo` shows."""

from __future__ import annotations

import re
import shutil

import pytest

from bootsrv.lab import demo
from tests.conftest import need

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_install_enroll_then_local_boot_bios(lab, tmp_path):
    """BIOS VMs with qemu's iPXE ROM (DHCP -> HTTP), hv1 enrolling and hv2 failing, side by side."""
    need(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 is not installed")
    lines: list[str] = []
    got = demo.install_cycle(lab, tmp_path, lines.append, firmware="bios")

    hv1, hv2 = got["hv1"], got["hv2"]
    assert hv1["state"] == "enrolled", hv1
    assert hv2["state"] == "installing", hv2
    # the stamp the installer wrote is on hv1's disk
    assert b"BOOTSRV-LAB-INSTALLED" in (tmp_path / "hv1.img").read_bytes()[: 1 << 20]
    # after enrollment: booted once into the installer, then the disk (no second install)
    console = got["hv1_console"]
    assert console.count("BOOTSRV-INSTALLER-START") == 1
    assert "Nothing to boot" in console.split("BOOTSRV-INSTALLER-DONE", 1)[1]
    # hv2 never enrolled: its install boot came again after its reboot
    assert got["hv2_console"].count("BOOTSRV-INSTALLER-START") >= 2
    pool = {h["name"]: h for h in got["hypervisors"]}
    assert set(pool) == {"hv1"}
    assert pool["hv1"]["state"] == "active" and pool["hv1"]["mac"] == "52:54:00:de:00:01"
    assert pool["hv1"]["cpus"] >= 1 and pool["hv1"]["memory_mib"] > 0  # the VM's facts, from /proc


def test_install_enroll_then_local_boot_uefi_pxe(lab, tmp_path):
    """A UEFI VM by OVMF's own PXE (no iPXE ROM): DHCP -> TFTP ipxe.efi -> iPXE DHCP -> HTTP script
    -> kernel + installer -> enrollment; after the reboot DHCP gives it no boot file."""
    need(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 is not installed")
    got = demo.install_cycle(lab, tmp_path, lambda line: None, firmware="uefi", second=False)
    assert got["hv1"]["state"] == "enrolled", got["hv1"]
    console = got["hv1_console"]
    assert "NBP file downloaded successfully" in console  # the firmware's TFTP fetch of ipxe.efi
    assert console.count("BOOTSRV-INSTALLER-START") == 1
    assert "PXE-E16: No valid offer" in console.split("BOOTSRV-INSTALLER-DONE", 1)[1]
    served = got["site"].served()
    assert re.search(r"event=tftp.transfer .*file=ipxe.efi bytes=[1-9][0-9]* .*outcome=ok", served), served
