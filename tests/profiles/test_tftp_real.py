"""The rendered per-machine files through bootsrv's TFTP server (loopback) to real clients:
tftp-hpa's `tftp` and curl's tftp://, as pxelinux and GRUB would fetch them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bootsrv.app.wiring import Wiring
from bootsrv.config import parse
from bootsrv.machines.enrollment import digest
from bootsrv.machines.model import Machine, MemoryRegistry, State
from bootsrv.tftp.server import TftpServer

REPO = Path(__file__).resolve().parents[2]
MAC = "52:54:00:12:34:56"


@pytest.fixture
def served(tmp_path):
    config = parse(
        f"""
[store]
directory = "{tmp_path}/store"
[boot]
http_base_url = "http://192.0.2.1:8080"
unknown_machines = "local"
[profiles]
profiles_dir = "{REPO / "profiles"}"
templates_dir = "{REPO / "templates"}"
""",
        "t.toml",
    )
    wiring = Wiring(config, clock=lambda: 1_800_000_000.0)
    # tftp-hpa and curl ask from loopback: the machine's declared address here.
    machine = Machine(mac=MAC, hostname="hv1", state=State.NEW, profile="lab-test", addresses=(("lan", "127.0.0.1"),))
    wiring.machines = MemoryRegistry([machine])
    root = tmp_path / "tftp"
    root.mkdir()
    server = TftpServer(str(root), "127.0.0.1", 0, dynamic=wiring.tftp_dynamic, workers=2)
    server.start()
    yield wiring, server.port, tmp_path
    server.stop()


def tftp_hpa(port: int, name: str, dest: Path) -> subprocess.CompletedProcess:
    if shutil.which("tftp") is None:
        pytest.skip("tftp-hpa is not installed")
    return subprocess.run(
        ["tftp", "127.0.0.1", str(port), "-m", "binary", "-c", "get", name, str(dest)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_pxelinux_config_for_a_machine_being_installed(served):
    wiring, port, tmp_path = served
    dest = tmp_path / "got.cfg"
    done = tftp_hpa(port, "pxelinux.cfg/01-52-54-00-12-34-56", dest)
    assert done.returncode == 0 and "Error" not in done.stdout + done.stderr, done.stdout + done.stderr
    text = dest.read_text()
    assert "KERNEL http://192.0.2.1:8080/files/lab/vmlinuz" in text and "bootsrv.answer=" in text
    token = text.split("?token=")[1].split()[0]
    assert [t.digest for t in wiring.machines.get(MAC).tokens] == [digest(token)]


def test_grub_chain_and_machine_config_with_curl(served):
    wiring, port, _ = served
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    chain = subprocess.run(
        ["curl", "-sS", f"tftp://127.0.0.1:{port}/grub/grub.cfg"], capture_output=True, text=True, timeout=30
    )
    assert chain.returncode == 0 and "grub.cfg-01-$m1-$m2-$m3-$m4-$m5-$m6" in chain.stdout
    own = subprocess.run(
        ["curl", "-sS", f"tftp://127.0.0.1:{port}/grub/grub.cfg-01-52-54-00-12-34-56"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert own.returncode == 0 and "linux (http,192.0.2.1:8080)/files/lab/vmlinuz" in own.stdout


def test_unknown_machine_and_missing_static_file(served):
    wiring, port, tmp_path = served
    dest = tmp_path / "other.cfg"
    done = tftp_hpa(port, "pxelinux.cfg/01-52-54-00-99-99-99", dest)
    assert done.returncode == 0 and "Error" not in done.stdout, done.stdout
    assert "LOCALBOOT 0" in dest.read_text()
    missing = tftp_hpa(port, "pxelinux.cfg/default", tmp_path / "none")
    assert "Error code 1: file not found" in missing.stdout  # not ours, not on disk
    assert wiring.machines.get("52:54:00:99:99:99") is None
