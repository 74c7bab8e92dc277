"""The test-VM toolkit: a Debian kernel + busybox initramfs built at test time boots under qemu
TCG on a lab segment and talks to a host in the lab over the tap."""

from __future__ import annotations

import shutil
import sys

import pytest

from bootsrv.lab import vm as labvm

from ..conftest import need

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_module_closure_orders_dependencies_first():
    mods = [p.name for p in labvm.module_closure(("virtio_net",), labvm.kernel_release())]
    assert mods[-1] == "virtio_net.ko"
    assert mods.index("failover.ko") < mods.index("net_failover.ko") < mods.index("virtio_net.ko")


def test_vm_boots_initramfs_and_reaches_lab_host(lab, tmp_path):
    need(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 is not installed")
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello-from-lab")
    init = labvm.INIT_PRELUDE + (
        "echo TEST-BOOTED\nnic=$(vm_nic)\nip link set $nic up\nip addr add 10.233.0.50/24 dev $nic\nsleep 1\n"
        'echo "got:$(wget -q -O - http://10.233.0.2:8000/hello.txt)"\npoweroff -f\n'
    )
    initrd = labvm.build_initramfs(tmp_path / "initrd.gz", init)
    seg = lab.segment("lan")
    srv = lab.host("srv")
    lab.plug(srv, seg, "net0", "10.233.0.2/24")
    srv.popen([sys.executable, "-m", "http.server", "-d", str(www), "-b", "10.233.0.2", "8000"])
    vm = labvm.Vm(
        seg,
        "vm1",
        tmp_path,
        "52:54:00:00:00:01",
        kernel=labvm.kernel_path(),
        initrd=initrd,
        append="console=ttyS0 quiet",
    ).start()
    out = vm.wait_for("got:", timeout=120)
    vm.wait_for("Power down", timeout=30)
    assert "TEST-BOOTED" in out
    assert "got:hello-from-lab" in vm.output()
