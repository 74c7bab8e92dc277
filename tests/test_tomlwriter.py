"""bootsrv.tomlwriter: whatever it writes, tomllib reads back as the same data."""

from __future__ import annotations

import tomllib

import pytest

from bootsrv import config, tomlwriter

# (id, data): the shapes `bootsrv config show` writes, each alone.
DOCUMENTS = [
    ("scalars", {"name": "bootsrv", "port": 69, "enabled": True, "off": False, "ratio": 0.5}),
    ("string escapes", {"s": 'quote " backslash \\ newline \n tab \t done', "u": "Zürich ☃"}),
    ("scalar arrays", {"owner_ips": ["10.0.0.1", "10.0.0.2"], "empty": [], "mixed": [1, "a", True]}),
    ("table", {"server": {"name": "b", "owner_ips": ["192.0.2.1"], "rescan_interval": 60}}),
    ("array of tables with nested arrays", {"networks": [
        {"name": "pub", "subnet": "10.0.0.0/24", "ranges": [{"start": "10.0.0.10", "end": "10.0.0.20"},
                                                             {"start": "10.0.0.30", "end": "10.0.0.40"}]},
        {"name": "backend", "subnet": "10.1.0.0/24", "ranges": []},
    ]}),
    ("inline table of options", {"networks": [{"name": "pub", "options": {"42": ["10.0.0.1"], "66": "tftp"}}]}),
    ("tables of tables", {"dhcp": {"port": 67, "classes": {"PXEClient": {"66": "a"}, "HTTPClient": {"60": "b"}}}}),
    ("empty tables", {"a": {}, "b": {"c": {}}, "d": {"e": {"f": {}}}}),
    ("keys that need quotes", {"a.b": 1, "with space": 2, "": 3, "PXEClient:Arch:00007": {"x": 1}}),
    ("deep paths", {"guests": {"segments": {"odd": {"fe0": "public", "be0": "backend"}}, "hypervisors": [
        {"name": "hv1", "memory_mib": 4096}]}}),
]


@pytest.mark.parametrize("data", [d for _, d in DOCUMENTS], ids=[i for i, _ in DOCUMENTS])
def test_round_trip(data):
    assert tomllib.loads(tomlwriter.dumps(data)) == data


def test_effective_default_config_round_trips_as_data():
    data = config.load(None, env={}).model_dump(mode="json", exclude_none=True)
    assert tomllib.loads(tomlwriter.dumps(data)) == data


def test_tables_come_after_the_values_of_their_parent():
    # TOML: a key after a [table] header belongs to that table, so scalars go first.
    text = tomlwriter.dumps({"t": {"x": 1}, "name": "n"})
    assert text.index('name = "n"') < text.index("[t]")


def test_what_toml_cannot_hold_is_refused():
    with pytest.raises(TypeError, match="cannot write NoneType"):
        tomlwriter.dumps({"a": None})
