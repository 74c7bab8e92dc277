"""`dig` against `bootsrv serve`'s DNS in a lab namespace: SOA/NS at the apex, A and PTR for the
lease store's named records, NXDOMAIN inside the zone, REFUSED outside it, no recursion."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import need

pytestmark = pytest.mark.integration

SERVER = "10.63.0.1"


def serve(host, workdir: Path, extra: str = "") -> subprocess.Popen:
    conf = workdir / "bootsrv.toml"
    conf.write_text(f"""
[server]
name = "ns1"
owner_ips = ["{SERVER}"]
rescan_interval = 1
[store]
directory = "{workdir / "store"}"
[[networks]]
name = "public"
subnet = "10.63.0.0/24"
domain = "lab.example"
[dns]
address = "{SERVER}"
port = 53
zones = ["lab.example"]
ttl = 60
[dhcp]
enabled = false
[tftp]
enabled = false
[http]
enabled = false
{extra}
""")
    (workdir / "store").mkdir(exist_ok=True)
    log = open(workdir / "serve.log", "w")
    return host.popen([sys.executable, "-m", "bootsrv", "--config", str(conf), "serve"], stderr=log)


def dig(host, *args: str) -> str:
    return host.run(["dig", f"@{SERVER}", "+time=1", "+tries=2", *args]).stdout


def status(out: str) -> str:
    for line in out.splitlines():
        if "status:" in line:
            return line.split("status:")[1].split(",")[0].strip()
    raise AssertionError(f"no status in dig output:\n{out}")


def answers(out: str) -> list[str]:
    return sorted(
        line.split()[-1] for line in out.splitlines() if line and not line.startswith(";") and len(line.split()) >= 5
    )


@pytest.fixture
def dns_lab(lab, tmp_path):
    need(shutil.which("dig") is not None, "dig (Debian dnsutils) is not installed")
    seg = lab.segment("dns")
    server, client = lab.host("srv"), lab.host("cli")
    lab.plug(server, seg, "net0", f"{SERVER}/24")
    lab.plug(client, seg, "net0", "10.63.0.9/24")
    proc = serve(server, tmp_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if "event=ready" in (tmp_path / "serve.log").read_text():
            break
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        time.sleep(0.1)
    else:
        raise AssertionError("bootsrv serve did not get ready: " + (tmp_path / "serve.log").read_text())
    return server, client, tmp_path


def test_apex_negative_and_refused(dns_lab):
    server, client, workdir = dns_lab
    out = dig(client, "lab.example", "SOA")
    assert status(out) == "NOERROR"
    assert " aa" in out.split("flags:")[1].split(";")[0]
    assert " ra" not in out.split("flags:")[1].split(";")[0]  # no recursion offered
    assert "ns1.lab.example. hostmaster.lab.example." in out

    assert answers(dig(client, "lab.example", "NS", "+noall", "+answer")) == ["ns1.lab.example."]
    # The server's own name resolves to its DNS address (glue for the NS record).
    assert answers(dig(client, "ns1.lab.example", "A", "+noall", "+answer")) == [SERVER]

    out = dig(client, "nosuch.lab.example", "A")
    assert status(out) == "NXDOMAIN"
    assert "SOA" in out.split("AUTHORITY SECTION")[1]

    for name in ("www.example.com", "8.8.8.8.in-addr.arpa"):
        assert status(dig(client, name, "A")) == "REFUSED"

    out = dig(client, "0.63.10.in-addr.arpa", "SOA")
    assert status(out) == "NOERROR" and "SOA" in out

    # TCP too (RFC 7766).
    assert answers(dig(client, "+tcp", "lab.example", "NS", "+noall", "+answer")) == ["ns1.lab.example."]


IDLE_HOLDER = """
import socket, sys, time
socks = []
for i in range(200):  # 4 idle connections from each of 50 addresses, none ever sends a byte
    s = socket.socket()
    s.settimeout(5)
    s.bind((f"10.63.0.{100 + i % 50}", 0))
    s.connect((sys.argv[1], 53))
    socks.append(s)
print(len(socks), flush=True)
time.sleep(60)
"""


def test_tcp_answers_while_200_idle_connections_are_held(dns_lab):
    """The issue's DNS-over-TCP lockout, from the boot segment: a neighbour holds 200 idle TCP
    connections to bootsrv's DNS (from 50 addresses of its own), and `dig +tcp` from another
    address still gets its answer at once (bootsrv.dns.tcp: idle timeout, caps that make room)."""
    server, client, workdir = dns_lab
    for i in range(50):
        client.run(["ip", "addr", "add", f"10.63.0.{100 + i}/24", "dev", "net0"])
    holder = client.popen([sys.executable, "-c", IDLE_HOLDER, SERVER], stdout=subprocess.PIPE, text=True)
    try:
        start = time.monotonic()
        assert holder.stdout.readline().strip() == "200", "the idle connections were not all opened"
        opened = time.monotonic() - start
        start = time.monotonic()
        out = dig(client, "+tcp", "lab.example", "NS", "+noall", "+answer", "+stats")
        seconds = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait(5)
    print(f"\n200 idle connections held (opened in {opened:.2f} s); dig +tcp answered in {seconds:.2f} s")
    assert answers(out) == ["ns1.lab.example."], out
    assert seconds < 2.0
