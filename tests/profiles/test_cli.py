"""`bootsrv profile ...` through click's runner with a real config file and the repo's profiles."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bootsrv.cli.main import main
from bootsrv.machines.model import Machine, State
from bootsrv.machines.store import FileRegistry

REPO = Path(__file__).resolve().parents[2]
MAC = "52:54:00:12:34:56"


@pytest.fixture
def site(tmp_path):
    cfg = tmp_path / "site.toml"
    cfg.write_text(f"""
[store]
directory = "{tmp_path}/store"
[boot]
files_root = "{tmp_path}/files"
http_base_url = "http://192.0.2.1:8080"
[profiles]
profiles_dir = "{REPO / "profiles"}"
templates_dir = "{REPO / "templates"}"
""")
    return tmp_path, cfg


def run(cfg, *args):
    return CliRunner().invoke(main, ["--config", str(cfg), "profile", *args], catch_exceptions=False)


def test_list_and_show(site):
    _, cfg = site
    out = run(cfg, "list")
    assert out.exit_code == 0
    names = [line.split()[0] for line in out.output.splitlines()[1:]]
    assert names == ["alma9-kvm-hypervisor", "debian12-kvm-hypervisor", "debian12-xen-hypervisor", "lab-test"]
    shown = run(cfg, "show", "debian12-xen-hypervisor")
    assert shown.exit_code == 0
    assert (
        "settings.xen_cmdline:" in shown.output
        and "dom0_mem=2048M,max:2048M com1=9600,8n1 console=com1" in shown.output
    )
    assert "(missing under" in shown.output  # the installer is not fetched yet
    missing = run(cfg, "show", "nope")
    assert missing.exit_code == 3 and "no profile 'nope'" in missing.output


def test_render_previews_without_writing(site):
    tmp_path, cfg = site
    (tmp_path / "store").mkdir()
    registry = FileRegistry(tmp_path / "store")
    registry.put(
        Machine(mac=MAC, hostname="hv7", state=State.NEW, profile="lab-test", addresses=(("public", "192.0.2.17"),)),
        None,
    )
    before = registry.list()
    out = run(cfg, "render", "lab-test", "--mac", "5254.0012.3456")
    assert out.exit_code == 0, out.output
    assert "install profile lab-test on hv7.lab.example" in out.output  # the known machine's name
    assert "token=PREVIEW-not-an-issued-token" in out.output
    answer = run(
        cfg,
        "render",
        "debian12-kvm-hypervisor",
        "--mac",
        "52:54:00:00:00:99",
        "--hostname",
        "hv9",
        "--file",
        "preseed.cfg",
    )
    assert answer.exit_code == 0 and "d-i netcfg/get_hostname string hv9" in answer.output
    assert FileRegistry(tmp_path / "store").list() == before  # no token issued, nothing written


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["render", "lab-test", "--mac", "nope"], 2, "--mac: 'nope' is not a MAC address"),
        (["render", "lab-test", "--mac", MAC, "--file", "ks.cfg"], 2, "--file: 'ks.cfg' is not one of"),
        (["render", "lab-test", "--mac", MAC, "--hostname", "bad_name"], 2, "hostname: "),
        (["render", "gone", "--mac", MAC], 3, "no profile 'gone'"),
    ],
)
def test_render_refusals(site, args, code, words):
    _, cfg = site
    out = run(cfg, *args)
    assert out.exit_code == code and words in out.output, out.output


def test_broken_catalog_is_one_line(site, tmp_path):
    _, cfg = site
    profiles = tmp_path / "p"
    profiles.mkdir()
    (profiles / "site.toml").write_text((REPO / "profiles/site.toml").read_text())
    (profiles / "x.toml").write_text("description = 'x'\n")
    cfg.write_text(cfg.read_text().replace(f'profiles_dir = "{REPO / "profiles"}"', f'profiles_dir = "{profiles}"'))
    out = run(cfg, "list")
    assert out.exit_code == 2
    assert out.output.strip() == f"error: {profiles}/x.toml: os: required key is missing"


def test_fetch_installer(site):
    tmp_path, cfg = site
    source = tmp_path / "di"
    source.mkdir()
    (source / "linux").write_bytes(b"K" * 1000)
    (source / "initrd.gz").write_bytes(b"I" * 2000)
    out = run(cfg, "fetch-installer", "--source", str(source))
    assert out.exit_code == 0 and out.output.count("copied:") == 2, out.output
    dest = tmp_path / "files/installers/debian12/amd64"
    assert (dest / "linux").read_bytes() == b"K" * 1000 and (dest / "initrd.gz").read_bytes() == b"I" * 2000
    assert not (dest / "linux").is_symlink()
    again = run(cfg, "fetch-installer", "--source", str(source))
    assert again.output.count("up to date:") == 2
    assert "(present)" in run(cfg, "show", "debian12-xen-hypervisor").output
    (source / "linux").unlink()
    gone = run(cfg, "fetch-installer", "--source", str(source))
    assert gone.exit_code == 3 and "no linux in" in gone.output


def test_fetch_installer_from_the_debian_package(site):
    """The real package's files, when installed (setup installs debian-installer-12-netboot-amd64)."""
    tmp_path, cfg = site
    from bootsrv.cli.profiles import DI_SOURCE

    if not (DI_SOURCE / "linux").is_file():
        pytest.skip("debian-installer-12-netboot-amd64 is not installed")
    out = run(cfg, "fetch-installer")
    assert out.exit_code == 0, out.output
    assert (tmp_path / "files/installers/debian12/amd64/linux").read_bytes() == (DI_SOURCE / "linux").read_bytes()


def test_check(site, tmp_path):
    _, cfg = site
    out = run(cfg, "check")
    assert out.exit_code == 0 and out.output.count(": ok (3 boot configs") == 4, out.output
    templates = tmp_path / "t"
    import shutil

    shutil.copytree(REPO / "templates", templates)
    (templates / "answers/lab-test.sh.j2").write_text("#!/bin/sh\n{{ settings.nothing }}\n")
    cfg.write_text(cfg.read_text().replace(f'templates_dir = "{REPO / "templates"}"', f'templates_dir = "{templates}"'))
    bad = run(cfg, "check")
    assert bad.exit_code == 2
    assert "error: profile lab-test: template answers/lab-test.sh.j2 line 2: " in bad.output
