"""The installer-side callback script, run by real shells (dash+curl, busybox sh+wget) against the
real HTTP app on 127.0.0.1, reading a fake /sys and /proc."""

from __future__ import annotations

import shutil
import subprocess
import threading

import pytest
from machines_builders import MAC, machine
from werkzeug.serving import make_server

from bootsrv.app.wiring import Wiring
from bootsrv.config import parse
from bootsrv.errors import InvalidInput
from bootsrv.http.app import create_app
from bootsrv.machines.enrollment import callback_script, start_install
from bootsrv.machines.model import State

BE_MAC = "52:54:00:00:00:02"


def fake_machine(root):
    sys_, proc = root / "sys", root / "proc"
    for name, addr in [("lo", "00:00:00:00:00:00"), ("fe0", MAC), ("be0", BE_MAC), ("br0", MAC)]:
        (sys_ / "class/net" / name).mkdir(parents=True)
        (sys_ / "class/net" / name / "address").write_text(addr + "\n")
        if name in ("fe0", "be0"):
            (sys_ / "class/net" / name / "device").mkdir()  # physical NICs have a device link
    for name, sectors in [("vda", 20971520), ("vdb", 2048), ("loop0", 100), ("sr0", 5)]:
        (sys_ / "block" / name).mkdir(parents=True)
        (sys_ / "block" / name / "size").write_text(f"{sectors}\n")
    proc.mkdir()
    (proc / "cpuinfo").write_text("".join(f"processor\t: {i}\nmodel name\t: x\n\n" for i in range(4)))
    (proc / "meminfo").write_text("MemTotal:        2097152 kB\nMemFree:          100 kB\n")
    return {"BOOTSRV_SYSFS": str(sys_), "BOOTSRV_PROCFS": str(proc)}


@pytest.fixture
def server(tmp_path):
    config = parse(f'[store]\ndirectory = "{tmp_path}/store"\n', "test.toml")
    wiring = Wiring(config)
    srv = make_server("127.0.0.1", 0, create_app(wiring), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield wiring, f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    thread.join(timeout=5)


def busybox_path(tmp_path):
    """A PATH holding only busybox applets: no curl, so the script takes busybox wget."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox not installed")
    bin_ = tmp_path / "bb"
    bin_.mkdir()
    for applet in ("sh", "grep", "awk", "cat", "wget", "echo"):
        (bin_ / applet).symlink_to(busybox)
    return str(bin_)


@pytest.mark.parametrize("shell", ["dash+curl", "busybox+wget"])
def test_callback_enrolls_once(tmp_path, server, shell):
    wiring, url = server
    # The installer calls back over loopback here: that is the address bootsrv knows for it.
    wiring.machines.put(machine(addresses=(("public", "127.0.0.1"),)), None)
    _, token = start_install(wiring.machines, MAC, wiring.clock(), 600)
    script = tmp_path / "enroll.sh"
    script.write_text(callback_script(url, token, MAC, "hv1", "kvm", "qemu+ssh://hv1/system"))
    env = fake_machine(tmp_path)
    if shell == "dash+curl":
        if shutil.which("dash") is None or shutil.which("curl") is None:
            pytest.skip("dash or curl not installed")
        argv, env["PATH"] = ["dash", str(script)], "/usr/bin:/bin"
    else:
        env["PATH"] = busybox_path(tmp_path)
        argv = ["sh", str(script)]
    ok = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert '"status":"enrolled"' in ok.stdout.replace(" ", "")
    m = wiring.machines.get(MAC)
    assert m.state is State.ENROLLED
    assert m.facts.cpus == 4 and m.facts.memory_mib == 2048
    # physical NICs first; the bridge repeating fe0's MAC is left out
    assert [(n.name, n.mac) for n in m.facts.nics] == [("be0", BE_MAC), ("fe0", MAC)]
    assert [(d.name, d.size_bytes) for d in m.facts.disks] == [("vda", 20971520 * 512), ("vdb", 2048 * 512)]
    # The same script again is a replay: refused, nothing changes.
    before = wiring.machines.list()
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert again.returncode != 0
    assert wiring.machines.list() == before
    if shell == "dash+curl":
        assert "already used" in again.stdout


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("ftp://x", "T" * 43, MAC, "hv1", "kvm", "qemu:///system"), "base_url"),
        (("http://x/'; rm -rf /", "T" * 43, MAC, "hv1", "kvm", "qemu:///system"), "base_url"),
        (("http://x", "T$(reboot)" * 5, MAC, "hv1", "kvm", "qemu:///system"), "token"),
        (("http://x", "T" * 43, "nope", "hv1", "kvm", "qemu:///system"), "mac"),
        (("http://x", "T" * 43, MAC, "hv 1", "kvm", "qemu:///system"), "hostname"),
        (("http://x", "T" * 43, MAC, "hv1", "kvm", "xen:///system"), "facts.libvirt_uri"),
        (("http://x", "T" * 43, MAC, "hv1", "hyperv", "qemu:///system"), "facts.hypervisor"),
    ],
    ids=["scheme", "quote", "token", "mac", "hostname", "uri", "hypervisor"],
)
def test_callback_script_refuses_bad_values(args, field):
    with pytest.raises(InvalidInput) as info:
        callback_script(*args)
    assert info.value.field == field
