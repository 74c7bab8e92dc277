"""`bootsrv tftp populate`: the boot loaders, copied from Debian's packages into the TFTP root.

Nothing binary lives in git: iPXE comes from the `ipxe` package, the Secure Boot pair from
`shim-signed` (Microsoft-signed shim) and `grub-efi-amd64-signed` (Debian-signed GRUB). shim
loads `grubx64.efi` from its own directory, so the network GRUB is installed under that name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bootsrv.errors import NotFound


@dataclass(frozen=True)
class BootFile:
    name: str  # in the TFTP root (what DHCP's boot file names)
    source: str  # absolute path as the package installs it
    package: str  # the Debian package that ships it


BOOT_FILES = (
    BootFile("undionly.kpxe", "/usr/lib/ipxe/undionly.kpxe", "ipxe"),  # BIOS PXE -> iPXE over UNDI
    BootFile("ipxe.efi", "/usr/lib/ipxe/ipxe.efi", "ipxe"),  # UEFI, iPXE's own NIC drivers
    BootFile("snponly.efi", "/usr/lib/ipxe/snponly.efi", "ipxe"),  # UEFI, the firmware's SNP driver
    BootFile("shimx64.efi", "/usr/lib/shim/shimx64.efi.signed", "shim-signed"),  # Secure Boot stage 1
    BootFile("grubx64.efi", "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed", "grub-efi-amd64-signed"),
)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def populate(
    root: Path, files: tuple[BootFile, ...] = BOOT_FILES, prefix: Path = Path("/")
) -> list[tuple[BootFile, str]]:
    """Copy every boot file into `root`; [(file, "copied" | "unchanged")].

    All sources are checked first: a missing package changes nothing and names what to install.
    Each copy is written beside its target and renamed over it, world-readable (the TFTP server
    serves world-readable files only), so a client never fetches a half-written loader.
    """
    sources = {f: prefix / f.source.lstrip("/") for f in files}
    missing = [f for f, src in sources.items() if not src.is_file()]
    if missing:
        packages = sorted({f.package for f in missing})
        names = ", ".join(str(sources[f]) for f in missing)
        raise NotFound(
            f"missing {names}: install the Debian package{'s' if len(packages) > 1 else ''} "
            f"{' '.join(packages)} (apt-get install {' '.join(packages)})"
        )
    root.mkdir(parents=True, exist_ok=True)
    done = []
    for f, src in sources.items():
        target = root / f.name
        if target.is_file() and not target.is_symlink() and _digest(target) == _digest(src):
            os.chmod(target, 0o644)
            done.append((f, "unchanged"))
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{f.name}.", dir=root)
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                while chunk := inp.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        done.append((f, "copied"))
    return done
