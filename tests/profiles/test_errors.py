"""Broken profiles and templates as tables: every failure names where it is.

Catalog errors name the file and the dotted key; render errors name the profile, the template
(or the profile key holding a one-line template) and the line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bootsrv.config import parse
from bootsrv.errors import NotFound
from bootsrv.machines.model import Machine, State
from bootsrv.machines.plan import PlanBuilder
from bootsrv.profiles import catalog
from bootsrv.profiles.catalog import ProfileError
from bootsrv.profiles.render import Renderer, RenderError

REPO = Path(__file__).resolve().parents[2]
SITE = (REPO / "profiles/site.toml").read_text()

GOOD = """
description = "test profile"
os = "lab"
hypervisor = "kvm"
[boot]
kernel = "lab/vmlinuz"
initrd = "lab/initrd.gz"
answer_arg = "bootsrv.answer"
args = ["console=ttyS0"]
[answer]
file = "answer.sh"
template = "answers/t.j2"
[settings]
marker = "M"
"""

ANSWER = "#!/bin/sh\n# {{ machine.fqdn }}\necho {{ settings.marker }}\n{{ enroll_script }}"


def tree(
    tmp_path: Path,
    profile: str = GOOD,
    answer: str = ANSWER,
    extra: dict[str, str] | None = None,
    site: str | None = SITE,
) -> tuple[Path, Path]:
    profiles, templates = tmp_path / "profiles", tmp_path / "templates"
    profiles.mkdir()
    shutil.copytree(REPO / "templates/boot", templates / "boot")
    (templates / "answers").mkdir()
    (templates / "answers/t.j2").write_text(answer)
    for name, text in (extra or {}).items():
        (templates / name).parent.mkdir(parents=True, exist_ok=True)
        (templates / name).write_text(text)
    if site is not None:
        (profiles / "site.toml").write_text(site)
    (profiles / "p.toml").write_text(profile)
    return profiles, templates


def test_good_tree_loads_and_renders(tmp_path):
    cat = catalog.load(*tree(tmp_path))
    assert cat.names() == ["p"] and "p" in cat
    plan, text = render(tmp_path, cat)
    assert text.startswith("#!/bin/sh\n# hv1.lab.example\necho M\n")


def render(tmp_path, cat, boot: str | None = None):
    b = PlanBuilder(cat, Renderer(cat.templates_dir), parse("", "t"))
    plan = b.build(Machine(mac="52:54:00:12:34:56", hostname="hv1", state=State.INSTALLING, profile="p"), "T" * 43)
    return plan, (b.boot_script(boot, plan, plan.machine.mac) if boot else b.answer(plan))


# ---------------------------------------------------------------------------------------------
# Catalog: file and key


def edit(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


CATALOG_ERRORS = [
    (
        "unknown-key",
        edit('answer_arg = "bootsrv.answer"', 'answer_arg = "bootsrv.answer"\nanswer_ar = "x"'),
        None,
        "p.toml",
        "boot.answer_ar",
        "unknown key",
    ),
    ("unknown-top-key", "bogus = 1\n" + GOOD, None, "p.toml", "bogus", "unknown key"),
    ("missing-answer", GOOD.split("[answer]")[0], None, "p.toml", "answer", "required key is missing"),
    (
        "kernel-escapes",
        edit('kernel = "lab/vmlinuz"', 'kernel = "../../etc/shadow"'),
        None,
        "p.toml",
        "boot.kernel",
        "relative to boot.files_root",
    ),
    (
        "kernel-absolute",
        edit('kernel = "lab/vmlinuz"', 'kernel = "/boot/vmlinuz"'),
        None,
        "p.toml",
        "boot.kernel",
        "relative to boot.files_root",
    ),
    ("hypervisor", edit('hypervisor = "kvm"', 'hypervisor = "vmware"'), None, "p.toml", "hypervisor", "'xen' or 'kvm'"),
    (
        "args-type",
        edit('args = ["console=ttyS0"]', 'args = "console=ttyS0"'),
        None,
        "p.toml",
        "boot.args",
        "valid list",
    ),
    ("answer-file-name", edit('file = "answer.sh"', 'file = "../answer.sh"'), None, "p.toml", "answer.file", "pattern"),
    (
        "missing-template",
        edit('template = "answers/t.j2"', 'template = "answers/nope.j2"'),
        None,
        "p.toml",
        "answer.template",
        "no template 'answers/nope.j2'",
    ),
    (
        "extras-self",
        edit('template = "answers/t.j2"', 'template = "answers/t.j2"\nextras = { "answer.sh" = "answers/t.j2" }'),
        None,
        "p.toml",
        "answer.extras.answer.sh",
        "is the answer file itself",
    ),
    (
        "extras-missing",
        edit('template = "answers/t.j2"', 'template = "answers/t.j2"\nextras = { "x.sh" = "answers/x.j2" }'),
        None,
        "p.toml",
        "answer.extras.x.sh",
        "no template 'answers/x.j2'",
    ),
    ("site-override", GOOD + '[site]\ntimezone = "Not a zone!"\n', None, "p.toml", "site.timezone", "pattern"),
    ("site-unknown", GOOD + '[site]\ntimzone = "UTC"\n', None, "p.toml", "site.timzone", "unknown key"),
    (
        "site-nic-twice",
        GOOD,
        SITE + '[[site.nics]]\nname = "fe0"\nrole = "x"\nnetwork = "x"\n',
        "p.toml",
        "site.nics[2].name",
        "listed twice",
    ),
    (
        "site-no-keys",
        GOOD,
        SITE.replace("root_keys = [", "root_keys = [] # ["),
        "p.toml",
        "site.root_keys",
        "at least 1",
    ),
    ("site-extra-table", GOOD, SITE + "[other]\nx = 1\n", "site.toml", "other", "unknown key"),
    ("site-missing", GOOD, None, "site.toml", "", "missing"),
    ("not-toml", GOOD + "[boot\n", None, "p.toml", "", "not valid TOML"),
]


@pytest.mark.parametrize(
    ("profile", "site", "file", "key", "words"), [r[1:] for r in CATALOG_ERRORS], ids=[r[0] for r in CATALOG_ERRORS]
)
def test_catalog_errors_name_file_and_key(tmp_path, profile, site, file, key, words):
    if site is None and file == "site.toml" and key == "":
        profiles, templates = tree(tmp_path, profile, site=None)
    else:
        profiles, templates = tree(tmp_path, profile, site=site or SITE)
    with pytest.raises(ProfileError) as err:
        catalog.load(profiles, templates)
    assert Path(err.value.source).name == file and err.value.key == key, str(err.value)
    assert words in err.value.rule, str(err.value)
    assert str(err.value).startswith(f"{err.value.source}: {key + ': ' if key else ''}")


def test_bad_profile_file_name(tmp_path):
    profiles, templates = tree(tmp_path)
    (profiles / "bad name.toml").write_text(GOOD)
    with pytest.raises(ProfileError, match="not a profile name"):
        catalog.load(profiles, templates)


def test_unknown_profile_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="no profile 'q' \\(known: p\\)"):
        catalog.load(*tree(tmp_path)).get("q")


# ---------------------------------------------------------------------------------------------
# Rendering: profile, template, line

RENDER_ERRORS = [
    ("unknown-variable", ANSWER + "\n{{ nope }}\n", {}, None, "answers/t.j2", 5, "'nope' is undefined"),
    (
        "unknown-attribute",
        "#!/bin/sh\n\n{{ machine.serial_number }}\n",
        {},
        None,
        "answers/t.j2",
        3,
        "has no attribute 'serial_number'",
    ),
    (
        "bad-profile-data",
        "line1\n{% for d in settings.disks %}{{ d }}{% endfor %}\n",
        {},
        None,
        "answers/t.j2",
        2,
        "has no attribute 'disks'",
    ),
    ("syntax-error", "a\nb\n{% if %}\n", {}, None, "answers/t.j2", 3, "syntax error"),
    ("unclosed-block", "a\n{% for x in [1] %}\n{{ x }}\n", {}, None, "answers/t.j2", 3, "syntax error"),
    (
        "missing-include",
        "a\nb\nc\n{% include 'answers/gone.j2' %}\n",
        {},
        None,
        "answers/t.j2",
        4,
        "template 'answers/gone.j2' not found",
    ),
    (
        "error-in-include",
        "a\n{% include 'answers/inc.j2' %}\n",
        {"answers/inc.j2": "ok\n{{ missing_var }}\n"},
        None,
        "answers/inc.j2",
        2,
        "'missing_var' is undefined",
    ),
    (
        "syntax-in-include",
        "a\n{% include 'answers/inc.j2' %}\n",
        {"answers/inc.j2": "x\ny\n{{ }}\n"},
        None,
        "answers/inc.j2",
        3,
        "syntax error",
    ),
    ("filter-fails", "a\n{{ 'https://x/y'|grub_url }}\n", {}, None, "answers/t.j2", 2, "http only"),
    (
        "boot-template-error",
        ANSWER,
        {"boot/install.ipxe.j2": "#!ipxe\nkernel {{ urls.kernal }}\n"},
        "ipxe",
        "boot/install.ipxe.j2",
        2,
        "has no attribute 'kernal'",
    ),
]


@pytest.mark.parametrize(
    ("answer", "extra", "boot", "template", "line", "words"),
    [r[1:] for r in RENDER_ERRORS],
    ids=[r[0] for r in RENDER_ERRORS],
)
def test_render_errors_name_profile_template_line(tmp_path, answer, extra, boot, template, line, words):
    cat = catalog.load(*tree(tmp_path, answer=answer, extra=extra))
    with pytest.raises(RenderError) as err:
        render(tmp_path, cat, boot)
    e = err.value
    assert (e.profile, e.template, e.line) == ("p", template, line), str(e)
    assert words in e.rule, str(e)
    assert str(e).startswith(f"profile p: template {template} line {line}: ")


def test_args_expression_error_names_the_key(tmp_path):
    cat = catalog.load(*tree(tmp_path, edit('args = ["console=ttyS0"]', 'args = ["a", "host={{ machine.nmae }}"]')))
    with pytest.raises(RenderError) as err:
        render(tmp_path, cat)
    assert (err.value.profile, err.value.template) == ("p", "boot.args[1]") and "nmae" in err.value.rule


def test_missing_boot_template(tmp_path):
    profiles, templates = tree(tmp_path)
    (templates / "boot/install.grub.j2").unlink()
    with pytest.raises(RenderError, match="template boot/install.grub.j2: template 'boot/install.grub.j2' not found"):
        render(tmp_path, catalog.load(profiles, templates), "grub")
