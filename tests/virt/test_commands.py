"""The commands and the domu-* scripts, one invocation each, on a test-driver node (every
invocation opens the node afresh, so each test starts from the node file's state)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bootsrv.cli import guests as commands
from bootsrv.cli.main import main

HERE = Path(__file__).parent

EXTRA = """
  <pool type='dir'>
    <name>appl-1</name>
    <target><path>@DIR@/appl-1</path></target>
    <volume type='file'>
      <name>vm-0</name>
      <capacity unit='MiB'>64</capacity>
      <allocation unit='MiB'>0</allocation>
      <target><format type='qcow2'/></target>
    </volume>
  </pool>
  <domain type='kvm'>
    <name>appl-1:vm-9</name>
    <memory unit='MiB'>512</memory>
    <vcpu>1</vcpu>
    <metadata>
      <bootsrv:guest xmlns:bootsrv='urn:bootsrv:guest:1' project='appl-1' vm='vm-9' kind='hvm' layout='fe-be'
                     segment='odd'>
        <bootsrv:nic name='fe0' network='public' attach='bridge' source='fe0'/>
        <bootsrv:nic name='be0' network='backend' attach='bridge' source='be0'/>
      </bootsrv:guest>
    </metadata>
    <os><type>hvm</type></os>
    <devices>
      <interface type='bridge'><mac address='52:54:00:00:00:09'/><source bridge='fe0'/></interface>
      <interface type='bridge'><mac address='52:54:00:00:00:0a'/><source bridge='be0'/></interface>
    </devices>
  </domain>
</node>"""


@pytest.fixture
def config(tmp_path):
    for d in ("masters", "appl-1"):
        (tmp_path / d).mkdir()
    node = tmp_path / "node.xml"
    text = (HERE / "node.xml.in").read_text().replace("</node>", EXTRA).replace("@DIR@", str(tmp_path))
    node.write_text(text)
    cfg = tmp_path / "bootsrv.toml"
    cfg.write_text(f"""
[store]
directory = "{tmp_path}/store-absent"
[[networks]]
name = "public"
segment = "odd"
subnet = "10.10.0.0/24"
[[networks.ranges]]
start = "10.10.0.100"
end = "10.10.0.199"
[[networks]]
name = "backend"
segment = "odd"
subnet = "10.20.0.0/24"
[guests]
storage_dir = "{tmp_path}"
[guests.segments.odd]
fe0 = "public"
be0 = "backend"
[[guests.hypervisors]]
name = "hv1"
segment = "odd"
uri = "test://{node}"
memory_mib = 4096
""")
    return str(cfg)


def run(cmd, args, config):
    return CliRunner().invoke(cmd, ["--config", config, *args], catch_exceptions=False)


def test_domu_project(config, tmp_path):
    r = run(commands.domu_project, ["appl-2"], config)
    assert r.exit_code == 0, r.output
    assert r.output == f"project appl-2: {tmp_path}/appl-2\n"


def test_domu_clone_original_syntax(config, tmp_path):
    r = run(commands.domu_clone, ["masters/osol-0811@version-01", "appl-1/vm-1"], config)
    assert r.exit_code == 0, r.output
    assert (
        r.output
        == f"appl-1/vm-1: clone of masters/osol-0811@version-01 (0 bytes used, 64 MiB) at {tmp_path}/appl-1/vm-1\n"
    )


@pytest.mark.parametrize(
    "args,code,message",
    [
        (
            ["masters/osol-0811@version-07", "appl-1/vm-1"],
            3,
            "error: version.version: osol-0811 has no version 'version-07'",
        ),
        (["masters/osol-0811", "appl-1/vm-1"], 2, "error: version: 'masters/osol-0811' is not <image>@<version>"),
        (["masters/osol-0811@version-01", "appl-9/vm-1"], 3, "error: guest.project: no project 'appl-9'"),
        (["masters/osol-0811@version-01", "appl-1/vm-0"], 4, "error: guest.vm: appl-1/vm-0 exists"),
    ],
    ids=["unknown-version", "malformed", "unknown-project", "duplicate"],
)
def test_domu_clone_errors(config, args, code, message):
    r = CliRunner().invoke(commands.domu_clone, ["--config", config, *args])
    assert (r.exit_code, r.stderr.strip()) == (code, message) or message in r.stderr, r.stderr
    assert r.exit_code == code


def test_domu_init_dry_run_explains(config):
    r = run(commands.domu_init, ["--dry-run", "pv", "fe-be", "odd", "1024", "1", "appl-1/vm-0"], config)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [
        "placement of appl-1:vm-0 (1024 MiB, segment odd):",
        "-> hv1: 1 of 5 guests, 2560 MiB free -> chosen: fullest hypervisor with room (fill before the next)",
        "would define appl-1:vm-0 on hv1: pv, fe0 on public (bridge fe0), be0 on backend (bridge be0)",
    ]


def test_domu_init_defines(config):
    r = run(commands.domu_init, ["hvm", "fe", "odd", "512", "2", "appl-1/vm-0"], config)
    assert r.exit_code == 0, r.output
    assert "defined appl-1:vm-0 on hv1" in r.output
    assert r.output.splitlines()[-1].startswith("  fe0 52:54:00:") and r.output.endswith(" -> public\n")


@pytest.mark.parametrize(
    "args,message",
    [
        (["pv", "fe-be", "odd", "1024", "1", "appl-1/vm-9"], "error: guest: no disk appl-1/vm-9"),
        (["pv", "fe-be", "odd", "4000", "1", "appl-1/vm-0"], "error: segment: no hypervisor of segment 'odd' has room"),
        (["pv", "fe-be", "even", "1024", "1", "appl-1/vm-0"], "error: segment: no segment 'even'"),
        (["pv", "fe-be", "odd", "lots", "1", "appl-1/vm-0"], "error: memory: 'lots' is not an integer"),
        (["hvm", "fe-be-fe", "odd", "1024", "1", "appl-1/vm-0"], "error: layout: 'fe-be-fe' must be one of"),
    ],
    ids=["no-clone", "no-room", "unknown-segment", "memory-not-int", "bad-layout"],
)
def test_domu_init_errors(config, args, message):
    r = CliRunner().invoke(commands.domu_init, ["--config", config, *args])
    assert r.exit_code != 0 and r.stderr.startswith(message), r.stderr


def test_assign_ip_binds_in_the_lease_store(config):
    from bootsrv.config import load
    from bootsrv.leases import Flag, open_store

    r = CliRunner().invoke(commands.domu_assign_ip, ["--config", config, "appl-1:vm-9", "fe0", "vm-host9"])
    assert r.exit_code == 0 and "10.10.0.100 vm-host9" in r.output, (r.output, r.stderr)
    rec = open_store(load(config)).get("public", "10.10.0.100")
    assert rec.hostname == "vm-host9" and rec.flags == Flag.MANUAL | Flag.PERMANENT
    r = CliRunner().invoke(commands.domu_assign_ip, ["--config", config, "appl-1:vm-9", "be0", "vm-host9"])
    assert r.exit_code == 4 and "hostname: 'vm-host9' is in use" in r.stderr, (r.output, r.stderr)
    assert open_store(load(config)).records("backend") == []


def test_guest_list_and_image_list(config):
    r = CliRunner().invoke(main, ["--config", config, "guest", "list"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[1].split() == [
        "hv1",
        "odd",
        "appl-1:vm-9",
        "running",
        "512",
        "1",
        "fe0=52:54:00:00:00:09",
        "be0=52:54:00:00:00:0a",
    ]
    r = CliRunner().invoke(main, ["--config", config, "guest", "image", "list"])
    assert r.output.splitlines() == ["osol-0811  qcow2  64 MiB", "  @version-01  64 MiB used"]


def test_guest_freeze_and_destroy(config):
    r = CliRunner().invoke(main, ["--config", config, "guest", "image", "freeze", "osol-0811@version-02"])
    assert r.exit_code == 0 and "masters/osol-0811@version-02: frozen" in r.output, r.output
    r = CliRunner().invoke(main, ["--config", config, "guest", "destroy", "appl-1:vm-0"], input="n\n")
    assert r.exit_code == 1 and "Remove (no domain appl-1:vm-0), clone appl-1/vm-0?" in r.output
    r = CliRunner().invoke(main, ["--config", config, "guest", "destroy", "--yes", "appl-1:vm-0"])
    assert r.exit_code == 0 and r.output == "deleted clone appl-1/vm-0\n", r.output


def test_console_hands_over_to_virsh_on_the_guests_hypervisor(config, tmp_path):
    """`guest console` execs `virsh -c <uri> console <domain>`; a stand-in virsh on PATH prints
    what it was given (a real process replacement, no patching)."""
    import os
    import subprocess
    import sys

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "virsh").write_text('#!/bin/sh\necho virsh "$@"\n')
    (bindir / "virsh").chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    proc = subprocess.run(
        [sys.executable, "-m", "bootsrv", "--config", config, "guest", "console", "appl-1:vm-9"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    node = next(tmp_path.glob("node.xml"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"virsh -c test://{node} console appl-1:vm-9\n"
