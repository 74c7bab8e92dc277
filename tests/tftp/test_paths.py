"""Path confinement as tables: request text -> root-relative path or refusal; then real files
(the rule on opened files is bootsrv.servable's, shared with HTTP: tests/test_servable.py)."""

from __future__ import annotations

import os

import pytest

from bootsrv.tftp import paths
from bootsrv.tftp.paths import Refusal, normalise, open_inside

NORMALISE = [
    ("plain", "undionly.kpxe", "undionly.kpxe"),
    ("subdir", "pxelinux.cfg/01-52-54-00-12-34-56", "pxelinux.cfg/01-52-54-00-12-34-56"),
    ("leading slash is the root", "/grub/grub.cfg", "grub/grub.cfg"),
    ("absolute host path stays in root", "/etc/passwd", "etc/passwd"),
    ("double slashes", "a//b///c", "a/b/c"),
    ("dot components", "./a/./b", "a/b"),
    ("backslashes normalised", "boot\\x86\\pxeboot.n12", "boot/x86/pxeboot.n12"),
    ("dotdot refused", "../etc/passwd", paths.ACCESS_VIOLATION),
    ("dotdot inside refused", "a/../../etc/passwd", paths.ACCESS_VIOLATION),
    ("dotdot even when harmless", "a/../b", paths.ACCESS_VIOLATION),
    ("backslash traversal refused", "..\\..\\etc\\passwd", paths.ACCESS_VIOLATION),
    ("mixed traversal refused", "a\\..//../x", paths.ACCESS_VIOLATION),
    ("absolute dotdot refused", "/../etc/passwd", paths.ACCESS_VIOLATION),
    ("empty", "", paths.FILE_NOT_FOUND),
    ("root only", "/", paths.FILE_NOT_FOUND),
    ("control character", "a\nb", paths.ACCESS_VIOLATION),
    ("too long", "a" * 300, paths.FILE_NOT_FOUND),
    ("dots in names are fine", "..hidden/x..y", "..hidden/x..y"),
]


@pytest.mark.parametrize("requested,expected", [c[1:] for c in NORMALISE], ids=[c[0] for c in NORMALISE])
def test_normalise(requested, expected):
    got = normalise(requested)
    if isinstance(expected, int):
        assert isinstance(got, Refusal) and got.code == expected, got
    else:
        assert got == expected


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "ok").write_bytes(b"inside")
    (root / "sub" / "deep").write_bytes(b"deep")
    (root / "private").write_bytes(b"secret")
    os.chmod(root / "private", 0o600)
    (tmp_path / "outside").write_bytes(b"outside")
    os.symlink("../outside", root / "link-out")
    os.symlink("/etc/passwd", root / "link-abs")
    os.symlink("sub/deep", root / "link-in")
    os.symlink(str(tmp_path), root / "dir-out")
    os.mkfifo(root / "fifo")
    os.link(tmp_path / "outside", root / "hardlink-out")  # a second name of a file outside the root
    for p in (root / "ok", root / "sub" / "deep", tmp_path / "outside"):
        os.chmod(p, 0o644)
    return os.path.realpath(root)


OPEN = [
    ("file", "ok", b"inside"),
    ("deep", "sub/deep", b"deep"),
    ("symlink inside", "link-in", b"deep"),
    ("symlink out (relative)", "link-out", paths.ACCESS_VIOLATION),
    ("symlink out (absolute)", "link-abs", paths.ACCESS_VIOLATION),
    ("directory symlink out", "dir-out/outside", paths.ACCESS_VIOLATION),
    ("missing", "nope", paths.FILE_NOT_FOUND),
    ("missing below a file", "ok/x", paths.FILE_NOT_FOUND),
    ("directory", "sub", paths.FILE_NOT_FOUND),
    ("fifo", "fifo", paths.FILE_NOT_FOUND),
    ("not world-readable", "private", paths.ACCESS_VIOLATION),
    ("hard link leading out", "hardlink-out", paths.ACCESS_VIOLATION),
]


@pytest.mark.parametrize("relative,expected", [c[1:] for c in OPEN], ids=[c[0] for c in OPEN])
def test_open_inside(tree, relative, expected):
    got = open_inside(tree, relative)
    if isinstance(expected, int):
        assert isinstance(got, Refusal) and got.code == expected, got
    else:
        fd, size = got
        try:
            assert os.pread(fd, 100, 0) == expected and size == len(expected)
        finally:
            os.close(fd)
