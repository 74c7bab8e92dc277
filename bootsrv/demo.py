"""The lab demo: bootsrv serving a namespace segment, run by `bootsrv demo`.

It builds its own namespaces (never touching this machine's interfaces), writes a site config for
them, starts `bootsrv serve` inside the server namespace, and walks through what a client sees,
printing each step. It stops by itself and tears everything down.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bootsrv import lab as labmod

SERVER_IP = "10.231.0.2"
SUBNET = "10.231.0.0/24"


def site_config(workdir: Path) -> str:
    return f"""
[server]
name = "demo-a"
owner_ips = ["{SERVER_IP}"]
rescan_interval = 5

[store]
directory = "{workdir}/leases"

[[networks]]
name = "public"
segment = "odd"
subnet = "{SUBNET}"
router = "{SERVER_IP}"
dns_servers = ["{SERVER_IP}"]
domain = "lab.example"
lease_time = 600
interface = "net0"
[[networks.ranges]]
start = "10.231.0.100"
end = "10.231.0.150"

[boot]
tftp_root = "{workdir}/tftp"
http_base_url = "http://{SERVER_IP}:8080"

[tftp]
address = "{SERVER_IP}"
[http]
address = "{SERVER_IP}"
[dns]
address = "{SERVER_IP}"
"""


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"demo: timed out waiting for {what}")


def run(say: Callable[[str], None] = print) -> None:
    with tempfile.TemporaryDirectory(prefix="bootsrv-demo-") as tmp, labmod.Lab() as lab:
        workdir = Path(tmp)
        (workdir / "tftp").mkdir()
        config = workdir / "site.toml"
        config.write_text(site_config(workdir))
        say(f"[1] lab: segment 'public' {SUBNET}, server namespace at {SERVER_IP}, a client namespace")
        seg = lab.segment("public")
        server, client = lab.host("server"), lab.host("client")
        lab.plug(server, seg, "net0", f"{SERVER_IP}/24")
        lab.plug(client, seg, "net0", "10.231.0.50/24")
        say(f"[2] bootsrv serve --config {config} (inside the server namespace)")
        log = open(workdir / "serve.log", "w")
        proc = server.popen([sys.executable, "-m", "bootsrv", "--config", str(config), "serve"], stderr=log)

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"bootsrv exited {proc.returncode}:\n{(workdir / 'serve.log').read_text()}")
            r = client.run(["curl", "-s", "-m", "1", f"http://{SERVER_IP}:8080/healthz"], check=False)
            return r.returncode == 0

        wait_for("bootsrv HTTP", healthy)
        r = client.run(["curl", "-s", f"http://{SERVER_IP}:8080/healthz"])
        say(f"[3] client -> GET /healthz: {json.loads(r.stdout)}")
        say("[4] done; tearing the lab down")
        log.close()


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
