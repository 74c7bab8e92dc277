"""/files/<path> under boot.files_root: Range (206, 416), conditional GET (304), and no request
path reaching outside the root, as tables."""

from __future__ import annotations

import os

import pytest
from boot_builders import make_wiring

from bootsrv import config
from bootsrv.errors import ConfigError
from bootsrv.http.app import create_app
from bootsrv.tftp import paths as tftp_paths

KERNEL = bytes(range(256)) * 64  # 16 KiB, every byte value


@pytest.fixture
def files(wiring, tmp_path):
    root = wiring.config.boot.files_root
    (root / "installers/debian12/amd64").mkdir(parents=True)
    (root / "installers/debian12/amd64/linux").write_bytes(KERNEL)
    (tmp_path / "secret").write_text("secret outside the root\n")
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "inside-link").symlink_to(root / "installers/debian12/amd64/linux")
    # bootsrv.servable's rule, TFTP's too: a file only root may read, and a hard link inside the
    # root whose other name is outside it (a world-readable file, so the link alone is the fault).
    (root / "private.key").write_text("only root reads this\n")
    (root / "private.key").chmod(0o600)
    (tmp_path / "secret").chmod(0o644)
    os.link(tmp_path / "secret", root / "hardlink-out")
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
        ("/files/escape", 403, "'escape' is not served: file name leads outside the root"),
        ("/files/hardlink-out", 403, "'hardlink-out' is not served: file has 2 hard links"),
        ("/files/private.key", 403, "'private.key' is not served: file is not world-readable"),
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
        "hardlink-out",
        "root-only",
        "directory",
        "missing",
    ],
)
def test_nothing_outside_the_root(client, files, path, status, words):
    resp = client.get(path, follow_redirects=True)
    assert resp.status_code == status and words in resp.text, (resp.status_code, resp.text)
    assert b"secret outside" not in resp.data and b"only root" not in resp.data
    if status == 403:
        assert (resp.json["error"], resp.json["field"]) == ("NotServed", "path")


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


@pytest.fixture
def tftp_wiring(tmp_path):
    # A TFTP root of the test's own (the default is /var/lib/bootsrv/tftp, the host's).
    wiring = make_wiring(tmp_path, f'tftp_root = "{tmp_path}/tftp"')
    wiring.config.boot.tftp_root.mkdir()
    return wiring


def test_tftp_root_is_served_for_uefi_http_boot(tftp_wiring):
    """DHCP hands UEFI HTTP boot clients {http_base_url}/tftp/<boot file> (bootsrv.dhcp.pxe)."""
    client = create_app(tftp_wiring).test_client()
    root = tftp_wiring.config.boot.tftp_root
    (root / "ipxe.efi").write_bytes(KERNEL)
    resp = client.get("/tftp/ipxe.efi", headers={"Range": "bytes=0-9"})
    assert resp.status_code == 206 and resp.data == KERNEL[:10]
    assert client.get("/tftp/../ipxe.efi").status_code == 400
    assert client.get("/tftp/missing.efi").status_code == 404


def test_tftp_root_over_http_serves_what_tftp_serves(tftp_wiring, tmp_path):
    """One rule (bootsrv.servable) for both: every file of the TFTP root gets the same verdict,
    with the same reason, from TFTP's open_inside and from HTTP's /tftp/."""
    client = create_app(tftp_wiring).test_client()
    root = tftp_wiring.config.boot.tftp_root
    (root / "ipxe.efi").write_bytes(KERNEL)
    (root / "private.efi").write_bytes(KERNEL)
    (root / "private.efi").chmod(0o600)
    (tmp_path / "elsewhere").write_bytes(b"elsewhere")
    (tmp_path / "elsewhere").chmod(0o644)
    os.link(tmp_path / "elsewhere", root / "hardlink.efi")
    (root / "symlink.efi").symlink_to(tmp_path / "elsewhere")
    expected = {
        "ipxe.efi": (200, None),
        "private.efi": (403, tftp_paths.ACCESS_VIOLATION),
        "hardlink.efi": (403, tftp_paths.ACCESS_VIOLATION),
        "symlink.efi": (403, tftp_paths.ACCESS_VIOLATION),
        "missing.efi": (404, tftp_paths.FILE_NOT_FOUND),
    }
    for name, (status, code) in expected.items():
        by_tftp = tftp_paths.open_inside(os.path.realpath(root), name)
        resp = client.get(f"/tftp/{name}")
        assert resp.status_code == status, (name, resp.text)
        if code is None:
            os.close(by_tftp[0])
            assert resp.data == KERNEL
        else:
            assert by_tftp.code == code, (name, by_tftp)
            if status == 403:
                assert resp.json["reason"].endswith(by_tftp.reason), (name, resp.json, by_tftp)
