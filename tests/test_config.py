"""Config model: good and bad files as a table, each bad one with the message it must produce."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from bootsrv import config
from bootsrv.errors import ConfigError

NET = '[[networks]]\nname = "pub"\nsubnet = "10.0.0.0/24"\n'

BAD = [
    ("unknown-top", "bogus = 1", "bogus", "unknown key"),
    ("unknown-nested", "[server]\nlease_tme = 5", "server.lease_tme", "unknown key"),
    ("not-toml", "[server\n", "", "not valid TOML"),
    ("rescan-zero", "[server]\nrescan_interval = 0", "server.rescan_interval", "greater than or equal to 1"),
    ("rescan-string", '[server]\nrescan_interval = "x"', "server.rescan_interval", "valid integer"),
    ("owner-ip", '[server]\nowner_ips = ["10.0.0"]', "server.owner_ips[0]", "valid IPv4 address"),
    ("owner-empty", "[server]\nowner_ips = []", "server.owner_ips", "at least 1"),
    ("server-name", '[server]\nname = "a b"', "server.name", "match pattern"),
    ("host-bits", '[[networks]]\nname = "pub"\nsubnet = "10.0.0.1/24"', "networks[0].subnet", "host bits"),
    ("net-name", '[[networks]]\nname = "Pub"\nsubnet = "10.0.0.0/24"', "networks[0].name", "match pattern"),
    ("net-missing-subnet", '[[networks]]\nname = "pub"', "networks[0].subnet", "required key is missing"),
    (
        "range-outside",
        NET + '[[networks.ranges]]\nstart = "10.0.1.5"\nend = "10.0.1.9"',
        "networks[0].ranges[0].start",
        "outside subnet 10.0.0.0/24",
    ),
    (
        "range-reversed",
        NET + '[[networks.ranges]]\nstart = "10.0.0.9"\nend = "10.0.0.5"',
        "networks[0].ranges[0].end",
        "before start",
    ),
    (
        "range-broadcast",
        NET + '[[networks.ranges]]\nstart = "10.0.0.9"\nend = "10.0.0.255"',
        "networks[0].ranges[0].end",
        "network or broadcast",
    ),
    ("router-outside", NET + 'router = "10.9.9.9"', "networks[0].router", "outside subnet"),
    ("mtu-small", NET + "mtu = 20", "networks[0].mtu", "greater than or equal to 68"),
    ("option-key", NET + 'options = { ntp = "1.2.3.4" }', "networks[0].options.ntp", "option number"),
    ("dup-net", NET + NET, "networks[1].name", "used by another network"),
    ("overlap", NET + '[[networks]]\nname = "b"\nsubnet = "10.0.0.0/16"', "networks[1].subnet", "overlaps"),
    (
        "dup-iface",
        NET + 'interface = "fe0"\n[[networks]]\nname = "b"\nsubnet = "10.1.0.0/24"\ninterface = "fe0"',
        "networks[1].interface",
        "already serves network 'pub'",
    ),
    ("iface-long", NET + 'interface = "a-very-long-interface"', "networks[0].interface", "at most 15"),
    ("boot-arch", '[boot]\nfiles = { pdp11 = "x" }', "boot.files", "unknown architecture 'pdp11'"),
    ("boot-escape", '[boot]\nfiles = { bios = "../../etc/passwd" }', "boot.files", "inside tftp_root"),
    ("boot-url", '[boot]\nhttp_base_url = "ftp://x"', "boot.http_base_url", "match pattern"),
    ("port", "[http]\nport = 70000", "http.port", "less than or equal to 65535"),
    ("dhcp-processes-0", "[dhcp]\nprocesses = 0", "dhcp.processes", "greater than or equal to 1"),
    ("discovery-rate-0", "[boot]\ndiscovery_rate = 0", "boot.discovery_rate", "greater than 0"),
    ("discovery-rate-nan", "[boot]\ndiscovery_rate = nan", "boot.discovery_rate", "less than or equal to 100000"),
    ("discovery-burst-0", "[boot]\ndiscovery_burst = 0", "boot.discovery_burst", "greater than or equal to 1"),
    ("admin-token-short", '[api]\nadmin_token = "short"', "api.admin_token", "at least 16"),
]


@pytest.mark.parametrize("text,key,rule", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_names_key_and_rule(text, key, rule):
    with pytest.raises(ConfigError) as info:
        config.parse(text, "site.toml")
    err = info.value
    assert err.source == "site.toml"
    assert err.key == key
    assert rule in err.rule
    assert str(err).startswith("site.toml: ")


def test_embedded_default_is_valid_and_safe():
    cfg = config.load(None, env={})
    # Safe by construction: no network is served on any interface or relay, listeners on loopback.
    assert all(net.interface is None and not net.relays for net in cfg.networks)
    for listen in (cfg.http, cfg.tftp, cfg.dns):
        assert config.is_loopback(listen.address)


def test_site_file_merges_over_default(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text(
        '[server]\nname = "bootsrv-b"\nowner_ips = ["10.0.0.3"]\n'
        '[[networks]]\nname = "backend"\nsegment = "even"\nsubnet = "10.1.0.0/24"\ninterface = "be0"\n'
        '[[networks.ranges]]\nstart = "10.1.0.10"\nend = "10.1.0.20"\nowner = "10.0.0.2"\n'
        '[[networks.ranges]]\nstart = "10.1.0.30"\nend = "10.1.0.40"\n'
    )
    cfg = config.load(site, env={})
    assert cfg.server.name == "bootsrv-b"
    assert cfg.server.rescan_interval == 60  # untouched default kept
    assert [n.name for n in cfg.networks] == ["backend"]  # arrays replace, not append
    net = cfg.network("backend")
    assert net.subnet == IPv4Network("10.1.0.0/24")
    assert [cfg.range_owner(r) for r in net.ranges] == [IPv4Address("10.0.0.2"), IPv4Address("10.0.0.3")]


def test_env_names_the_file(tmp_path):
    site = tmp_path / "env.toml"
    site.write_text('[server]\nname = "from-env"\n')
    assert config.load(None, env={config.ENV_CONFIG: str(site)}).server.name == "from-env"


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path / "nope.toml", env={})
    assert "cannot read" in info.value.rule


def test_show_output_round_trips():
    cfg = config.load(None, env={})
    again = config.parse(cfg.to_toml(), "shown.toml", base={})
    assert again == cfg


def test_relative_profile_dirs_mean_the_shipped_ones_whatever_the_cwd(tmp_path, monkeypatch):
    from bootsrv import data

    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles").mkdir()  # a cwd's own profiles/ is not what "profiles" means
    cfg = config.parse('[profiles]\nprofiles_dir = "profiles"\ntemplates_dir = "/srv/templates"\n', "site.toml")
    assert cfg.profiles.profiles_dir == data.profiles_dir() and (cfg.profiles.profiles_dir / "site.toml").is_file()
    assert str(cfg.profiles.templates_dir) == "/srv/templates"
    default = config.load(None, env={}).profiles
    assert default.profiles_dir == data.profiles_dir() and default.templates_dir == data.templates_dir()
    assert (default.templates_dir / "boot/install.ipxe.j2").is_file()


def test_a_relative_profile_dir_must_name_shipped_data():
    with pytest.raises(ConfigError) as info:
        config.parse('[profiles]\ntemplates_dir = "my-templates"\n', "site.toml")
    assert info.value.key == "profiles.templates_dir"
    assert "'my-templates' is not shipped data" in info.value.rule and "absolute path" in info.value.rule
