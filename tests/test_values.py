"""Input normalization: each bad value names its field and the rule."""

from __future__ import annotations

import uuid

import pytest

from bootsrv.errors import InvalidInput
from bootsrv.values import arch_name, normalize_guid, normalize_hostname, normalize_mac


@pytest.mark.parametrize(
    ("text", "mac"),
    [
        ("52:54:00:12:34:56", "52:54:00:12:34:56"),
        ("52:54:00:AB:CD:EF", "52:54:00:ab:cd:ef"),
        ("52-54-00-ab-cd-ef", "52:54:00:ab:cd:ef"),
        ("5254.00ab.cdef", "52:54:00:ab:cd:ef"),
        ("525400abcdef", "52:54:00:ab:cd:ef"),
        (" 52:54:00:ab:cd:ef\n", "52:54:00:ab:cd:ef"),
        (bytes.fromhex("525400abcdef"), "52:54:00:ab:cd:ef"),
    ],
)
def test_mac_spellings(text, mac):
    assert normalize_mac(text) == mac


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("52:54:00:12:34", "not a MAC"),
        ("52:54:00:12:34:5g", "not a MAC"),
        ("52:54-00:12:34:56", "not a MAC"),  # mixed separators
        ("", "not a MAC"),
        ("01:00:5e:00:00:01", "multicast"),
        (None, "must be a MAC address string"),
        (525400123456, "must be a MAC address string"),
        (b"\x52\x54\x00", "has 3 octets, expected 6"),
    ],
)
def test_bad_macs(value, rule):
    with pytest.raises(InvalidInput) as info:
        normalize_mac(value, "nics[0].mac")
    assert info.value.field == "nics[0].mac" and rule in info.value.rule


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", "non-empty"),
        ("-hv", "label"),
        ("hv_1", "label"),
        ("a" * 64, "label"),
        ("a." * 130, "253"),
        (3, "non-empty"),
    ],
)
def test_bad_hostnames(value, rule):
    with pytest.raises(InvalidInput) as info:
        normalize_hostname(value)
    assert info.value.field == "hostname" and rule in info.value.rule


def test_hostname_lowercased_and_trailing_dot_dropped():
    assert normalize_hostname("HV1.Lab.Example.") == "hv1.lab.example"


def test_guid_from_option_97_bytes_is_smbios_little_endian():
    guid = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
    assert normalize_guid(b"\x00" + guid.bytes_le) == str(guid)
    with pytest.raises(InvalidInput, match="length 5, expected 17"):
        normalize_guid(b"\x00abcd")
    with pytest.raises(InvalidInput, match="not a UUID"):
        normalize_guid("nope")


@pytest.mark.parametrize(
    ("value", "name"), [(0, "bios"), (7, "efi-x64"), (9, "efi-bc"), (42, "arch-42"), ("bios", "bios")]
)
def test_arch_names(value, name):
    assert arch_name(value) == name


@pytest.mark.parametrize("value", [-1, 70000, "sparc", True, 1.5])
def test_bad_arch(value):
    with pytest.raises(InvalidInput, match="^arch: "):
        arch_name(value)
