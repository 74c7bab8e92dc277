"""The names of the guest workflow, parsed and checked in one place (pure).

    appl-1                          a project (one storage pool on the shared storage)
    masters/osol-0811@version-01    a frozen version of a master image (project "masters")
    appl-1/vm-1                     a guest's disk (a clone) in a project
    appl-1:vm-1                     the guest's libvirt domain name (as `virsh start` took it)

Names become file names on the shared storage and libvirt object names, so they are strict:
lowercase letters, digits, '-', '_' and '.', starting with a letter or digit, no "..".
Every failure is `InvalidInput(field, rule)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bootsrv.errors import InvalidInput

MASTERS = "masters"  # the project holding master images and their frozen versions
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def check_name(value: str, field: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or ".." in value:
        raise InvalidInput(
            field,
            f"{value!r} must be 1-63 of a-z 0-9 . _ - starting with a letter or digit (no '..', no '@', '/', ':')",
        )
    return value


@dataclass(frozen=True)
class VersionRef:
    """`masters/<image>@<version>` (the `masters/` prefix may be omitted)."""

    image: str
    version: str

    @property
    def volume(self) -> str:
        return f"{self.image}@{self.version}"

    def __str__(self) -> str:
        return f"{MASTERS}/{self.volume}"

    @classmethod
    def parse(cls, text: str, field: str = "version") -> VersionRef:
        body = text
        if "/" in text:
            project, _, body = text.partition("/")
            if project != MASTERS:
                raise InvalidInput(field, f"{text!r}: versions live in project {MASTERS!r}, not {project!r}")
        if body.count("@") != 1:
            raise InvalidInput(field, f"{text!r} is not <image>@<version> (e.g. masters/osol-0811@version-01)")
        image, version = body.split("@")
        check_name(image, f"{field}.image")
        check_name(version, f"{field}.version")
        return cls(image, version)


@dataclass(frozen=True)
class GuestRef:
    """A guest: `project/vm` (its disk, domu-clone syntax) or `project:vm` (its domain)."""

    project: str
    vm: str

    @property
    def domain(self) -> str:
        return f"{self.project}:{self.vm}"

    @property
    def disk(self) -> str:
        return f"{self.project}/{self.vm}"

    def __str__(self) -> str:
        return self.domain

    @classmethod
    def parse(cls, text: str, field: str = "guest") -> GuestRef:
        seps = [s for s in "/:" if s in text]
        if len(seps) != 1 or text.count(seps[0]) != 1:
            raise InvalidInput(field, f"{text!r} is not <project>/<vm> or <project>:<vm> (e.g. appl-1/vm-1)")
        project, vm = text.split(seps[0])
        check_name(project, f"{field}.project")
        check_name(vm, f"{field}.vm")
        if project == MASTERS:
            raise InvalidInput(f"{field}.project", f"{MASTERS!r} holds master images, not guests")
        return cls(project, vm)
