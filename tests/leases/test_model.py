"""Record's hand-written __init__ (see its comment) against the fields it stands in for; the
flags' names as `leases show` and the tables print them."""

import dataclasses
import inspect

import pytest

from bootsrv.leases.model import Flag, Record


def test_record_init_takes_exactly_the_declared_fields_and_defaults():
    params = list(inspect.signature(Record.__init__).parameters.values())[1:]  # without self
    fields = dataclasses.fields(Record)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        assert p.default == (inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default), f.name


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (Flag.DYNAMIC, "DYNAMIC"),
        (Flag.PERMANENT, "PERMANENT"),
        (Flag.PERMANENT | Flag.MANUAL, "PERMANENT+MANUAL"),
        (Flag.BOOTP | Flag.UNUSABLE, "UNUSABLE+BOOTP"),  # definition order, not the order given
        (Flag(0x0F), "PERMANENT+MANUAL+UNUSABLE+BOOTP"),
        (Flag(0x11), "PERMANENT"),  # a bit dhcp_network(4) does not define has no name to print
    ],
    ids=["dynamic", "one", "two", "order", "all", "unknown-bit"],
)
def test_flag_names(flags, names):
    assert flags.names() == names
