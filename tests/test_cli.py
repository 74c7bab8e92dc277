"""CLI smoke tests: the commands a newcomer types first."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from click.testing import CliRunner

from bootsrv.cli.main import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("serve", "config"):
        assert command in result.output


def test_config_check_ok(tmp_path):
    site = tmp_path / "ok.toml"
    site.write_text('[server]\nname = "a"\n')
    result = run("config", "check", str(site))
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_config_check_bad_names_file_key_rule(tmp_path):
    site = tmp_path / "bad.toml"
    site.write_text("[dhcp]\noffer_hold = 0\n")
    result = run("config", "check", str(site))
    assert result.exit_code == 2
    assert f"error: {site}: dhcp.offer_hold: " in result.output


def test_config_show_prints_effective_toml(tmp_path):
    site = tmp_path / "s.toml"
    site.write_text('[server]\nname = "shown"\n')
    result = run("--config", str(site), "config", "show")
    assert result.exit_code == 0
    assert 'name = "shown"' in result.output
    assert "[[networks]]" in result.output


def test_serve_with_invalid_config_does_not_start(tmp_path):
    site = tmp_path / "bad.toml"
    site.write_text("[http]\nport = 0\n")
    result = run("--config", str(site), "serve")
    assert result.exit_code == 2
    assert "http.port" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    site = tmp_path / "serve.toml"
    site.write_text(
        f'[store]\ndirectory = "{tmp_path}/leases"\n[http]\nport = {port}\n'
        "[tftp]\nenabled = false\n[dns]\nenabled = false\n[dhcp]\nenabled = false\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bootsrv", "--log-format", "json", "--config", str(site), "serve"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if '"event": "ready"' in line:
                break
        else:
            raise AssertionError(f"no ready event: {lines}")
        events = [json.loads(line) for line in lines if line.strip()]
        assert any(e["event"] == "listening" and e["port"] == port for e in events)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert json.load(resp)["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=10)[1]
        assert proc.returncode == 0
        assert '"event": "stopped"' in rest
    finally:
        if proc.poll() is None:
            proc.kill()
