"""/files/<path> under boot.files_root: Range (206, 416), conditional GET (304), and no request
path reaching outside the root, as tables."""

from __future__ import annotations

import os

import pytest

from bootsrv import config
from bootsrv.errors import ConfigError

KERNEL = bytes(range(256)) * 64  # 16 KiB, every byte value


@pytest.fixture
def files(wiring, tmp_path):
    root = wiring.config.boot.files_root
    (root / "installers/debian12/amd64").mkdir(parents=True)
    (root / "installers/debian12/amd64/linux").write_bytes(KERNEL)
    (tmp_path / "secret").write_text("outside the root\n")
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "inside-link").symlink_to(root / "installers/debian12/amd64/linux")
    return root


PATH = "/files/installers/debian12/amd64/linux"


def test_whole_file(client, files):
    resp = client.get(PATH)
    assert resp.status_code == 200 and resp.data == KERNEL
    assert resp.headers["Accept-Ranges"] == "bytes" and resp.headers["Content-Length"] == str(len(KERNEL))
    assert resp.headers["ETag"] and resp.headers["Last-Modified"]


@pytest.mark.parametrize(
    ("header", "status", "body", "content_range"),
    [
        ("bytes=0-99", 206, KERNEL[:100], f"bytes 0-99/{len(KERNEL)}"),
        ("bytes=1000-", 206, KERNEL[1000:], f"bytes 1000-{len(KERNEL) - 1}/{len(KERNEL)}"),
        ("bytes=-256", 206, KERNEL[-256:], f"bytes {len(KERNEL) - 256}-{len(KERNEL) - 1}/{len(KERNEL)}"),
        (f"bytes={len(KERNEL)}-", 416, None, f"bytes */{len(KERNEL)}"),
        ("bytes=99999-100000", 416, None, f"bytes */{len(KERNEL)}"),
    ],
    ids=["head", "tail-from", "suffix", "at-end", "beyond"],
)
def test_ranges(client, files, header, status, body, content_range):
    resp = client.get(PATH, headers={"Range": header})
    assert resp.status_code == status
    assert resp.headers["Content-Range"] == content_range
    if body is not None:
        assert resp.data == body


def test_conditional_get(client, files):
    first = client.get(PATH)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert client.get(PATH, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(PATH, headers={"If-Modified-Since": modified}).status_code == 304
    assert client.get(PATH, headers={"If-None-Match": '"other"'}).status_code == 200
    # a changed file is sent again: its ETag and date moved
    target = files / "installers/debian12/amd64/linux"
    target.write_bytes(KERNEL[::-1])
    os.utime(target, (1_900_000_000, 1_900_000_000))
    again = client.get(PATH, headers={"If-None-Match": etag, "If-Modified-Since": modified})
    assert again.status_code == 200 and again.data == KERNEL[::-1]
    # If-Range with a stale validator: the whole file, not a range of the new one
    stale = client.get(PATH, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert stale.status_code == 200 and len(stale.data) == len(KERNEL)


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/files/../secret", 400, "path: "),
        ("/files/installers/../../secret", 400, "path: "),
        ("/files/%2e%2e/secret", 400, "path: "),
        ("/files/installers/%2e%2e/%2e%2e/secret", 400, "path: "),
        ("/files//etc/passwd", 404, "no file"),  # Werkzeug merges the slashes: etc/passwd under the root
        ("/files/installers\\..\\..\\secret", 400, "backslash"),
        ("/files/installers/./debian12/amd64/linux", 400, "path: "),
        ("/files/escape", 404, "no file"),  # a symlink out of the root is not there
        ("/files/installers/debian12", 404, "no file"),  # directories are not listed
        ("/files/missing", 404, "no file"),
    ],
    ids=[
        "dotdot",
        "dotdot-deep",
        "encoded",
        "encoded-deep",
        "absolute",
        "backslash",
        "dot",
        "symlink-out",
        "directory",
        "missing",
    ],
)
def test_nothing_outside_the_root(client, files, path, status, words):
    resp = client.get(path, follow_redirects=True)
    assert resp.status_code == status and words in resp.text, (resp.status_code, resp.text)
    assert b"outside the root" not in resp.data


def test_symlink_inside_the_root_is_served(client, files):
    assert client.get("/files/inside-link").data == KERNEL


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("[boot]\nfiles_root = 5", "boot.files_root", "valid path"),
        ('[boot]\nfile_root = "/x"', "boot.file_root", "unknown key"),
    ],
)
def test_files_root_config(text, key, words):
    assert config.parse("", "t").boot.files_root.as_posix() == "/var/lib/bootsrv/files"
    with pytest.raises(ConfigError) as err:
        config.parse(text, "t.toml")
    assert err.value.key == key and words in err.value.rule


def test_tftp_root_is_served_for_uefi_http_boot(client, wiring):
    """DHCP hands UEFI HTTP boot clients {http_base_url}/tftp/<boot file> (bootsrv.dhcp.pxe)."""
    root = wiring.config.boot.tftp_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "ipxe.efi").write_bytes(KERNEL)
    resp = client.get("/tftp/ipxe.efi", headers={"Range": "bytes=0-9"})
    assert resp.status_code == 206 and resp.data == KERNEL[:10]
    assert client.get("/tftp/../ipxe.efi").status_code == 400
    assert client.get("/tftp/missing.efi").status_code == 404
