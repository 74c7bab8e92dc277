"""`bootsrv tftp populate`: copies from the package paths; a missing package names itself."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootsrv.cli.main import main
from bootsrv.errors import NotFound
from bootsrv.tftp.populate import BOOT_FILES, populate


def fake_packages(prefix: Path, skip: set[str] = frozenset()) -> None:
    for f in BOOT_FILES:
        if f.package in skip:
            continue
        src = prefix / f.source.lstrip("/")
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(f"{f.name} from {f.package}".encode())
        os.chmod(src, 0o600)


def test_copies_under_conventional_names(tmp_path):
    fake_packages(tmp_path / "sys")
    done = populate(tmp_path / "root", prefix=tmp_path / "sys")
    assert [(f.name, what) for f, what in done] == [(f.name, "copied") for f in BOOT_FILES]
    assert (tmp_path / "root" / "grubx64.efi").read_bytes() == b"grubx64.efi from grub-efi-amd64-signed"
    assert (tmp_path / "root" / "shimx64.efi").stat().st_mode & 0o777 == 0o644  # served: world-readable
    again = populate(tmp_path / "root", prefix=tmp_path / "sys")
    assert {what for _, what in again} == {"unchanged"}
    assert sorted(os.listdir(tmp_path / "root")) == sorted(f.name for f in BOOT_FILES)  # no temp files left


@pytest.mark.parametrize("package", ["ipxe", "shim-signed", "grub-efi-amd64-signed"])
def test_missing_package_named_and_nothing_copied(tmp_path, package):
    fake_packages(tmp_path / "sys", skip={package})
    with pytest.raises(NotFound, match=f"install the Debian package {package} "):
        populate(tmp_path / "root", prefix=tmp_path / "sys")
    assert not (tmp_path / "root").exists()


def test_cli_with_the_real_packages(tmp_path):
    # ./setup installs ipxe, shim-signed and grub-efi-amd64-signed; fails (not skips) if it did not.
    result = CliRunner().invoke(main, ["tftp", "populate", "--root", str(tmp_path / "tftp")])
    assert result.exit_code == 0, result.output
    for f in BOOT_FILES:
        got = hashlib.sha256((tmp_path / "tftp" / f.name).read_bytes()).digest()
        assert got == hashlib.sha256(Path(f.source).read_bytes()).digest()
        assert f.name in result.output
