"""The TFTP service as `bootsrv serve` builds it: from the config, registered in the runtime."""

from __future__ import annotations

import socket

import pytest

from bootsrv import config as configmod
from bootsrv.app import runtime
from bootsrv.app.tftp import TftpService, tftp_services
from bootsrv.app.wiring import Wiring
from bootsrv.errors import ConfigError
from tests.tftp.wire import fetch, request


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wiring_for(tmp_path, port=None, enabled="true"):
    port = port or free_port()
    cfg = configmod.parse(
        f'[boot]\ntftp_root = "{tmp_path}/tftp"\n[tftp]\nenabled = {enabled}\nport = {port}\n', "test.toml"
    )
    return Wiring(cfg)


def test_registered_in_runtime():
    assert tftp_services in runtime.service_factories()


def test_disabled_means_no_service(tmp_path):
    assert tftp_services(wiring_for(tmp_path, enabled="false")) == []


def test_serves_root_and_wiring_dynamic(tmp_path):
    (tmp_path / "tftp").mkdir()
    (tmp_path / "tftp" / "ipxe.efi").write_bytes(b"MZ fake loader")
    (tmp_path / "tftp" / "ipxe.efi").chmod(0o644)
    wiring = wiring_for(tmp_path)
    wiring.tftp_dynamic = lambda path, ip: b"per machine" if path == "grub.cfg-01-aa" else None
    [svc] = tftp_services(wiring)
    svc.start()
    try:
        assert fetch(svc.port, request(1, "ipxe.efi")).data == b"MZ fake loader"
        assert fetch(svc.port, request(1, "grub.cfg-01-aa")).data == b"per machine"
    finally:
        svc.stop()


def test_missing_root_created_empty_and_dynamic_files_served(tmp_path):
    wiring = wiring_for(tmp_path)
    svc = TftpService(wiring, dynamic=lambda path, ip: b"x" if path == "a" else None)
    svc.start()
    try:
        assert fetch(svc.port, request(1, "a")).data == b"x"
        assert fetch(svc.port, request(1, "ipxe.efi")).error[0] == 1
        assert (tmp_path / "tftp").is_dir()
    finally:
        svc.stop()


def test_registered_once():
    assert runtime.service_factories().count(tftp_services) == 1


def test_taken_port_is_a_config_error(tmp_path):
    (tmp_path / "tftp").mkdir()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        svc = TftpService(wiring_for(tmp_path, port=taken.getsockname()[1]))
        with pytest.raises(ConfigError, match="tftp.port"):
            svc.start()
