"""The wheel carries its data (integration, slow): a wheel built from this checkout, installed
into a fresh venv outside it, lists and renders profiles and serves a boot script from any
directory, the checkout nowhere in sight.

The venv borrows the dependencies of the interpreter running the tests through a .pth file (no
download; libvirt-python would need a compiler), but bootsrv itself comes only from the wheel:
that is asserted, so a checkout or an editable install on sys.path cannot make the test pass.

The install README describes for a server (a venv at /opt/bootsrv with the wheel) is the one
contrib/bootsrv.service runs, and contrib's example config works with it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path, PurePosixPath

import pytest

from tests.conftest import need

REPO = Path(__file__).resolve().parents[1]
SERVER = "10.238.0.2"
MAC = "52:54:00:38:00:01"


def _setuptools_builds_wheels() -> bool:
    """setuptools >= 70.1 (which has bdist_wheel) is here: build offline, without isolation."""
    try:
        version = metadata.version("setuptools")
    except metadata.PackageNotFoundError:
        return False
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) >= (70, 1)


def _copy_checkout(dest: Path) -> None:
    """The files git tracks or would track (not build/, *.egg-info, .venv): a build in the checkout
    itself would leave build/lib behind, whose stale modules end up in the next wheel."""
    listed = (
        subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file():  # deleted but still tracked: skip
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _dependency_paths() -> list[str]:
    # Every site directory of this interpreter (./setup's .venv lies inside the checkout): where
    # jinja2, flask, pydantic, libvirt ... live. A .pth line only adds a directory to sys.path: the
    # editable install's own .pth and finder in there are not run, so they cannot bring the
    # checkout's bootsrv back (the tests assert bootsrv comes from the new venv).
    return [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]


def _env() -> dict[str, str]:
    # PYTHONPATH may name the checkout (running from a worktree); a config from the caller's
    # environment would change what "the default" means.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BOOTSRV_CONFIG")}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A venv with bootsrv installed from a wheel of this checkout; returns the venv directory."""
    need(shutil.which("git") is not None and (REPO / ".git").exists(), "the wheel test builds from a git checkout")
    root = tmp_path_factory.mktemp("wheel")
    src, dist, venv = root / "src", root / "dist", root / "venv"
    _copy_checkout(src)
    # The build backend of this interpreter when it has one (setup installs it with the test extra):
    # no download. Otherwise pip builds in isolation, fetching setuptools from its index or cache.
    isolation = ["--no-build-isolation"] if _setuptools_builds_wheels() else []
    _must([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(dist), str(src)])
    (wheel,) = dist.glob("bootsrv-*.whl")
    _must([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = str(venv / "bin/python")
    purelib = _must([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    Path(purelib, "_bootsrv_test_dependencies.pth").write_text("\n".join(_dependency_paths()) + "\n")
    _must([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", str(wheel)])
    # What runs is the wheel's bootsrv, not a checkout or an editable install found on the way.
    where = _must([python, "-c", "import bootsrv; print(bootsrv.__file__)"], cwd=root).strip()
    assert Path(where).is_relative_to(venv), where
    return venv


def _must(argv: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A working directory outside the checkout with nothing named profiles/ or templates/."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    return cwd


def _bootsrv(venv: Path, cwd: Path, *argv: str) -> str:
    return _must([str(venv / "bin/bootsrv"), *argv], cwd=cwd)


@pytest.mark.integration
@pytest.mark.slow
def test_profiles_list_and_render_from_the_wheel(venv, elsewhere):
    listed = _bootsrv(venv, elsewhere, "profile", "list")
    for name in ("lab-test", "debian12-kvm-hypervisor", "debian12-xen-hypervisor", "alma9-kvm-hypervisor"):
        assert name in listed
    script = _bootsrv(venv, elsewhere, "profile", "render", "lab-test", "--mac", MAC, "--hostname", "hv1")
    assert script.startswith("#!ipxe") and "installing lab-test on hv1" in script
    answer = _bootsrv(
        venv, elsewhere, "profile", "render", "lab-test", "--mac", MAC, "--hostname", "hv1", "--file", "answer.sh"
    )
    assert f"mac={MAC} host=hv1.lab.example" in answer
    # The domain templates of bootsrv.virt come from the wheel too.
    probe = "from bootsrv.virt import domain; print((domain.default_templates_dir() / 'domains/hvm.xml.j2').is_file())"
    assert _must([str(venv / "bin/python"), "-c", probe], cwd=elsewhere).strip() == "True"


@pytest.mark.integration
@pytest.mark.slow
def test_a_configured_profiles_dir_overrides_the_packaged_one(venv, elsewhere, tmp_path):
    own = tmp_path / "site-profiles"
    own.mkdir()
    shutil.copy(REPO / "profiles/site.toml", own)
    shutil.copy(REPO / "profiles/lab-test.toml", own / "site-only.toml")
    config = tmp_path / "site.toml"
    config.write_text(f'[profiles]\nprofiles_dir = "{own}"\n')
    listed = _bootsrv(venv, elsewhere, "--config", str(config), "profile", "list")
    assert "site-only" in listed and "debian12-kvm-hypervisor" not in listed


@pytest.mark.integration
@pytest.mark.slow
def test_the_example_config_of_contrib_uses_the_packaged_profiles(venv, elsewhere):
    listed = _bootsrv(venv, elsewhere, "--config", str(REPO / "contrib/bootsrv.example.toml"), "profile", "list")
    assert "debian12-kvm-hypervisor" in listed


def test_the_systemd_unit_runs_the_install_readme_describes():
    unit = (REPO / "contrib/bootsrv.service").read_text()
    readme = (REPO / "README.md").read_text().split("## Running it for real", 1)[1].split("\n## ", 1)[0]
    programs = re.findall(r"^ExecStart(?:Pre)?=(\S+)", unit, re.M)
    assert programs and all(PurePosixPath(p).parts[-2:] == ("bin", "bootsrv") for p in programs), programs
    (venv,) = {str(PurePosixPath(p).parent.parent) for p in programs}
    config = re.search(r"^Environment=BOOTSRV_CONFIG=(\S+)", unit, re.M)[1]
    for step in (
        f"python3 -m venv {venv}\n",
        f"{venv}/bin/pip install dist/bootsrv-*.whl",
        f"cp contrib/bootsrv.example.toml {config}",
        "cp contrib/bootsrv.service /etc/systemd/system/",
    ):
        assert step in readme, step


@pytest.mark.integration
@pytest.mark.slow
def test_serve_from_the_wheel_answers_in_a_namespace(venv, elsewhere, tmp_path, lab):
    config = tmp_path / "site.toml"
    config.write_text(f"""
[server]
owner_ips = ["{SERVER}"]
[store]
directory = "{tmp_path}/store"
[dhcp]
enabled = false
[dns]
enabled = false
[tftp]
enabled = false
[boot]
files_root = "{tmp_path}/files"
http_base_url = "http://{SERVER}:8080"
unknown_machines = "local"
[http]
address = "{SERVER}"
[[networks]]
name = "lan"
subnet = "10.238.0.0/24"
""")
    (tmp_path / "files").mkdir()
    # Registering checks the profile against the catalog: the packaged one. The machine's address
    # is declared: the install boot goes only there (docs/security.md).
    _bootsrv(
        venv,
        elsewhere,
        *("--config", str(config), "machine", "add", MAC, "--hostname", "hv1", "--profile", "lab-test"),
        *("--address", "lan=10.238.0.50"),
    )
    seg = lab.segment("lan")
    srv = lab.host("srv")
    lab.plug(srv, seg, "net0", f"{SERVER}/24")
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        srv.popen(
            [str(venv / "bin/bootsrv"), "--config", str(config), "serve"],
            cwd=elsewhere,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    fetch = (
        "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=1).read().decode())"
    )
    deadline = time.monotonic() + 60
    while True:
        probe = srv.run([str(venv / "bin/python"), "-c", fetch, f"http://{SERVER}:8080/healthz"], check=False)
        if probe.returncode == 0:
            break
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)
    hv1 = lab.host("hv1")
    lab.plug(hv1, seg, "net0", "10.238.0.50/24")
    script = hv1.run([str(venv / "bin/python"), "-c", fetch, f"http://{SERVER}:8080/boot/{MAC}.ipxe"], check=False)
    assert script.returncode == 0, script.stderr + log.read_text()
    assert "installing lab-test on hv1" in script.stdout and "token=" in script.stdout
