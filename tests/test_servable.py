"""The one rule for files served to anonymous clients (bootsrv.servable), as tables; then real
files, and a file system mounted whole inside the root (a tmpfs in a mount namespace of its own)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bootsrv.servable import FORBIDDEN, MISSING, Opened, Refused, inside, judge, open_servable, whole_file_systems
from tests.conftest import need

REG = stat.S_IFREG
WHOLE = 0x0801  # the device the table's `whole` predicate knows as mounted whole inside the root

JUDGE = [
    # (id, mode, links, device, expected kind or None)
    ("world-readable, one name", REG | 0o644, 1, 0x0800, None),
    ("world-readable only", REG | 0o004, 1, 0x0800, None),
    ("root only (0600)", REG | 0o600, 1, 0x0800, FORBIDDEN),
    ("group-readable (0640)", REG | 0o640, 1, 0x0800, FORBIDDEN),
    ("two names, file system not whole inside", REG | 0o644, 2, 0x0800, FORBIDDEN),
    ("two names, file system mounted whole inside", REG | 0o644, 2, WHOLE, None),
    ("private and whole: still private", REG | 0o600, 2, WHOLE, FORBIDDEN),
    ("directory", stat.S_IFDIR | 0o755, 2, 0x0800, MISSING),
    ("fifo", stat.S_IFIFO | 0o644, 1, 0x0800, MISSING),
    ("block device", stat.S_IFBLK | 0o644, 1, 0x0800, MISSING),
]


@pytest.mark.parametrize("mode, links, device, expected", [c[1:] for c in JUDGE], ids=[c[0] for c in JUDGE])
def test_judge(mode, links, device, expected):
    asked = []

    def whole(dev):
        asked.append(dev)
        return dev == WHOLE

    got = judge(mode, links, device, whole)
    assert (got.kind if got else None) == expected, got
    if links == 1:
        assert asked == []  # the mount table is read only for a file with several names


MOUNTINFO = r"""22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 8:17 / /srv/tftp/dedup rw,relatime shared:1 - ext4 /dev/sdb1 rw
41 27 8:18 /boot-files /srv/tftp/partial rw,relatime - ext4 /dev/sdb2 rw
42 27 0:50 / /srv/tftp/with\040space rw - tmpfs tmpfs rw
43 27 0:51 / /srv/tftp rw - tmpfs tmpfs rw
44 27 0:52 / /srv/tftpx rw - tmpfs tmpfs rw
45 27 0:53 / /srv rw - tmpfs tmpfs rw
garbage line
"""


def test_whole_file_systems():
    got = whole_file_systems(MOUNTINFO, "/srv/tftp")
    # whole at the root, whole below it (escaped space too); not a bind of a subdirectory
    # (8:18, its other directories are elsewhere), not a sibling (/srv/tftpx), not above (/srv, /).
    assert got == {os.makedev(8, 17), os.makedev(0, 50), os.makedev(0, 51)}
    assert whole_file_systems(MOUNTINFO, "/var/lib/bootsrv/files") == frozenset()


def test_inside():
    assert inside("/srv/tftp", "/srv/tftp/a")
    assert inside("/srv/tftp", "/srv/tftp")
    assert not inside("/srv/tftp", "/srv/tftpx/a")
    assert not inside("/srv/tftp", "/srv")


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok").write_bytes(b"inside")
    (tmp_path / "outside").write_bytes(b"outside")
    os.link(tmp_path / "outside", root / "hardlink-out")
    (root / "twin-a").write_bytes(b"twin")
    os.link(root / "twin-a", root / "twin-b")
    (root / "private").write_bytes(b"secret")
    for p in (root / "ok", tmp_path / "outside", root / "twin-a"):
        p.chmod(0o644)
    (root / "private").chmod(0o600)
    return os.path.realpath(root)


OPEN = [
    ("one name", "ok", b"inside"),
    ("hard link to a file outside the root", "hardlink-out", FORBIDDEN),
    ("hard link, both names inside, file system not whole inside", "twin-b", FORBIDDEN),
    ("root only (0600)", "private", FORBIDDEN),
    ("missing", "nope", MISSING),
]


@pytest.mark.parametrize("relative, expected", [c[1:] for c in OPEN], ids=[c[0] for c in OPEN])
def test_open_servable(tree, relative, expected):
    got = open_servable(tree, relative)
    if isinstance(expected, str):
        assert isinstance(got, Refused) and got.kind == expected, got
    else:
        assert isinstance(got, Opened) and got.path == os.path.join(tree, relative)
        try:
            assert os.pread(got.fd, 100, 0) == expected
        finally:
            os.close(got.fd)


def test_hard_links_on_a_file_system_mounted_whole_inside_the_root(tmp_path):
    """A tmpfs mounted at root/dedup in a private mount namespace (so nothing leaks to the host):
    hard links there are served, since every name of their inodes is under the root; the same
    pair on the root's own file system is not."""
    need(os.geteuid() == 0 and shutil.which("unshare") is not None, "needs root and unshare(1)")
    root = tmp_path / "root"
    (root / "dedup").mkdir(parents=True)
    script = f"""
import os, subprocess, sys
from bootsrv.servable import Opened, open_servable
root = {str(root)!r}
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", root + "/dedup"], check=True)
for d in ("dedup", "."):
    with open(os.path.join(root, d, "kernel"), "wb") as f:
        f.write(b"k")
    os.chmod(os.path.join(root, d, "kernel"), 0o644)
    os.link(os.path.join(root, d, "kernel"), os.path.join(root, d, "kernel-again"))
print(isinstance(open_servable(root, "dedup/kernel-again"), Opened),
      isinstance(open_servable(root, "kernel-again"), Opened))
"""
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]
