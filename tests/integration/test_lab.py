"""The namespace lab builds a topology with real traffic across it and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bootsrv.lab import netns as labmod

pytestmark = pytest.mark.integration


def _host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_topology_ping_and_teardown(lab):
    before_links = _host_links()
    seg = lab.segment("lan")
    a, b = lab.host("a"), lab.host("b")
    lab.plug(a, seg, "net0", "10.77.0.1/24", mac="02:00:00:00:00:01")
    lab.plug(b, seg, "net0", "10.77.0.2/24")
    tap = seg.tap()
    out = a.run(["ping", "-c", "2", "-W", "2", "10.77.0.2"]).stdout
    assert "2 received" in out
    # The tap is plugged into the switch's bridge, inside the switch namespace.
    links = subprocess.run(seg.cmd(["ip", "-o", "link"]), capture_output=True, text=True).stdout
    assert f"{tap}:" in links and "master br0" in links
    assert "02:00:00:00:00:01" in a.run(["ip", "link", "show", "net0"]).stdout
    # Nothing was created in the default namespace.
    assert _host_links() == before_links
    sleeper = a.popen(["sleep", "300"])
    # Only this lab's namespaces: other suites may run labs of their own at the same time.
    names = {n for n in labmod.namespaces() if n.startswith(lab.tag) and n[len(lab.tag)] in "hs"}
    assert len(names) == 3  # the switch and the two hosts
    lab.close()
    assert sleeper.poll() is not None
    assert not names & set(labmod.namespaces())
    assert _host_links() == before_links


def test_routed_topology(lab):
    left, right = lab.segment("left"), lab.segment("right")
    client, router, server = lab.host("client"), lab.host("router"), lab.host("server")
    lab.plug(client, left, "net0", "10.78.1.10/24")
    lab.plug(router, left, "net0", "10.78.1.1/24")
    lab.plug(router, right, "net1", "10.78.2.1/24")
    lab.plug(server, right, "net0", "10.78.2.10/24")
    lab.forward(router)
    lab.route(client, "10.78.2.0/24", "10.78.1.1")
    lab.route(server, "10.78.1.0/24", "10.78.2.1")
    assert "1 received" in client.run(["ping", "-c", "1", "-W", "2", "10.78.2.10"]).stdout


def test_stale_lab_of_a_killed_owner_is_swept():
    ok, reason = labmod.available()
    if not ok:
        pytest.skip(reason)
    script = (
        "import time\nfrom bootsrv.lab import netns as lab\nl = lab.Lab()\ns = l.segment('x')\nh = l.host('y')\n"
        "l.plug(h, s, 'net0', '10.79.0.1/24')\nh.popen(['sleep', '300'])\nprint(l.tag, flush=True)\ntime.sleep(300)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    tag = owner.stdout.readline().strip()
    assert tag and any(ns.startswith(tag) for ns in labmod.namespaces())
    owner.kill()  # SIGKILL: no teardown ran
    owner.wait()
    time.sleep(0.1)
    removed = labmod.sweep_stale()
    assert any(ns.startswith(tag) for ns in removed)
    assert not any(ns.startswith(tag) for ns in labmod.namespaces())


def test_bad_names_are_refused(lab):
    with pytest.raises(labmod.LabError, match="lowercase"):
        lab.host("Bad-Name")
