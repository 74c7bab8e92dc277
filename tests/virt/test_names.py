import pytest

from bootsrv.errors import InvalidInput
from bootsrv.virt.names import GuestRef, VersionRef


@pytest.mark.parametrize(
    "text,image,version",
    [
        ("masters/osol-0811@version-01", "osol-0811", "version-01"),
        ("osol-0811@version-01", "osol-0811", "version-01"),
        ("deb12@2024.06", "deb12", "2024.06"),
    ],
    ids=["full", "no-prefix", "dotted"],
)
def test_version_ref(text, image, version):
    ref = VersionRef.parse(text)
    assert (ref.image, ref.version) == (image, version)
    assert str(ref) == f"masters/{image}@{version}"


@pytest.mark.parametrize(
    "text,field",
    [
        ("masters/osol-0811", "version"),
        ("masters/osol@v1@v2", "version"),
        ("appl-1/osol@v1", "version"),
        ("masters/@v1", "version.image"),
        ("masters/osol@", "version.version"),
        ("masters/Osol@v1", "version.image"),
        ("masters/osol@../x", "version.version"),
    ],
    ids=["no-version", "two-at", "not-masters", "empty-image", "empty-version", "uppercase", "traversal"],
)
def test_version_ref_malformed(text, field):
    with pytest.raises(InvalidInput) as err:
        VersionRef.parse(text)
    assert err.value.field == field


@pytest.mark.parametrize("text", ["appl-1/vm-1", "appl-1:vm-1"], ids=["disk", "domain"])
def test_guest_ref(text):
    ref = GuestRef.parse(text)
    assert (ref.project, ref.vm, ref.domain, ref.disk) == ("appl-1", "vm-1", "appl-1:vm-1", "appl-1/vm-1")


@pytest.mark.parametrize(
    "text,field",
    [
        ("vm-1", "guest"),
        ("a/b/c", "guest"),
        ("a/b:c", "guest"),
        ("masters/vm-1", "guest.project"),
        ("appl-1/", "guest.vm"),
        ("appl 1/vm", "guest.project"),
    ],
    ids=["bare", "two-slashes", "mixed", "masters", "empty-vm", "space"],
)
def test_guest_ref_malformed(text, field):
    with pytest.raises(InvalidInput) as err:
        GuestRef.parse(text)
    assert err.value.field == field
