"""The real Debian installer fetches its preseed from bootsrv (integration, issue 5's proof):
iPXE (ipxe.lkrn, static address, no DHCP/TFTP) chains /boot/<mac>.ipxe for a machine with the
debian12-kvm-hypervisor profile; the script loads Debian's netboot kernel and initrd (from
debian-installer-12-netboot-amd64, put in place by `bootsrv profile fetch-installer`); d-i comes
up in auto mode and fetches url=/profiles/<mac>/preseed.cfg?token=... Then, with no question
asked (locale, keyboard, network, host name all answered by the preseed), it goes on to check the
preseeded mirror, which is unreachable here: "Bad archive mirror" is where the test stops.

The profile is the repo's, plus static netcfg arguments (the lab segment has no DHCP server) and
a mirror address that refuses connections."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from boot_builders import REPO, lab_serve_config
from click.testing import CliRunner

from bootsrv.cli.main import main
from bootsrv.cli.profiles import DI_SOURCE
from bootsrv.lab import vm as labvm
from bootsrv.machines.model import Machine, State
from bootsrv.machines.store import FileRegistry
from tests.conftest import need

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IPXE = Path("/usr/lib/ipxe/ipxe.lkrn")
SERVER = "10.237.0.2"
MAC = "52:54:00:37:00:01"
STATIC = (
    '"netcfg/disable_autoconfig=true", "netcfg/get_ipaddress=10.237.0.50", '
    '"netcfg/get_netmask=255.255.255.0", "netcfg/get_gateway=10.237.0.2", '
    '"netcfg/get_nameservers=10.237.0.2", "netcfg/confirm_static=true",'
)


def test_debian_installer_fetches_its_preseed(lab, tmp_path):
    need(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 is not installed")
    need(IPXE.is_file(), "ipxe is not installed")
    need((DI_SOURCE / "linux").is_file(), "debian-installer-12-netboot-amd64 is not installed")
    profiles = tmp_path / "profiles"
    shutil.copytree(REPO / "profiles", profiles)
    kvm = profiles / "debian12-kvm-hypervisor.toml"
    kvm.write_text(kvm.read_text().replace('"auto=true",', '"auto=true", ' + STATIC))
    # A mirror that refuses at once (nothing listens on port 9), so d-i's mirror check fails fast.
    site = profiles / "site.toml"
    site.write_text(site.read_text().replace("http://deb.debian.org/debian", f"http://{SERVER}:9/debian"))
    (tmp_path / "store").mkdir()
    # The static address d-i and iPXE use is declared for the machine (as `machine add --address`
    # does): bootsrv gives the install boot and the preseed only to it (docs/security.md).
    FileRegistry(tmp_path / "store").put(
        Machine(
            mac=MAC,
            hostname="hv1",
            state=State.NEW,
            profile="debian12-kvm-hypervisor",
            created=time.time(),
            addresses=(("lan", "10.237.0.50"),),
        ),
        None,
    )
    config = tmp_path / "site.toml"
    config.write_text(lab_serve_config(tmp_path, SERVER, profiles))
    fetched = CliRunner().invoke(main, ["--config", str(config), "profile", "fetch-installer"])
    assert fetched.exit_code == 0, fetched.output

    seg = lab.segment("lan")
    srv = lab.host("srv")
    lab.plug(srv, seg, "net0", f"{SERVER}/24")
    log_path = tmp_path / "serve.log"
    srv.popen(
        [sys.executable, "-m", "bootsrv", "--config", str(config), "serve"],
        stdout=open(log_path, "wb"),
        stderr=subprocess.STDOUT,
        cwd=str(REPO),
    )
    deadline = time.monotonic() + 60
    while (
        srv.run(
            [
                sys.executable,
                "-c",
                f"import urllib.request; urllib.request.urlopen('http://{SERVER}:8080/healthz', timeout=1)",
            ],
            check=False,
        ).returncode
        != 0
    ):
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.3)

    (tmp_path / "start.ipxe").write_text(
        f"#!ipxe\nset net0/ip 10.237.0.50\nset net0/netmask 255.255.255.0\n"
        f"ifopen net0\nchain http://{SERVER}:8080/boot/${{net0/mac}}.ipxe\n"
    )
    vm = labvm.Vm(seg, "di", tmp_path, MAC, kernel=IPXE, initrd=tmp_path / "start.ipxe", memory_mib=1024).start()
    try:
        deadline = time.monotonic() + 600  # ~40 s on an idle 2-core machine; generous for a loaded one
        while "file=preseed.cfg" not in log_path.read_text():
            assert time.monotonic() < deadline, (
                f"no preseed fetch:\n{vm.output()[-3000:]}\n{log_path.read_text()[-2000:]}"
            )
            assert vm.proc.poll() is None, vm.output()[-3000:]
            time.sleep(1)
        # Everything before the mirror came from the preseed: a question would stop d-i earlier.
        vm.wait_for("Bad archive mirror", timeout=480)
    finally:
        vm.stop()
    console = vm.output()
    assert "bootsrv: installing debian12-kvm-hypervisor on hv1.lab.example" in console
    served = log_path.read_text()
    assert "event=boot.answer" in served and "mac=52:54:00:37:00:01" in served
    # The token on d-i's command line was accepted: no answer fetch was refused.
    assert not [line for line in served.splitlines() if "event=http.refused" in line and "path=/profiles/" in line]
    assert "Checking the Debian archive mirror" in console
    assert "preconfiguration file" not in console.lower()  # d-i's "failed to process/retrieve" errors
