"""Per-machine boot configs for TFTP: which paths are rendered, and what each machine gets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bootsrv.app.wiring import Wiring
from bootsrv.config import parse
from bootsrv.machines.enrollment import digest
from bootsrv.machines.model import Machine, MemoryRegistry, State
from bootsrv.machines.tftpfiles import dynamic_files, match

REPO = Path(__file__).resolve().parents[2]
MAC = "52:54:00:12:34:56"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("pxelinux.cfg/01-52-54-00-12-34-56", ("pxelinux", "52-54-00-12-34-56")),
        ("/pxelinux.cfg/01-52-54-00-12-34-56", ("pxelinux", "52-54-00-12-34-56")),
        ("bios/pxelinux.cfg/01-52-54-00-12-34-56", ("pxelinux", "52-54-00-12-34-56")),
        ("PXELINUX.CFG/01-52-54-00-12-34-56", ("pxelinux", "52-54-00-12-34-56")),
        ("grub/grub.cfg-01-52-54-00-12-34-56", ("grub", "52-54-00-12-34-56")),
        ("grub.cfg-01-52-54-00-12-34-56", ("grub", "52-54-00-12-34-56")),
        ("52:54:00:12:34:56.ipxe", ("ipxe", "52:54:00:12:34:56")),
        ("boot/525400123456.ipxe", ("ipxe", "525400123456")),
        ("pxelinux.cfg/default", None),
        ("pxelinux.cfg/C0A80001", None),  # pxelinux's IP-hex fallbacks are static files
        ("pxelinux.cfg/01-52-54-00-12-34", None),
        ("grub/grub.cfg", ("chain", "")),
        ("/grub/grub.cfg", ("chain", "")),
        ("grub/x86_64-efi/grub.cfg", None),  # the signed GRUB probes it first: not there, so grub/grub.cfg
        ("other/grub.cfg", None),
        ("undionly.kpxe", None),
        ("pxelinux.cfg/01-52-54-00-12-34-56/../../etc/passwd", None),
    ],
)
def test_match(path, expected):
    assert match(path) == expected


@pytest.fixture
def wiring(tmp_path):
    config = parse(
        f"""
[store]
directory = "{tmp_path}/store"
[boot]
http_base_url = "http://192.0.2.1:8080"
unknown_machines = "local"
[profiles]
profiles_dir = "{tmp_path}/profiles"
templates_dir = "{tmp_path}/templates"
""",
        "t.toml",
    )
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    w = Wiring(config, clock=lambda: 1_800_000_000.0)
    w.machines = MemoryRegistry()
    return w


# The machine's declared address: its firmware's TFTP requests come from there (bootsrv.machines.binding).
AT = (("lan", "192.0.2.50"),)


def test_install_then_local(wiring):
    wiring.machines.put(Machine(mac=MAC, hostname="hv1", state=State.NEW, profile="lab-test", addresses=AT), None)
    fetch = dynamic_files(wiring)
    text = fetch("pxelinux.cfg/01-52-54-00-12-34-56", "192.0.2.50").decode()
    assert "KERNEL http://192.0.2.1:8080/files/lab/vmlinuz" in text
    token = text.split("?token=")[1].split()[0]
    machine = wiring.machines.get(MAC)
    assert machine.state is State.INSTALLING and [t.digest for t in machine.tokens] == [digest(token)]
    grub = fetch("grub/grub.cfg-01-52-54-00-12-34-56", "192.0.2.50").decode()
    assert "linux (http,192.0.2.1:8080)/files/lab/vmlinuz" in grub
    wiring.machines.put(
        Machine(mac=MAC, hostname="hv1", state=State.ENROLLED, profile="lab-test"), wiring.machines.get(MAC).revision
    )
    assert "LOCALBOOT 0" in fetch("pxelinux.cfg/01-52-54-00-12-34-56", "c").decode()
    assert b"\nexit\n" in fetch("grub/grub.cfg-01-52-54-00-12-34-56", "c")


def test_unknown_machine_and_other_paths(wiring):
    fetch = dynamic_files(wiring)
    assert "unknown machine" in fetch("pxelinux.cfg/01-52-54-00-99-99-99", "c").decode()
    assert wiring.machines.list() == []
    assert fetch("undionly.kpxe", "c") is None and fetch("pxelinux.cfg/default", "c") is None


def test_render_failure_is_none_not_half_a_file(wiring, tmp_path, caplog):
    wiring.machines.put(Machine(mac=MAC, hostname="hv1", state=State.NEW, profile="lab-test", addresses=AT), None)
    (tmp_path / "templates/boot/install.pxelinux.j2").write_text("KERNEL {{ urls.kernal }}\n")
    assert dynamic_files(wiring)("pxelinux.cfg/01-52-54-00-12-34-56", "192.0.2.50") is None
    errors = [r.bootsrv_fields["error"] for r in caplog.records if r.getMessage() == "tftp.render_failed"]
    assert errors and "template boot/install.pxelinux.j2 line 1" in errors[0]


def test_static_paths_never_load_the_catalog(tmp_path):
    config = parse(f'[profiles]\nprofiles_dir = "{tmp_path}/none"\n', "t.toml")
    fetch = dynamic_files(Wiring(config))
    assert fetch("undionly.kpxe", "c") is None  # no catalog needed, none loaded


def test_wiring_hands_it_to_the_tftp_service(wiring):
    wiring.machines.put(Machine(mac=MAC, hostname="hv1", state=State.ENROLLED, profile="lab-test"), None)
    assert b"LOCALBOOT 0" in wiring.tftp_dynamic("pxelinux.cfg/01-52-54-00-12-34-56", "c")


def test_grub_chain_for_the_signed_network_grub(wiring):
    text = wiring.tftp_dynamic("grub/grub.cfg", "c").decode()
    assert 'configfile "$prefix/grub.cfg-01-$m1-$m2-$m3-$m4-$m5-$m6"' in text
    assert wiring.machines.list() == []  # the chain is the same for everyone: no decision, no write


GRUB_FILES = sorted((REPO / "tests/profiles/golden").glob("*/boot.grub")) + [REPO / "templates/boot/chain.grub.j2"]


@pytest.mark.parametrize("path", GRUB_FILES, ids=[f"{p.parent.name}/{p.name}" for p in GRUB_FILES])
def test_grub_configs_pass_grub_script_check(path):
    if shutil.which("grub-script-check") is None:
        pytest.skip("grub-common is not installed")
    import subprocess

    ok = subprocess.run(["grub-script-check", str(path)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
