"""Golden renders of every profile in profiles/: its boot configs (iPXE, pxelinux, GRUB) and every
answer file, for one fixed machine and token, plus the local-boot configs.

Regenerate after an intended change with BOOTSRV_REGEN_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bootsrv.config import parse
from bootsrv.machines.model import Machine, State
from bootsrv.machines.plan import BOOT_FORMATS, PlanBuilder
from bootsrv.profiles import catalog
from bootsrv.profiles.render import Renderer

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("BOOTSRV_REGEN_GOLDEN") == "1"
TOKEN = "GoldenToken_0123456789abcdefghijklmnopqrstu"
MAC = "52:54:00:12:34:56"

CONFIG = """
[[networks]]
name = "public"
segment = "odd"
subnet = "192.0.2.0/24"
router = "192.0.2.1"
dns_servers = ["192.0.2.1"]
[[networks]]
name = "backend"
segment = "odd"
subnet = "10.1.0.0/24"
[boot]
http_base_url = "http://192.0.2.1:8080"
"""

CATALOG = catalog.load(REPO / "profiles", REPO / "templates")


def build() -> PlanBuilder:
    return PlanBuilder(CATALOG, Renderer(REPO / "templates"), parse(CONFIG, "golden.toml"))


def machine(profile: str) -> Machine:
    return Machine(
        mac=MAC,
        hostname="hv1",
        state=State.INSTALLING,
        profile=profile,
        addresses=(("backend", "10.1.0.11"), ("public", "192.0.2.11")),
    )


def cases():
    for profile in CATALOG:
        for fmt in BOOT_FORMATS:
            yield profile.name, f"boot.{fmt}"
        for name in profile.answer_files:
            yield profile.name, name
    for fmt in BOOT_FORMATS:
        yield "_local", f"boot.{fmt}"


def render(profile: str, name: str) -> str:
    b = build()
    if profile == "_local":
        return b.boot_script(name.removeprefix("boot."), None, MAC, "machine is enrolled")
    plan = b.build(machine(profile), TOKEN)
    if name.startswith("boot."):
        return b.boot_script(name.removeprefix("boot."), plan, MAC)
    return b.answer(plan, name)


def check(path: Path, text: str) -> None:
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}; run with BOOTSRV_REGEN_GOLDEN=1"
    assert text == path.read_text(), f"{path} differs; review and regenerate with BOOTSRV_REGEN_GOLDEN=1"


@pytest.mark.parametrize(("profile", "name"), list(cases()), ids=[f"{p}/{n}" for p, n in cases()])
def test_golden(profile, name):
    check(GOLDEN / profile / name, render(profile, name))


def test_every_profile_has_golden_files():
    """Each profile (and only existing ones) has its golden directory: a new profile needs one."""
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(["_local", *CATALOG.names()])


@pytest.mark.parametrize("profile", [p.name for p in CATALOG])
def test_boot_line_carries_the_answer_url_with_token(profile):
    plan = build().build(machine(profile), TOKEN)
    answer = f"http://192.0.2.1:8080/profiles/52-54-00-12-34-56/{plan.profile.answer.file}?token={TOKEN}"
    assert plan.args[-1] == f"{plan.profile.boot.answer_arg}={answer}"
    assert "BOOTIF=01-52-54-00-12-34-56" in plan.args


SHELL_FILES = [(p.name, n) for p in CATALOG for n in p.answer_files if n.endswith(".sh")]


@pytest.mark.parametrize(("profile", "name"), SHELL_FILES, ids=[f"{p}/{n}" for p, n in SHELL_FILES])
def test_shell_answers_parse(tmp_path, profile, name):
    """The rendered scripts are valid POSIX sh (dash -n), as are the kickstart's %post bodies."""
    if shutil.which("dash") is None:
        pytest.skip("dash not installed")
    script = tmp_path / "s.sh"
    script.write_text(render(profile, name))
    ok = subprocess.run(["dash", "-n", str(script)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_kickstart_post_parses(tmp_path):
    if shutil.which("dash") is None:
        pytest.skip("dash not installed")
    ks = render("alma9-kvm-hypervisor", "ks.cfg")
    post = ks.split("%post --erroronfail --log=/root/bootsrv-post.log\n", 1)[1].rsplit("%end", 1)[0]
    script = tmp_path / "post.sh"
    script.write_text(post)
    ok = subprocess.run(["dash", "-n", str(script)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "sh /root/bootsrv-enroll.sh" in post and f"TOKEN={TOKEN}" in post
