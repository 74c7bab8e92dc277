"""The machine state machine as a table: every (state, event) pair, legal or not."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootsrv.errors import Conflict, InvalidInput
from bootsrv.machines.model import (
    INSTALL_STATES,
    TRANSITIONS,
    Event,
    IllegalTransition,
    Machine,
    State,
    boot_action,
    next_state,
)

S, E = State, Event

# The expected life cycle, written out independently of TRANSITIONS.
LEGAL = {
    (S.DISCOVERED, E.ADOPT): S.NEW,
    (S.NEW, E.INSTALL): S.INSTALLING,
    (S.INSTALLING, E.INSTALL): S.INSTALLING,
    (S.REINSTALL_REQUESTED, E.INSTALL): S.INSTALLING,
    (S.INSTALLING, E.ENROLL): S.ENROLLED,
    (S.ENROLLED, E.REINSTALL): S.REINSTALL_REQUESTED,
    (S.INSTALLING, E.REINSTALL): S.REINSTALL_REQUESTED,
    (S.RETIRED, E.REINSTALL): S.REINSTALL_REQUESTED,
    (S.DISCOVERED, E.RETIRE): S.RETIRED,
    (S.NEW, E.RETIRE): S.RETIRED,
    (S.INSTALLING, E.RETIRE): S.RETIRED,
    (S.ENROLLED, E.RETIRE): S.RETIRED,
    (S.REINSTALL_REQUESTED, E.RETIRE): S.RETIRED,
}
ALL_PAIRS = list(itertools.product(State, Event))


def test_table_is_the_documented_life_cycle():
    assert TRANSITIONS == LEGAL


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=[f"{s.value}-{e.value}" for s, e in ALL_PAIRS])
def test_every_pair(state, event):
    if (state, event) in LEGAL:
        assert next_state("52:54:00:12:34:56", state, event) is LEGAL[(state, event)]
    else:
        with pytest.raises(IllegalTransition) as info:
            next_state("52:54:00:12:34:56", state, event)
        message = str(info.value)
        assert f"cannot {event.value}" in message and repr(state.value) in message
        assert "52:54:00:12:34:56" in message
        assert isinstance(info.value, Conflict) and info.value.http_status == 409


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (S.NEW, "install"),
        (S.INSTALLING, "install"),
        (S.REINSTALL_REQUESTED, "install"),
        (S.ENROLLED, "local"),
        (S.RETIRED, "local"),
        (S.DISCOVERED, "local"),
    ],
    ids=lambda v: getattr(v, "value", v),
)
def test_netboot_once(state, action):
    assert boot_action(state) == action


def test_enrolled_machine_cannot_reach_install_without_an_admin():
    # No event a machine can cause by itself (install, enroll) leads from enrolled to an install state.
    for event in (E.INSTALL, E.ENROLL):
        assert (S.ENROLLED, event) not in TRANSITIONS
    assert {LEGAL[k] for k in LEGAL if k[0] is S.ENROLLED} <= {S.REINSTALL_REQUESTED, S.RETIRED}


def test_with_event_is_pure():
    machine = Machine(mac="52:54:00:12:34:56", hostname="hv1", state=S.NEW, profile="p")
    after = machine.with_event(E.INSTALL, 5.0)
    assert machine.state is S.NEW and after.state is S.INSTALLING and after.updated == 5.0


def test_install_states_need_a_profile():
    with pytest.raises(InvalidInput, match="^profile: "):
        Machine(mac="52:54:00:12:34:56", hostname="hv1", state=S.NEW)
    assert INSTALL_STATES == {S.NEW, S.INSTALLING, S.REINSTALL_REQUESTED}


def test_machine_wants_normalized_mac():
    with pytest.raises(InvalidInput, match="^mac: "):
        Machine(mac="52-54-00-12-34-56", hostname="hv1", state=S.DISCOVERED)


def test_netboot_reads_the_registry_without_writing():
    from bootsrv.machines.model import MemoryRegistry, netboot

    registry = MemoryRegistry([Machine(mac="52:54:00:12:34:56", hostname="hv1", state=S.INSTALLING, profile="p")])
    before = registry.list()
    assert netboot(registry, "52:54:00:12:34:56") == "install"
    assert netboot(registry, "52:54:00:99:99:99") is None
    assert registry.list() == before


# --- properties over random event sequences --------------------------------------------------


MACHINE_EVENTS = (E.INSTALL, E.ENROLL)  # what a machine can cause by itself
ADMIN_EVENTS = (E.ADOPT, E.REINSTALL, E.RETIRE)


@given(start=st.sampled_from(list(State)), events=st.lists(st.sampled_from(list(Event)), max_size=30))
def test_netboot_once_holds_for_any_sequence(start, events):
    """Once enrolled, a machine boots locally until an admin event; illegal events change nothing."""
    state = start
    local_until_admin = state is S.ENROLLED
    for event in events:
        try:
            after = next_state("52:54:00:12:34:56", state, event)
        except IllegalTransition:
            continue  # refused: the state stays
        if event in ADMIN_EVENTS:
            local_until_admin = False
        state = after
        if state is S.ENROLLED:
            local_until_admin = True
        if local_until_admin:
            assert boot_action(state) == "local", (start, events)


@given(st.binary(min_size=6, max_size=6), st.sampled_from([":", "-", "", "."]), st.booleans())
def test_mac_spellings_normalize_to_one_form(raw, sep, upper):
    from bootsrv.values import normalize_mac

    raw = bytes([raw[0] & 0xFE]) + raw[1:]  # unicast
    hexes = raw.hex()
    if sep == ".":
        text = ".".join(hexes[i : i + 4] for i in range(0, 12, 4))
    else:
        text = sep.join(hexes[i : i + 2] for i in range(0, 12, 2))
    text = text.upper() if upper else text
    assert normalize_mac(text) == ":".join(hexes[i : i + 2] for i in range(0, 12, 2))
