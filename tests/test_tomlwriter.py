"""bootsrv.tomlwriter: whatever it writes, tomllib reads back as the same data."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootsrv import config, tomlwriter

# (id, data): the shapes `bootsrv config show` writes, each alone.
DOCUMENTS = [
    ("scalars", {"name": "bootsrv", "port": 69, "enabled": True, "off": False, "ratio": 0.5}),
    ("string escapes", {"s": 'quote " backslash \\ newline \n tab \t done', "u": "Zürich ☃"}),
    ("scalar arrays", {"owner_ips": ["10.0.0.1", "10.0.0.2"], "empty": [], "mixed": [1, "a", True]}),
    ("table", {"server": {"name": "b", "owner_ips": ["192.0.2.1"], "rescan_interval": 60}}),
    (
        "array of tables with nested arrays",
        {
            "networks": [
                {
                    "name": "pub",
                    "subnet": "10.0.0.0/24",
                    "ranges": [{"start": "10.0.0.10", "end": "10.0.0.20"}, {"start": "10.0.0.30", "end": "10.0.0.40"}],
                },
                {"name": "backend", "subnet": "10.1.0.0/24", "ranges": []},
            ]
        },
    ),
    ("inline table of options", {"networks": [{"name": "pub", "options": {"42": ["10.0.0.1"], "66": "tftp"}}]}),
    ("tables of tables", {"dhcp": {"port": 67, "classes": {"PXEClient": {"66": "a"}, "HTTPClient": {"60": "b"}}}}),
    ("empty tables", {"a": {}, "b": {"c": {}}, "d": {"e": {"f": {}}}}),
    ("keys that need quotes", {"a.b": 1, "with space": 2, "": 3, "PXEClient:Arch:00007": {"x": 1}}),
    ("non-ASCII keys", {"Zürich": 1, "\u00b9": {"x": 1}}),
    ("control characters", {"43": "\x01\x02vendor\r\x7f", "key\x08": "\x00"}),
    ("mixed array at the top", {"a": [False, {}], "t": {"b": [1, {"c": 2}]}}),
    (
        "deep paths",
        {
            "guests": {
                "segments": {"odd": {"fe0": "public", "be0": "backend"}},
                "hypervisors": [{"name": "hv1", "memory_mib": 4096}],
            }
        },
    ),
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


# Any document of the value types TOML has (no datetimes: Config dumps none; no NaN, which is
# not equal to itself), with any keys and strings: what config show writes must read back,
# whatever a site put in its DHCP options or class names (an option 43 vendor string can carry
# control characters). It found the three cases at the end of DOCUMENTS.
_scalars = st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text()
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _values, max_size=6))
def test_any_document_round_trips(data):
    assert tomllib.loads(tomlwriter.dumps(data)) == data
