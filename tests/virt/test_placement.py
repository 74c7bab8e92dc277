import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootsrv.virt.placement import HostLoad, HypervisorInfo, NoRoom, place, require


def hv(name, segment="odd", memory=16384, state="active"):
    return HypervisorInfo(name, segment, f"test:///{name}", 8, memory, state)


CASES = [
    # (id, loads, per_host, memory, expected)
    (
        "fill-fullest-first",
        [HostLoad(hv("a"), 2, 2048), HostLoad(hv("b"), 3, 3072), HostLoad(hv("c"), 0)],
        5,
        1024,
        "b",
    ),
    ("full-host-skipped", [HostLoad(hv("a"), 2, 2048), HostLoad(hv("b"), 5, 5120)], 5, 1024, "a"),
    ("per-host-4", [HostLoad(hv("a"), 4, 4096), HostLoad(hv("b"), 1, 1024)], 4, 1024, "b"),
    ("memory-before-count", [HostLoad(hv("a", memory=4096), 3, 3000), HostLoad(hv("b"), 1, 1024)], 5, 1024, "b"),
    (
        "tie-tightest-memory",
        [HostLoad(hv("a", memory=32768), 2, 2048), HostLoad(hv("b", memory=8192), 2, 2048)],
        5,
        1024,
        "b",
    ),
    ("tie-by-name", [HostLoad(hv("b"), 0), HostLoad(hv("a"), 0)], 5, 1024, "a"),
    ("other-segment", [HostLoad(hv("a", segment="even"), 0), HostLoad(hv("b"), 4, 4096)], 5, 1024, "b"),
    ("drained", [HostLoad(hv("a", state="drained"), 1), HostLoad(hv("b"), 0)], 5, 1024, "b"),
    ("unreachable", [HostLoad(hv("a"), error="connection refused"), HostLoad(hv("b"), 0)], 5, 1024, "b"),
    ("no-room", [HostLoad(hv("a"), 5, 5120), HostLoad(hv("b", segment="even"), 0)], 5, 1024, None),
    ("empty-pool", [], 5, 1024, None),
]


@pytest.mark.parametrize("loads,per_host,memory,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_place(loads, per_host, memory, expected):
    result = place("odd", memory, loads, per_host, reserve_mib=1024)
    assert (result.chosen.name if result.chosen else None) == expected
    # Every hypervisor gets exactly one line of reason, and only the chosen one says so.
    assert sorted(c.host for c in result.candidates) == sorted(load.host.name for load in loads)
    assert sum("chosen" in c.reason for c in result.candidates) == (1 if expected else 0)


def test_reasons_name_the_rule():
    loads = [
        HostLoad(hv("a", segment="even")),
        HostLoad(hv("b", state="drained")),
        HostLoad(hv("c"), 5),
        HostLoad(hv("d", memory=2048), 0),
        HostLoad(hv("e"), error="boom"),
    ]
    result = place("odd", 2048, loads, 5, reserve_mib=1024)
    reasons = {c.host: c.reason for c in result.candidates}
    assert "segment 'even'" in reasons["a"]
    assert "drained" in reasons["b"]
    assert "full: 5 of 5" in reasons["c"]
    assert "1024 MiB free" in reasons["d"] and "needs 2048" in reasons["d"]
    assert "unreachable: boom" in reasons["e"]
    with pytest.raises(NoRoom) as err:
        require("odd", result)
    assert "segment: no hypervisor of segment 'odd'" in str(err.value) and "full: 5 of 5" in str(err.value)


def test_fills_one_host_before_the_next():
    """Placing 12 guests one after the other on 3 empty hosts fills them 5, 5, 2 in name order."""
    hosts = [hv("a"), hv("b"), hv("c")]
    count = {h.name: 0 for h in hosts}
    order = []
    for _ in range(12):
        chosen = require(
            "odd", place("odd", 1024, [HostLoad(h, count[h.name], 1024 * count[h.name]) for h in hosts], 5, 1024)
        )
        count[chosen.name] += 1
        order.append(chosen.name)
    assert order == ["a"] * 5 + ["b"] * 5 + ["c"] * 2


_load = st.builds(
    lambda name, seg, state, mem, guests, used, err: HostLoad(hv(name, seg, mem, state), guests, used, err),
    st.sampled_from("abcdefgh"),
    st.sampled_from(["odd", "even"]),
    st.sampled_from(["active", "drained"]),
    st.integers(1024, 65536),
    st.integers(0, 8),
    st.integers(0, 65536),
    st.sampled_from(["", "", "", "down"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_load, max_size=8, unique_by=lambda load: load.host.name), st.integers(32, 16384), st.integers(1, 6))
def test_choice_obeys_every_rule(loads, memory, per_host):
    result = place("odd", memory, loads, per_host, reserve_mib=1024)

    def fits(load):
        free = load.host.memory_mib - 1024 - load.memory_used_mib
        return (
            load.host.segment == "odd"
            and load.host.accepts_guests
            and not load.error
            and load.guests < per_host
            and free >= memory
        )

    eligible = [load for load in loads if fits(load)]
    assert (result.chosen is None) == (not eligible)
    if result.chosen is not None:
        chosen = next(load for load in loads if load.host.name == result.chosen.name)
        assert fits(chosen)
        assert chosen.guests == max(load.guests for load in eligible)  # fill before the next
    assert {c.host for c in result.candidates if c.eligible} == {load.host.name for load in eligible}
