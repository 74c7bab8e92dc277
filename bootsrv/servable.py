"""Which file under a served root may go to an anonymous client: one rule for TFTP and HTTP.

bootsrv runs as root and answers anyone on the boot network, over TFTP (bootsrv.tftp.paths) and
over HTTP (`/tftp/` and `/files/`, bootsrv.http.boot). Both open files with `open_servable`,
so a file is served by both or by neither. It is served only when, on the opened descriptor:

1. its real path, after every symlink as the kernel resolved it (/proc/self/fd), is inside the
   root: a symlink swapped in after a check cannot lead out, because nothing is checked before
   the open;
2. it is a regular file (not a directory, fifo or device);
3. it is world-readable (o+r): a file an admin made private (a key, a half-written image, a file
   root's umask made 0600) is not for every client on the wire. tftpd-hpa has the same rule;
4. it has one name (st_nlink == 1), or its file system is mounted whole (mount root "/") at or
   below the root.

Why rule 4. A hard link is a second name of the same inode, and nothing in the inode says where
its other names are: `ln /etc/bootsrv/bootsrv.toml /srv/tftp/x` (by an admin's slip, a script
running as root, `cp -al` or `rsync --link-dest` across the wrong trees, or anyone who can write
into the root on a host without fs.protected_hardlinks) puts a file from elsewhere inside the
root, and rule 1 cannot see it: the path really is inside. Finding the other names means walking
the whole file system, per request or from a cache that a new link makes stale. So a file with
several names is served only where every one of its names must be inside the root: when its file
system is mounted whole at or below the root (a partition, LV or tmpfs of its own for boot files),
every directory entry of that file system is under the root, and so is every name of the inode.
Everything else with several names is refused, with a reason that says so. The legitimate uses of
hard links have verified alternatives: a symlink inside the root (rule 1 checks where it leads),
or a reflink copy (`cp --reflink`: its own inode, shared blocks). bootsrv's own tools copy
(`bootsrv tftp populate`, `bootsrv profile fetch-installer`); they never link. Device numbers
compare st_dev with the mount table's major:minor, so file systems whose files report another
device than their mount (btrfs subvolumes, overlayfs) are never taken as whole: refused, never
wrongly served. Ownership is no substitute: a file's owner says nothing about where its names are.

`judge` is the rule (pure); `whole_file_systems` reads a mount table's text (pure);
`open_servable` is the I/O edge both servers call.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass

MISSING = "missing"  # nothing to serve there: HTTP 404, TFTP error 1
FORBIDDEN = "forbidden"  # there, but not for the wire: HTTP 403, TFTP error 2 (access violation)

MOUNTINFO = "/proc/self/mountinfo"


@dataclass(frozen=True)
class Refused:
    kind: str  # MISSING or FORBIDDEN
    reason: str  # sent to the client (TFTP ERROR text, HTTP reason) and logged


@dataclass(frozen=True)
class Opened:
    fd: int  # read-only, close-on-exec; the caller owns it
    stat: os.stat_result
    path: str  # the real path, inside the root


def inside(root: str, path: str) -> bool:
    """Is the real path `path` the root or below it (both already resolved)?"""
    return path == root or path.startswith(root.rstrip("/") + "/")


def judge(mode: int, links: int, device: int, whole: Callable[[int], bool]) -> Refused | None:
    """Rules 2-4 for an opened file's st_mode, st_nlink and st_dev: None when it may be served.

    `whole(device)` says whether that file system is mounted whole inside the root; it is asked
    only for a file with several names (reading the mount table is then the only cost)."""
    if not stat.S_ISREG(mode):
        return Refused(MISSING, "not a regular file")
    if not mode & stat.S_IROTH:
        return Refused(FORBIDDEN, "file is not world-readable")
    if links > 1 and not whole(device):
        return Refused(
            FORBIDDEN,
            f"file has {links} hard links and its file system is not mounted whole inside the root:"
            " another name may lie outside it",
        )
    return None


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in mount paths as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def whole_file_systems(mountinfo: str, root: str) -> frozenset[int]:
    """Devices (st_dev) of the file systems mounted whole (mount root "/") at or below `root`,
    from the text of /proc/self/mountinfo (proc(5): id, parent, major:minor, root, mount point, ...)."""
    devices = set()
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 5 or ":" not in fields[2]:
            continue
        major, _, minor = fields[2].partition(":")
        if not (major.isdigit() and minor.isdigit()):
            continue
        if _unescape(fields[3]) == "/" and inside(root, _unescape(fields[4])):
            devices.add(os.makedev(int(major), int(minor)))
    return frozenset(devices)


def _mounted_whole_inside(root: str) -> Callable[[int], bool]:
    def whole(device: int) -> bool:
        try:
            with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
                return device in whole_file_systems(f.read(), root)
        except OSError:  # no /proc: nothing is known to be whole, so several names are refused
            return False

    return whole


def open_servable(root: str, relative: str) -> Opened | Refused:
    """Open `relative` below `root` (a resolved absolute path) for reading, and apply the rule.

    `relative` has already passed the caller's own name rules (no '..', no NUL)."""
    try:
        fd = os.open(os.path.join(root, relative), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (FileNotFoundError, NotADirectoryError):
        return Refused(MISSING, "file not found")
    except PermissionError:
        return Refused(FORBIDDEN, "permission denied")
    except OSError as exc:
        return Refused(MISSING, f"cannot open: {exc.strerror}")
    try:
        # What the descriptor really is, after every symlink, as the kernel resolved it.
        real = os.readlink(f"/proc/self/fd/{fd}")
        if not inside(root, real):
            os.close(fd)
            return Refused(FORBIDDEN, "file name leads outside the root")
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        return Refused(MISSING, f"cannot open: {exc.strerror}")
    refused = judge(st.st_mode, st.st_nlink, st.st_dev, _mounted_whole_inside(root))
    if refused is not None:
        os.close(fd)
        return refused
    return Opened(fd, st, real)
