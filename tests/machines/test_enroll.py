"""Enrollment token rules and callback validation as tables. Every refusal leaves the registry as it was."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from machines_builders import ADDRESSES, MAC, NOW, OTHER_MAC, STRANGER, enroll, facts, identify, machine

from bootsrv.errors import Conflict, InvalidInput
from bootsrv.machines import enrollment
from bootsrv.machines.admin import reinstall, retire
from bootsrv.machines.binding import Identity, NotTheMachine
from bootsrv.machines.enrollment import (
    MAX_TOKENS,
    TokenKey,
    TokenRejected,
    TokenReplayed,
    digest,
    install_token,
    parse_request,
    start_install,
)
from bootsrv.machines.model import IllegalTransition, MemoryRegistry, State, boot_action
from bootsrv.machines.store import FileRegistry

TTL = 3600
TOKEN_A = "A" * 43
TOKEN_B = "B" * 43


def body(token=TOKEN_A, mac=MAC, **fact_changes):
    return {"token": token, "mac": mac, "facts": facts(mac, **fact_changes)}


@pytest.fixture(params=["memory", "file"])
def reg(request, tmp_path):
    """Two installing machines with one token each (A for MAC, B for OTHER_MAC)."""
    registry = MemoryRegistry() if request.param == "memory" else FileRegistry(tmp_path)
    registry.put(machine(MAC), None)
    registry.put(machine(OTHER_MAC, hostname="hv2"), None)
    start_install(registry, MAC, NOW, TTL, new_token=lambda: TOKEN_A)
    start_install(registry, OTHER_MAC, NOW, TTL, new_token=lambda: TOKEN_B)
    return registry


def test_valid_callback_enrolls_and_turns_netboot_off(reg):
    enrolled = enroll(reg, body(), NOW + 10)
    assert enrolled.state is State.ENROLLED and boot_action(enrolled.state) == "local"
    assert enrolled.facts.cpus == 16 and enrolled.libvirt_uri == "qemu+ssh://hv1.lab.example/system"
    assert enrolled.enrolled_at == NOW + 10 and all(t.used for t in enrolled.tokens)
    assert reg.get(OTHER_MAC).state is State.INSTALLING  # the other machine is untouched


def _refused(reg, request, now, error, field, words, client=None):
    before = copy.deepcopy(reg.list())
    with pytest.raises(error) as info:
        enroll(reg, request, now, client=client)
    assert reg.list() == before, "a refused callback changed the registry"
    assert info.value.field == field, str(info.value)
    assert words in str(info.value)
    return info.value


# (id, request, seconds after issue, error, field named, words in the reason)
TOKEN_CASES = [
    ("forged-random", body(token="x" * 43), 10, TokenRejected, "token", "unknown token"),
    ("forged-one-char", body(token="A" * 42 + "B"), 10, TokenRejected, "token", "unknown token"),
    ("forged-digest-as-token", body(token=digest(TOKEN_A)[:64]), 10, TokenRejected, "token", "unknown token"),
    ("wrong-mac-other-machine", body(token=TOKEN_A, mac=OTHER_MAC), 10, TokenRejected, "mac", "not issued to machine"),
    ("wrong-mac-unknown", body(token=TOKEN_A, mac="52:54:00:99:99:99"), 10, TokenRejected, "mac", "not issued"),
    ("expired-at-ttl", body(), TTL, TokenRejected, "token", "expired at"),
    ("expired-long-ago", body(), 10 * TTL, TokenRejected, "token", "expired at"),
]


@pytest.mark.parametrize(
    ("case", "request_body", "after", "error", "field", "words"), TOKEN_CASES, ids=[c[0] for c in TOKEN_CASES]
)
def test_token_refusals(reg, case, request_body, after, error, field, words):
    err = _refused(reg, request_body, NOW + after, error, field, words)
    assert 400 <= err.http_status < 500


def test_last_second_before_expiry_is_accepted(reg):
    assert enroll(reg, body(), NOW + TTL - 1).state is State.ENROLLED


def test_replay_is_refused(reg):
    enroll(reg, body(), NOW + 10)
    err = _refused(reg, body(), NOW + 20, TokenReplayed, "token", "already used")
    assert err.http_status == 409


def test_replay_of_a_sibling_token_is_refused(reg):
    # The installer fetched its answer file twice (two tokens); once one enrolls, both are spent.
    start_install(reg, MAC, NOW + 1, TTL, new_token=lambda: "C" * 43)
    enroll(reg, body(token="C" * 43), NOW + 10)
    _refused(reg, body(token=TOKEN_A), NOW + 20, TokenReplayed, "token", "already used")


def test_replay_to_the_peer_server_is_refused(tmp_path):
    a, b = FileRegistry(tmp_path), FileRegistry(tmp_path)
    a.put(machine(), None)
    start_install(a, MAC, NOW, TTL, new_token=lambda: TOKEN_A)
    enroll(a, body(), NOW + 10)
    _refused(b, body(), NOW + 11, TokenReplayed, "token", "already used")


def test_token_of_a_retired_machine_is_refused(reg):
    retire(reg, MAC, NOW + 5)
    err = _refused(reg, body(), NOW + 10, TokenRejected, "token", "unknown token")
    assert err.http_status == 403


def test_token_superseded_by_reinstall(reg):
    reinstall(reg, MAC, NOW + 5)  # installing -> reinstall-requested drops the old tokens
    _refused(reg, body(), NOW + 10, TokenRejected, "token", "unknown token")


def test_enroll_in_wrong_state_is_illegal_transition():
    registry = MemoryRegistry()
    registry.put(machine(), None)
    start_install(registry, MAC, NOW, TTL, new_token=lambda: TOKEN_A)
    # Simulate a state the token should never meet: an admin forced the machine back to "new".
    current = registry.get(MAC)
    import dataclasses

    registry.put(dataclasses.replace(current, state=State.NEW), current.revision)
    before = registry.list()
    with pytest.raises(IllegalTransition, match="cannot enroll a machine in state 'new'"):
        enroll(registry, body(), NOW + 10)
    assert registry.list() == before


# (id, mutate the request, field named, words in the rule)
def _without(key):
    def change(b):
        del b[key]

    return change


def _facts_without(key):
    def change(b):
        del b["facts"][key]

    return change


def _set(path, value):
    def change(b):
        target = b
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return change


MALFORMED = [
    ("not-an-object", lambda b: ["token"], "body", "must be a JSON object"),
    ("no-token", _without("token"), "token", "required field is missing"),
    ("no-mac", _without("mac"), "mac", "required field is missing"),
    ("no-facts", _without("facts"), "facts", "required field is missing"),
    ("unknown-top-field", _set(("admin",), True), "admin", "unknown field"),
    ("token-number", _set(("token",), 12345), "token", "16-128 character token"),
    ("token-short", _set(("token",), "abc"), "token", "16-128 character token"),
    ("token-bad-chars", _set(("token",), "A" * 40 + "/+="), "token", "16-128 character token"),
    ("token-huge", _set(("token",), "A" * 5000), "token", "16-128 character token"),
    ("mac-garbage", _set(("mac",), "not-a-mac"), "mac", "not a MAC"),
    ("facts-list", _set(("facts",), []), "facts", "must be a JSON object"),
    ("facts-no-hostname", _facts_without("hostname"), "facts.hostname", "required field is missing"),
    ("facts-unknown", _set(("facts", "gpu"), 1), "facts.gpu", "unknown field"),
    ("hostname-bad", _set(("facts", "hostname"), "hv_1!"), "facts.hostname", "label"),
    ("cpus-zero", _set(("facts", "cpus"), 0), "facts.cpus", "outside 1..8192"),
    ("cpus-bool", _set(("facts", "cpus"), True), "facts.cpus", "must be an integer"),
    ("cpus-string", _set(("facts", "cpus"), "16"), "facts.cpus", "must be an integer"),
    ("memory-float", _set(("facts", "memory_mib"), 1.5), "facts.memory_mib", "must be an integer"),
    ("memory-tiny", _set(("facts", "memory_mib"), 1), "facts.memory_mib", "outside"),
    ("nics-empty", _set(("facts", "nics"), []), "facts.nics", "has 0 entries"),
    ("nics-object", _set(("facts", "nics"), {}), "facts.nics", "must be a JSON array"),
    ("nic-bad-mac", _set(("facts", "nics", 1, "mac"), "zz"), "facts.nics[1].mac", "not a MAC"),
    ("nic-no-name", lambda b: b["facts"]["nics"][0].pop("name"), "facts.nics[0].name", "required"),
    ("nic-long-name", _set(("facts", "nics", 1, "name"), "x" * 16), "facts.nics[1].name", "interface name"),
    ("nic-dup-name", _set(("facts", "nics", 1, "name"), "fe0"), "facts.nics[1].name", "listed twice"),
    ("nic-dup-mac", _set(("facts", "nics", 1, "mac"), MAC), "facts.nics[1].mac", "listed twice"),
    (
        "nics-without-own-mac",
        _set(("facts", "nics", 0, "mac"), "52:54:00:00:00:09"),
        "facts.nics",
        "no NIC has the machine's MAC",
    ),
    ("disks-empty", _set(("facts", "disks"), []), "facts.disks", "has 0 entries"),
    ("disk-negative", _set(("facts", "disks", 0, "size_bytes"), -1), "facts.disks[0].size_bytes", "outside"),
    ("disk-bad-name", _set(("facts", "disks", 0, "name"), "a b"), "facts.disks[0].name", "disk name"),
    ("hypervisor-unknown", _set(("facts", "hypervisor"), "vmware"), "facts.hypervisor", "not one of"),
    ("uri-garbage", _set(("facts", "libvirt_uri"), "hello"), "facts.libvirt_uri", "not a libvirt URI"),
    ("uri-number", _set(("facts", "libvirt_uri"), 7), "facts.libvirt_uri", "not a libvirt URI"),
    ("uri-wrong-driver", _set(("facts", "libvirt_uri"), "xen:///system"), "facts.libvirt_uri", "does not manage a kvm"),
    (
        "uri-bad-transport",
        _set(("facts", "libvirt_uri"), "qemu+smtp://h/system"),
        "facts.libvirt_uri",
        "unknown transport",
    ),
    ("uri-with-space", _set(("facts", "libvirt_uri"), "qemu+ssh://h/sys tem"), "facts.libvirt_uri", "not a libvirt"),
]


@pytest.mark.parametrize(("case", "mutate", "field", "words"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_callbacks(reg, case, mutate, field, words):
    request = body()
    replaced = mutate(request)
    if isinstance(replaced, list):  # the whole body replaced
        request = replaced
    err = _refused(reg, request, NOW + 10, InvalidInput, field, words)
    assert err.http_status == 400


@pytest.mark.parametrize(
    ("hypervisor", "uri"),
    [
        ("kvm", "qemu+tls://hv1:16514/system"),
        ("kvm", "qemu+ssh://root@HV1.lab.example./system"),  # host names compare case-blind, root dot or not
        ("kvm", "qemu+tcp://192.0.2.10/system"),  # the machine's own address
        ("xen", "xen+ssh://root@hv1.lab.example/system"),
    ],
)
def test_accepted_uris(reg, hypervisor, uri):
    assert enroll(reg, body(hypervisor=hypervisor, libvirt_uri=uri), NOW + 10).libvirt_uri == uri


# --- what the callback claims, against what bootsrv knows of the machine (issue 16) ------------
# (id, fact changes, field named, words in the rule). Guest placement connects to the libvirt
# URI, so it must name the machine itself; the hostname must be the machine's.
CLAIMS = [
    ("uri-other-host", {"libvirt_uri": "qemu+ssh://evil.example/system"}, "facts.libvirt_uri", "is not this machine"),
    ("uri-other-machine", {"libvirt_uri": "qemu+ssh://hv2.lab.example/system"}, "facts.libvirt_uri", "'hv2.lab"),
    ("uri-other-address", {"libvirt_uri": "qemu+ssh://192.0.2.11/system"}, "facts.libvirt_uri", "'192.0.2.11'"),
    (
        "uri-own-name-as-user",  # the host is what follows the last @
        {"libvirt_uri": "qemu+ssh://hv1.lab.example@evil.example/system"},
        "facts.libvirt_uri",
        "'evil.example' is not this machine",
    ),
    ("uri-own-name-as-suffix", {"libvirt_uri": "qemu+ssh://hv1.lab.example.evil/system"}, "facts.libvirt_uri", "not"),
    ("uri-local-kvm", {"libvirt_uri": "qemu:///system"}, "facts.libvirt_uri", "names no host"),
    ("uri-local-xen", {"hypervisor": "xen", "libvirt_uri": "xen:///system"}, "facts.libvirt_uri", "names no host"),
    ("hostname-other-machine", {"hostname": "hv2.lab.example"}, "facts.hostname", "is not this machine's name"),
    ("hostname-other-domain", {"hostname": "hv1.evil.example"}, "facts.hostname", "is not this machine's name"),
    ("hostname-short-other", {"hostname": "hv2"}, "facts.hostname", "(hv1, hv1.lab.example)"),
]


@pytest.mark.parametrize(("case", "changes", "field", "words"), CLAIMS, ids=[c[0] for c in CLAIMS])
def test_claims_are_checked_against_what_bootsrv_knows(reg, case, changes, field, words):
    err = _refused(reg, body(**changes), NOW + 10, InvalidInput, field, words)
    assert err.http_status == 400
    assert reg.get(MAC).state is State.INSTALLING  # the real installer can still enroll
    assert enroll(reg, body(), NOW + 11).state is State.ENROLLED


@pytest.mark.parametrize("hostname", ["hv1", "hv1.lab.example", "HV1.lab.example."])
def test_hostname_short_or_full(reg, hostname):
    assert enroll(reg, body(hostname=hostname), NOW + 10).facts.hostname == hostname.lower().rstrip(".")


def test_hypervisor_must_be_the_profiles(reg):
    before = copy.deepcopy(reg.list())
    xen = body(hypervisor="xen", libvirt_uri="xen+ssh://hv1.lab.example/system")
    with pytest.raises(InvalidInput) as info:
        enrollment.enroll(reg, xen, NOW + 10, client=ADDRESSES[MAC], identify=lambda m: identify(m, "kvm"))
    assert info.value.field == "facts.hypervisor" and "(kvm)" in info.value.rule
    assert reg.list() == before


# --- where the callback comes from (issue 16: enrollment hijack) ------------------------------
# (id, client address, words in the rule). The token is right: only the caller's address is wrong.
ADDRESS_CASES = [
    ("stranger", STRANGER, "this request came from 192.0.2.66"),
    ("other-machines-address", ADDRESSES[OTHER_MAC], "this request came from 192.0.2.11"),
    ("no-address", "", "not IPv4"),
    ("ipv6", "2001:db8::10", "not IPv4"),
    ("garbage", "not-an-address", "not IPv4"),
]


@pytest.mark.parametrize(("case", "client", "words"), ADDRESS_CASES, ids=[c[0] for c in ADDRESS_CASES])
def test_callback_from_another_address_is_refused(reg, case, client, words):
    # Invented facts on top: a URI for another host. The address is refused first, and nothing changes.
    hijack = body(libvirt_uri="qemu+ssh://evil.example/system", cpus=4096)
    err = _refused(reg, hijack, NOW + 10, NotTheMachine, "address", words, client=client)
    assert err.http_status == 403 and "192.0.2.10" not in str(err)  # the machine's address is not told
    assert enroll(reg, body(), NOW + 11).facts.cpus == 16  # the real installer is not locked out


def test_ipv4_mapped_source_is_the_ipv4_address(reg):
    assert enroll(reg, body(), NOW + 10, client="::ffff:192.0.2.10").state is State.ENROLLED


def test_machine_without_a_known_address_cannot_enroll(reg):
    before = copy.deepcopy(reg.list())
    nowhere = lambda m: Identity(m.mac, frozenset({"hv1"}), frozenset(), None)  # noqa: E731
    with pytest.raises(NotTheMachine, match="it has none"):
        enrollment.enroll(reg, body(hostname="hv1"), NOW + 10, client=ADDRESSES[MAC], identify=nowhere)
    assert reg.list() == before


# --- issuing ---------------------------------------------------------------------------------


def test_only_the_digest_is_stored(tmp_path):
    registry = FileRegistry(tmp_path)
    registry.put(machine(), None)
    _, token = start_install(registry, MAC, NOW, TTL)
    assert len(token) >= 43
    text = (tmp_path / "machines.jsonl").read_text()
    assert token not in text and digest(token) in text


def test_tokens_are_unique_and_bounded(registry):
    registry.put(machine(), None)
    tokens = [start_install(registry, MAC, NOW + i, TTL)[1] for i in range(MAX_TOKENS + 3)]
    assert len(set(tokens)) == len(tokens)
    stored = registry.get(MAC)
    assert len(stored.tokens) == MAX_TOKENS
    # the newest ones stay valid, the oldest are forgotten
    assert enroll(registry, body(token=tokens[-MAX_TOKENS]), NOW + 10).state is State.ENROLLED


def test_oldest_token_forgotten(registry):
    registry.put(machine(), None)
    tokens = [start_install(registry, MAC, NOW + i, TTL)[1] for i in range(MAX_TOKENS + 1)]
    before = registry.list()
    with pytest.raises(TokenRejected, match="unknown token"):
        enroll(registry, body(token=tokens[0]), NOW + 10)
    assert registry.list() == before


# --- one token per install (issue 16: token lockout) ------------------------------------------


def test_every_boot_of_one_install_gets_the_same_token_and_writes_nothing(reg_key):
    registry, key = reg_key
    first_machine, first = install_token(registry, MAC, NOW, TTL, key)
    assert first_machine.state is State.INSTALLING and len(first) == 43
    before = registry.get(MAC)
    # A firmware retry, a reboot mid-install, or a flood of spoofed-source TFTP requests for the
    # machine's config: each gets the installer's token back, and nothing is written.
    again = {install_token(registry, MAC, NOW + i, TTL, key)[1] for i in range(1, 3 * MAX_TOKENS)}
    assert again == {first}
    assert registry.get(MAC) == before and [t.digest for t in before.tokens] == [digest(first)]
    assert enroll(registry, body(token=first), NOW + 100).state is State.ENROLLED


def test_the_peer_or_a_restart_issues_its_own_token_and_both_stay_valid(reg_key):
    registry, key = reg_key
    _, ours = install_token(registry, MAC, NOW, TTL, key)
    _, peers = install_token(registry, MAC, NOW + 1, TTL, TokenKey())  # the other server of the pair
    assert peers != ours and len(registry.get(MAC).tokens) == 2
    assert install_token(registry, MAC, NOW + 2, TTL, key)[1] == ours  # each process gives its own again
    assert enroll(registry, body(token=ours), NOW + 10).state is State.ENROLLED


def test_a_new_install_or_an_expired_token_gets_a_new_token(reg_key):
    registry, key = reg_key
    _, first = install_token(registry, MAC, NOW, TTL, key)
    _, later = install_token(registry, MAC, NOW + TTL, TTL, key)  # the first expired: a new one
    assert later != first and [t.digest for t in registry.get(MAC).tokens] == [digest(later)]
    enroll(registry, body(token=later), NOW + TTL + 1)
    reinstall(registry, MAC, NOW + TTL + 2)
    _, fresh = install_token(registry, MAC, NOW + TTL + 3, TTL, key)
    assert fresh not in (first, later)
    with pytest.raises(TokenRejected, match="superseded"):  # the earlier install's token is gone
        enroll(registry, body(token=later), NOW + TTL + 4)
    assert enroll(registry, body(token=fresh), NOW + TTL + 5).state is State.ENROLLED


def test_the_key_is_in_memory_only(tmp_path):
    registry = FileRegistry(tmp_path)
    registry.put(machine(), None)
    key = TokenKey()
    _, token = install_token(registry, MAC, NOW, TTL, key)
    text = (tmp_path / "machines.jsonl").read_text()
    assert token not in text and digest(token) in text
    # Another process (a fresh key) cannot rebuild it from the store: it issues its own.
    assert install_token(FileRegistry(tmp_path), MAC, NOW + 1, TTL, TokenKey())[1] != token


@pytest.fixture
def reg_key(registry):
    registry.put(machine(), None)
    return registry, TokenKey()


@pytest.mark.parametrize("state", [State.ENROLLED, State.RETIRED, State.DISCOVERED])
def test_no_token_for_a_machine_not_due_for_install(registry, state):
    registry.put(machine(state=state), None)
    before = registry.list()
    with pytest.raises(IllegalTransition):
        start_install(registry, MAC, NOW, TTL)
    assert registry.list() == before


def test_reinstall_cycle_issues_a_fresh_token(registry):
    registry.put(machine(), None)
    _, first = start_install(registry, MAC, NOW, TTL)
    enroll(registry, body(token=first), NOW + 10)
    reinstall(registry, MAC, NOW + 20)
    assert boot_action(registry.get(MAC).state) == "install"
    _, second = start_install(registry, MAC, NOW + 30, TTL)
    with pytest.raises(TokenRejected):
        enroll(registry, body(token=first), NOW + 40)
    assert enroll(registry, body(token=second), NOW + 40).enrolled_at == NOW + 40


def test_concurrent_enrollments_one_wins(tmp_path):
    import threading

    FileRegistry(tmp_path).put(machine(), None)
    start_install(FileRegistry(tmp_path), MAC, NOW, TTL, new_token=lambda: TOKEN_A)
    results: list[object] = []

    def attempt():
        try:
            results.append(enroll(FileRegistry(tmp_path), body(), NOW + 10))
        except Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sum(1 for r in results if not isinstance(r, Exception)) == 1
    assert all(isinstance(r, TokenReplayed) for r in results if isinstance(r, Exception))
    assert FileRegistry(tmp_path).get(MAC).revision == 3


def test_expired_tokens_are_forgotten_at_the_next_issue(registry):
    registry.put(machine(), None)
    _, old = start_install(registry, MAC, NOW, TTL)
    _, new = start_install(registry, MAC, NOW + TTL + 1, TTL)
    assert len(registry.get(MAC).tokens) == 1
    with pytest.raises(TokenRejected, match="unknown token"):
        enroll(registry, body(token=old), NOW + TTL + 2)
    assert enroll(registry, body(token=new), NOW + TTL + 2).state is State.ENROLLED


# --- fuzz: any JSON value is either a request or an InvalidInput naming a field ---------------


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


def _mutations():
    keys = st.sampled_from(
        [
            "token",
            "mac",
            "facts",
            "hostname",
            "cpus",
            "memory_mib",
            "nics",
            "disks",
            "hypervisor",
            "libvirt_uri",
            "name",
            "size_bytes",
        ]
    )
    return st.lists(st.tuples(keys, JSON), max_size=3)


def _apply(data, mutations):
    facts_, nic, disk = data["facts"], data["facts"]["nics"][0], data["facts"]["disks"][0]
    for key, value in mutations:
        for target in (data, facts_, nic, disk):
            if key in target:
                target[key] = value
                break
    return data


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, _mutations().map(lambda m: _apply(body(), m))))
def test_any_json_is_a_request_or_a_named_refusal(value):
    try:
        parse_request(value)
    except InvalidInput as exc:
        assert exc.field and exc.rule
