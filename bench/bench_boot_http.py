#!/usr/bin/env python3
"""The HTTP boot side under load: N machines due for install each fetch their iPXE script (a token
issued: one compare-and-swap write of the file registry, fsync'ed) and then their preseed, over
real HTTP to the app under waitress on 127.0.0.1, from C concurrent clients. /healthz on the same
server, same clients, is the reference (the cost of the HTTP stack alone), so the printed ratios
say what rendering and the registry cost.

    python bench/bench_boot_http.py                  # 300 machines, 8 clients (then each asks again)
    python bench/bench_boot_http.py --machines 1000 --clients 16
"""

from __future__ import annotations

import argparse
import http.client
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from waitress.server import create_server  # noqa: E402

from bootsrv.app.wiring import Wiring  # noqa: E402
from bootsrv.config import parse  # noqa: E402
from bootsrv.http.app import create_app  # noqa: E402
from bootsrv.machines.model import Machine, State  # noqa: E402


def fetch_all(port: int, paths: list[str], clients: int) -> tuple[float, list[str]]:
    local = threading.local()

    def get(path: str) -> str:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local.conn.request("GET", path)
        resp = local.conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            raise RuntimeError(f"{path}: {resp.status} {body[:200]}")
        return body

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        bodies = list(pool.map(get, paths))
    return len(paths) / (time.perf_counter() - start), bodies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--machines", type=int, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--profile", default="debian12-xen-hypervisor")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-boot-"))
    (tmp / "store").mkdir()
    config = parse(
        f"""
[store]
directory = "{tmp}/store"
[boot]
files_root = "{tmp}/files"
http_base_url = "http://127.0.0.1:8080"
[profiles]
profiles_dir = "{REPO / "profiles"}"
templates_dir = "{REPO / "templates"}"
""",
        "bench.toml",
    )
    wiring = Wiring(config)
    macs = [f"52:54:01:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}" for i in range(args.machines)]
    # Every client speaks from loopback: declared as each machine's address, since the install boot
    # goes only to an address bootsrv leased or bound to the machine (docs/security.md).
    at = (("bench", "127.0.0.1"),)
    for i, mac in enumerate(macs):
        machine = Machine(mac=mac, hostname=f"hv{i}", state=State.NEW, profile=args.profile, addresses=at)
        wiring.machines.put(machine, None)
    server = create_server(create_app(wiring), host="127.0.0.1", port=0, threads=16)
    threading.Thread(target=server.run, daemon=True).start()
    port = server.effective_port

    health, _ = fetch_all(port, ["/healthz"] * args.machines, args.clients)
    scripts, bodies = fetch_all(port, [f"/boot/{m}.ipxe" for m in macs], args.clients)
    answers = [re.search(r"(?:url|inst\.ks|bootsrv\.answer)=http://127\.0\.0\.1:8080(\S+)", b)[1] for b in bodies]
    answer_rate, _ = fetch_all(port, answers, args.clients)
    # Every machine asks for its script again (a firmware retry, a reboot mid-install): the same
    # token comes back and nothing is written (bootsrv.machines.enrollment.TokenKey).
    revisions = sum(m.revision for m in wiring.machines.list())
    again, _ = fetch_all(port, [f"/boot/{m}.ipxe" for m in macs], args.clients)
    writes = sum(m.revision for m in wiring.machines.list()) - revisions
    tokens = max(len(m.tokens) for m in wiring.machines.list())
    server.close()
    print(f"{args.machines} machines, {args.clients} clients, profile {args.profile}")
    print(f"  /healthz (reference)           {health:8.0f} req/s")
    print(f"  /boot/<mac>.ipxe (token issued) {scripts:8.0f} req/s  ratio {scripts / health:.2f}")
    print(f"  /profiles/<mac>/<answer>        {answer_rate:8.0f} req/s  ratio {answer_rate / health:.2f}")
    print(
        f"  /boot/<mac>.ipxe again          {again:8.0f} req/s  ratio {again / health:.2f}"
        f"  ({writes} registry writes, at most {tokens} token(s) per machine)"
    )


if __name__ == "__main__":
    main()
