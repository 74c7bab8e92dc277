"""Which file a TFTP request names, confined to the TFTP root.

`normalise` is pure: request text -> a root-relative path or a `Refusal`. `open_inside` is the
thin I/O edge over bootsrv.servable, the one rule TFTP and HTTP share: it opens the file and then
checks, on the open descriptor, that what was opened lies inside the root (so a symlink swapped
in between the check and the open cannot lead out) and may go to any client on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

from bootsrv.servable import FORBIDDEN, Refused, open_servable

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


def open_inside(root: str, relative: str) -> tuple[int, int] | Refusal:
    """Open `relative` below `root` (a resolved absolute path) for reading: (fd, size) or a Refusal.

    The rule is bootsrv.servable's, the same for HTTP's /tftp/ and /files/: the real path of the
    opened descriptor inside the root (symlinks are followed as long as they stay inside), a
    regular file, world-readable (bootsrv runs as root, and a file an admin made private must not
    go to any client on the wire; tftpd-hpa applies the same rule), and one name only unless its
    file system is mounted whole inside the root (a hard link's other names cannot be seen).
    """
    opened = open_servable(root, relative)
    if isinstance(opened, Refused):
        return Refusal(ACCESS_VIOLATION if opened.kind == FORBIDDEN else FILE_NOT_FOUND, opened.reason)
    return opened.fd, opened.stat.st_size
