"""The boot side with real clients against the app under waitress on 127.0.0.1: curl for Range and
conditional GET, and the lab installer's own steps (busybox wget fetches the answer named on the
kernel command line, busybox sh runs it, it enrolls) followed by the next boot being local."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading

import pytest
from boot_builders import NOW, REPO, make_wiring
from waitress.server import create_server

from bootsrv.http.app import create_app
from bootsrv.machines.model import Machine, State

MAC = "52:54:00:12:34:56"


@pytest.fixture
def served(tmp_path):
    # A copy of the profiles whose lab "disk" is a path that is no block device, so the answer
    # script can never write to a disk of this machine.
    profiles = tmp_path / "profiles"
    shutil.copytree(REPO / "profiles", profiles)
    lab = profiles / "lab-test.toml"
    lab.write_text(lab.read_text().replace('disk = "/dev/vda"', f'disk = "{tmp_path}/no-disk"'))
    wiring = make_wiring(tmp_path, "")
    server = create_server(create_app(wiring), host="127.0.0.1", port=0, threads=4)
    base = f"http://127.0.0.1:{server.effective_port}"
    # The URLs the scripts carry must reach this server.
    wiring.config = wiring.config.model_copy(
        update={
            "boot": wiring.config.boot.model_copy(update={"http_base_url": base}),
            "profiles": wiring.config.profiles.model_copy(update={"profiles_dir": profiles}),
        }
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield wiring, base
    server.close()
    thread.join(timeout=5)


def curl(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=30)


def test_curl_range_and_conditional(served):
    wiring, base = served
    data = bytes(range(256)) * 4096  # 1 MiB
    path = wiring.config.boot.files_root / "installers/debian12/amd64/initrd.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    url = f"{base}/files/installers/debian12/amd64/initrd.gz"
    part = curl("-r", "1000-1999", "-w", "%{http_code}", url)
    assert part.stdout[:-3] == data[1000:2000] and part.stdout[-3:] == b"206"
    beyond = curl("-o", "/dev/null", "-w", "%{http_code}", "-r", f"{len(data)}-", url)
    assert beyond.stdout == b"416"
    head = curl("-D", "-", "-o", "/dev/null", url).stdout.decode()
    etag = re.search(r"(?im)^etag: (\S+)", head)[1]
    same = curl("-o", "/dev/null", "-w", "%{http_code}", "-H", f"If-None-Match: {etag}", url)
    assert same.stdout == b"304"
    newer = curl("-o", "/dev/null", "-w", "%{http_code}", "-z", str(path), url)  # If-Modified-Since: file's mtime
    assert newer.stdout == b"304"
    escape = curl("--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/files/../../etc/passwd")
    assert escape.stdout == b"400"


def test_lab_installer_cycle_with_busybox(served, tmp_path):
    """What the lab VM's initramfs does, with the same busybox: wget the answer URL from the
    kernel command line, run it; then the machine's next boot script says local."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox not installed")
    wiring, base = served
    # The "machine" runs on loopback here: that is the address bootsrv knows for it (declared, as
    # `machine add --address` does), so its boot, answer and callback come from there.
    machine = Machine(
        mac=MAC, hostname="hv1", state=State.NEW, profile="lab-test", created=NOW, addresses=(("lan", "127.0.0.1"),)
    )
    wiring.machines.put(machine, None)
    script = curl(f"{base}/boot/{MAC}.ipxe").stdout.decode()
    answer = re.search(r"bootsrv\.answer=(\S+)", script)[1]

    bin_ = tmp_path / "bb"
    bin_.mkdir()
    for applet in ("sh", "grep", "awk", "cat", "wget", "echo", "dd", "sync"):
        (bin_ / applet).symlink_to(busybox)
    sys_, proc = tmp_path / "sys", tmp_path / "proc"
    (sys_ / "class/net/eth0/device").mkdir(parents=True)
    (sys_ / "class/net/eth0/address").write_text(MAC + "\n")
    (sys_ / "block/vda").mkdir(parents=True)
    (sys_ / "block/vda/size").write_text("2097152\n")
    proc.mkdir()
    (proc / "cpuinfo").write_text("processor\t: 0\n\nprocessor\t: 1\n")
    (proc / "meminfo").write_text("MemTotal:        1048576 kB\n")
    env = {"PATH": str(bin_), "BOOTSRV_SYSFS": str(sys_), "BOOTSRV_PROCFS": str(proc)}

    fetched = subprocess.run(
        ["wget", "-q", "-O", str(tmp_path / "answer.sh"), answer], env=env, capture_output=True, text=True, timeout=30
    )
    assert fetched.returncode == 0, fetched.stderr
    ran = subprocess.run(["sh", str(tmp_path / "answer.sh")], env=env, capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "BOOTSRV-LAB-INSTALLED mac=52:54:00:12:34:56" in ran.stdout and "BOOTSRV-LAB-ENROLLED" in ran.stdout
    machine = wiring.machines.get(MAC)
    assert machine.state is State.ENROLLED and machine.facts.cpus == 2 and machine.facts.memory_mib == 1024

    again = subprocess.run(["wget", "-q", "-O", "-", answer], env=env, capture_output=True, text=True, timeout=30)
    assert again.returncode != 0  # the answer died with its token (409)
    assert "sanboot --no-describe --drive 0x80" in curl(f"{base}/boot/{MAC}.ipxe").stdout.decode()
