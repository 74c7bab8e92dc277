"""Real TFTP clients (Debian's tftp-hpa, curl, atftp, busybox) against `bootsrv serve`'s TFTP on
loopback (a free high port, no namespace needed), serving a root filled by `bootsrv tftp populate`:
every fetch is compared by checksum with the file on disk."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import need

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tftp(tmp_path_factory):
    for tool in ("tftp", "curl", "atftp", "busybox"):
        need(shutil.which(tool) is not None, f"{tool} is not installed (./setup installs it)")
    work = tmp_path_factory.mktemp("tftp")
    root = work / "root"
    conf = work / "bootsrv.toml"
    port = free_port()
    conf.write_text(f"""
[store]
directory = "{work / "store"}"
[boot]
tftp_root = "{root}"
[tftp]
address = "127.0.0.1"
port = {port}
[dhcp]
enabled = false
[http]
enabled = false
[dns]
enabled = false
""")
    run = [sys.executable, "-m", "bootsrv", "--config", str(conf)]
    subprocess.run(run + ["tftp", "populate"], check=True, capture_output=True, cwd=REPO)
    (root / "pxelinux.cfg").mkdir()
    (root / "pxelinux.cfg" / "default").write_text("DEFAULT local\nLABEL local\n  LOCALBOOT 0\n")
    (root / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024 + 17))
    for p in root.rglob("*"):
        if p.is_file():
            p.chmod(0o644)
    log = open(work / "serve.log", "w")
    proc = subprocess.Popen(run + ["serve"], stderr=log, cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while "event=ready" not in (work / "serve.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (work / "serve.log").read_text()
            time.sleep(0.1)
        yield port, root, work
    finally:
        proc.terminate()
        proc.wait(10)


def run(cmd: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


CLIENTS = {
    "tftp-hpa": lambda port, name, out: ["tftp", "-m", "binary", "127.0.0.1", str(port), "-c", "get", name, str(out)],
    "curl": lambda port, name, out: ["curl", "-sS", "-o", str(out), f"tftp://127.0.0.1:{port}/{name}"],
    "curl blksize 1468": lambda port, name, out: [
        "curl",
        "-sS",
        "--tftp-blksize",
        "1468",
        "-o",
        str(out),
        f"tftp://127.0.0.1:{port}/{name}",
    ],
    "atftp tsize": lambda port, name, out: [
        "atftp",
        "--option",
        "tsize",
        "-g",
        "-r",
        name,
        "-l",
        str(out),
        "127.0.0.1",
        str(port),
    ],
    "atftp windowsize 16": lambda port, name, out: [
        "atftp",
        "--option",
        "blksize 1468",
        "--option",
        "windowsize 16",
        "-g",
        "-r",
        name,
        "-l",
        str(out),
        "127.0.0.1",
        str(port),
    ],
    "busybox blksize 1024": lambda port, name, out: [
        "busybox",
        "tftp",
        "-g",
        "-b",
        "1024",
        "-r",
        name,
        "-l",
        str(out),
        "127.0.0.1",
        str(port),
    ],
}
FILES = ["undionly.kpxe", "ipxe.efi", "snponly.efi", "shimx64.efi", "grubx64.efi", "pxelinux.cfg/default", "big.bin"]


@pytest.mark.parametrize("client", list(CLIENTS))
def test_clients_fetch_identical_files(tftp, tmp_path, client):
    port, root, _ = tftp
    for name in FILES:
        out = tmp_path / name.replace("/", "_")
        res = run(CLIENTS[client](port, name, out), tmp_path)
        assert res.returncode == 0 and out.exists(), (name, res.stdout, res.stderr)
        assert digest(out) == digest(root / name), f"{client} got a different {name}"


def test_clients_refused_outside_the_root(tftp, tmp_path):
    port, root, _ = tftp
    (root.parent / "outside.txt").write_text("secret\n")
    for name in ("../outside.txt", "..\\outside.txt", "/etc/passwd", "missing.efi"):
        out = tmp_path / "out"
        res = run(CLIENTS["curl"](port, name, out), tmp_path)
        assert res.returncode != 0
        assert not out.exists() or b"secret" not in out.read_bytes()
        res = run(CLIENTS["tftp-hpa"](port, name, out), tmp_path)
        assert "Error code" in res.stderr + res.stdout


def test_clients_refused_private_and_hard_linked_files(tftp, tmp_path):
    """bootsrv.servable's rule (HTTP's /tftp/ and /files/ apply it too): a file only root may
    read, and a hard link inside the root to a world-readable file outside it, are ERROR 2."""
    port, root, _ = tftp
    (root / "private.key").write_text("secret\n")
    (root / "private.key").chmod(0o600)
    (root.parent / "linked-secret.txt").write_text("secret\n")
    (root.parent / "linked-secret.txt").chmod(0o644)
    os.link(root.parent / "linked-secret.txt", root / "linked.txt")
    try:
        for name in ("private.key", "linked.txt"):
            out = tmp_path / "out"
            res = run(CLIENTS["tftp-hpa"](port, name, out), tmp_path)
            assert "Error code 2" in res.stderr + res.stdout, (name, res)
            res = run(CLIENTS["curl"](port, name, out), tmp_path)
            assert res.returncode != 0, (name, res)
            assert not out.exists() or b"secret" not in out.read_bytes()
    finally:
        (root / "private.key").unlink()
        (root / "linked.txt").unlink()


def test_put_is_refused(tftp, tmp_path):
    port, root, _ = tftp
    src = tmp_path / "upload.bin"
    src.write_bytes(b"x" * 1000)
    res = run(["tftp", "-m", "binary", "127.0.0.1", str(port), "-c", "put", str(src), "upload.bin"], tmp_path)
    assert "Error code 2" in res.stderr + res.stdout, res
    res = run(["atftp", "-p", "-l", str(src), "-r", "upload.bin", "127.0.0.1", str(port)], tmp_path)
    assert res.returncode != 0
    assert not (root / "upload.bin").exists()


def test_twenty_concurrent_clients(tftp, tmp_path):
    port, root, work = tftp
    want = digest(root / "big.bin")
    kinds = ["curl blksize 1468", "atftp windowsize 16", "tftp-hpa", "busybox blksize 1024"]

    def one(i: int) -> str:
        out = tmp_path / f"c{i}.bin"
        res = run(CLIENTS[kinds[i % len(kinds)]](port, "big.bin", out), tmp_path, timeout=120)
        assert res.returncode == 0, res.stderr
        return digest(out)

    with ThreadPoolExecutor(20) as pool:
        got = list(pool.map(one, range(20)))
    assert got == [want] * 20
    time.sleep(0.2)
    log = (work / "serve.log").read_text()
    assert "level=error" not in log
    assert log.count("event=tftp.transfer") >= 20  # one line per transfer
