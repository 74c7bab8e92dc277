"""Record's hand-written __init__ (see its comment) against the fields it stands in for."""

import dataclasses
import inspect

from bootsrv.leases.model import Record


def test_record_init_takes_exactly_the_declared_fields_and_defaults():
    params = list(inspect.signature(Record.__init__).parameters.values())[1:]  # without self
    fields = dataclasses.fields(Record)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        assert p.default == (inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default), f.name
