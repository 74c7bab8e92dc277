"""Which file a TFTP request names, confined to the TFTP root.

`normalise` is pure: request text -> a root-relative path or a `Refusal`. `open_inside` is the
thin I/O edge: it opens the file and then checks, on the open descriptor, that what was opened
lies inside the root, so a symlink swapped in between the check and the open cannot lead out.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

# TFTP error codes (RFC 1350 section 5, RFC 2347 for 8).
NOT_DEFINED, FILE_NOT_FOUND, ACCESS_VIOLATION, DISK_FULL, ILLEGAL_OPERATION = 0, 1, 2, 3, 4
UNKNOWN_TID, FILE_EXISTS, NO_SUCH_USER, OPTION_REFUSED = 5, 6, 7, 8

MAX_NAME = 255  # longer names are not boot files; bounds the work one request can cause


@dataclass(frozen=True)
class Refusal:
    code: int  # TFTP error code sent to the client
    reason: str  # the message sent (and logged)


def normalise(requested: str) -> str | Refusal:
    """The root-relative path ("pxelinux.cfg/01-aa-bb-..") a request names, or why it is refused.

    - Backslashes become slashes: Windows-made boot configs and NBPs (WDS, some pxelinux and
      GRUB configs) send `boot\\x86\\pxeboot.n12`, and a backslash is never part of a file name
      we put in the root; normalising first means `..\\..\\etc\\passwd` meets the `..` rule below
      instead of being looked up as one odd file name.
    - A leading slash is the root itself (as tftpd-hpa -s and dnsmasq): GRUB and some firmware
      ask for `/grub/grub.cfg`. `/etc/passwd` is therefore root/etc/passwd, never the host's.
    - `..` anywhere is refused outright rather than folded (`a/../b`): no boot client needs it
      and a traversal attempt deserves an access violation, not a best guess.
    """
    if not requested:
        return Refusal(FILE_NOT_FOUND, "empty file name")
    if len(requested) > MAX_NAME:
        return Refusal(FILE_NOT_FOUND, f"file name longer than {MAX_NAME} characters")
    if any(ord(c) < 0x20 or c == "\x7f" for c in requested):
        return Refusal(ACCESS_VIOLATION, "control character in file name")
    parts = [p for p in requested.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        return Refusal(ACCESS_VIOLATION, "'..' in file name")
    if not parts:
        return Refusal(FILE_NOT_FOUND, "file name names the root directory")
    return "/".join(parts)


def inside(root: str, path: str) -> bool:
    """Is the real path `path` the root or below it (both already resolved)?"""
    return path == root or path.startswith(root.rstrip("/") + "/")


def open_inside(root: str, relative: str) -> tuple[int, int] | Refusal:
    """Open `relative` below `root` (a resolved absolute path) for reading: (fd, size) or a Refusal.

    Symlinks inside the root are followed as long as they stay inside; one that leads out is an
    access violation. Only regular, world-readable files are served: bootsrv runs as root, and a
    file an admin made private (a key, a half-written image) must not go to any client on the
    wire (tftpd-hpa applies the same rule).
    """
    try:
        fd = os.open(os.path.join(root, relative), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        return Refusal(FILE_NOT_FOUND, "file not found")
    except NotADirectoryError:
        return Refusal(FILE_NOT_FOUND, "file not found")
    except PermissionError:
        return Refusal(ACCESS_VIOLATION, "permission denied")
    except OSError as exc:
        return Refusal(FILE_NOT_FOUND, f"cannot open: {exc.strerror}")
    try:
        # What the descriptor really is, after every symlink, as the kernel resolved it.
        real = os.readlink(f"/proc/self/fd/{fd}")
        if not inside(root, real):
            os.close(fd)
            return Refusal(ACCESS_VIOLATION, "file name leads outside the TFTP root")
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        return Refusal(FILE_NOT_FOUND, f"cannot open: {exc.strerror}")
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return Refusal(FILE_NOT_FOUND, "not a regular file")
    if not st.st_mode & stat.S_IROTH:
        os.close(fd)
        return Refusal(ACCESS_VIOLATION, "file is not world-readable")
    return fd, st.st_size
