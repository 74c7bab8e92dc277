"""The profile catalog: profiles/*.toml (one install profile each) plus profiles/site.toml.

site.toml holds what every profile of the site shares (mirrors, time zone, root keys, the NIC
names fe0/be0 and their networks, the libvirt URI form); a profile may override any of it in its
own `[site]` table, merged table by table. Every file is validated when the catalog loads, and
any rule it breaks is a ProfileError naming the file and the dotted key ("profiles/x.toml:
boot.kernel: ..."), so a typo stops `bootsrv serve` and `bootsrv profile list` with one clear line
instead of surfacing as a broken install hours later. Unknown keys are errors, as in the config.

A profile's templates must exist when it loads; their Jinja syntax is checked by render.py.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bootsrv.errors import ConfigError, NotFound

SITE_FILE = "site.toml"
# Profile names follow bootsrv.machines.normalize_profile (what `machine add --profile` accepts).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RELATIVE = re.compile(r"^[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*$")
_URL = re.compile(r"^https?://[^\s'\"\\]+$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ProfileError(ConfigError):
    """A profile or site file breaks a rule: `source` is the file, `key` the dotted key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _path_or_url(value: str) -> str:
    """A path under `boot.files_root` (served at /files/) or an absolute http(s) URL."""
    if _URL.match(value):
        return value
    if not _RELATIVE.match(value) or ".." in value.split("/"):
        raise ValueError(f"{value!r} must be a path relative to boot.files_root (no '..') or an http(s) URL")
    return value


def _template_name(value: str) -> str:
    if not _RELATIVE.match(value) or ".." in value.split("/"):
        raise ValueError(f"{value!r} must be a path relative to the templates directory")
    return value


class Mirrors(_Strict):
    debian: str = Field(pattern=_URL.pattern)
    debian_security: str = Field(pattern=_URL.pattern)
    alma: str = Field(pattern=_URL.pattern)
    proxy: str = Field(default="", pattern=r"^(https?://[^\s'\"\\]+)?$")


class SiteNic(_Strict):
    """One NIC every hypervisor has, under the same name everywhere (live migration needs it)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9]{0,12}$")  # IFNAMSIZ 16 with the NUL, room for the "br" of its bridge
    role: str = Field(min_length=1, max_length=32)  # "Public", "Backend": the link's Alias
    network: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")  # the bootsrv network it is on


class Site(_Strict):
    domain: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
    timezone: str = Field(pattern=r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$")
    locale: str = Field(default="en_US.UTF-8", pattern=r"^[a-z]{2,3}_[A-Z]{2}\.UTF-8$")
    keymap: str = Field(default="us", pattern=r"^[a-z]{2,8}$")
    ntp: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+$")]] = Field(default_factory=list)
    root_keys: list[
        Annotated[str, Field(pattern=r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( [^\n'\"\\]*)?$")]
    ] = Field(min_length=1)
    mirrors: Mirrors
    # The first NIC is the one the machine PXE-boots from (its MAC is the machine's MAC).
    nics: list[SiteNic] = Field(min_length=1, max_length=8)
    # How bootsrv.virt reaches each hypervisor's libvirtd: the ssh transport (libvirtd listens
    # on no TCP port; root's key from root_keys). {driver} is qemu or xen, {fqdn} the host name.
    libvirt_uri: str = Field(default="{driver}+ssh://root@{fqdn}/system", pattern=r"^\{driver\}\+ssh://.*\{fqdn\}.*$")

    @field_validator("nics")
    @classmethod
    def _unique(cls, nics: list[SiteNic]) -> list[SiteNic]:
        for i, nic in enumerate(nics):
            if any(n.name == nic.name for n in nics[:i]):
                raise ValueError(f"[{i}].name: {nic.name!r} is listed twice")
        return nics


class Boot(_Strict):
    kernel: str
    initrd: str
    # Extra kernel arguments. Each is a Jinja expression template rendered with the plan's
    # context (e.g. "hostname={{ machine.short }}"), so they may use site and machine values.
    args: list[Annotated[str, Field(min_length=1, max_length=512)]] = Field(default_factory=list)
    # The kernel argument that carries the answer URL: d-i "url", Anaconda "inst.ks",
    # the lab initramfs "bootsrv.answer".
    answer_arg: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9._/-]{0,63}$")

    @field_validator("kernel", "initrd")
    @classmethod
    def _location(cls, value: str) -> str:
        return _path_or_url(value)


class Answer(_Strict):
    file: str = Field(pattern=_FILE.pattern)  # served at /profiles/<mac>/<file>
    template: str
    # More files served the same way (same token), e.g. the script a preseed's late_command
    # fetches: file name -> template.
    extras: dict[Annotated[str, Field(pattern=_FILE.pattern)], str] = Field(default_factory=dict)

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        return _template_name(value)

    @field_validator("extras")
    @classmethod
    def _extras(cls, extras: dict[str, str]) -> dict[str, str]:
        for name, template in extras.items():
            try:
                _template_name(template)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return extras


class ProfileData(_Strict):
    description: str = Field(min_length=1, max_length=200)
    os: Literal["debian12", "alma9", "lab"]
    hypervisor: Literal["xen", "kvm"]  # what the installed machine reports (bootsrv.machines.enrollment)
    boot: Boot
    answer: Answer
    # Free-form values for this profile's templates (`settings.<key>`).
    settings: dict[str, Any] = Field(default_factory=dict)
    site: dict[str, Any] = Field(default_factory=dict)  # overrides of site.toml, merged


@dataclass(frozen=True)
class Profile:
    name: str
    source: str  # the file it came from, for error messages
    description: str
    os: str
    hypervisor: str
    boot: Boot
    answer: Answer
    settings: dict[str, Any]
    site: Site

    @property
    def answer_files(self) -> dict[str, str]:
        """Every file served at /profiles/<mac>/<file>: name -> template."""
        return {self.answer.file: self.answer.template, **self.answer.extras}


def _templates(data: ProfileData) -> dict[str, str]:
    """Key of the profile file -> the template it names."""
    out = {"answer.template": data.answer.template}
    out.update({f"answer.extras.{name}": template for name, template in data.answer.extras.items()})
    return out


# ---------------------------------------------------------------------------------------------
# Loading


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(str(path), "", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(str(path), "", f"not UTF-8: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(str(path), "", f"not valid TOML: {exc}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _validate(model: type[BaseModel], data: dict[str, Any], source: str, prefix: str = ""):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = prefix
        for part in err["loc"]:
            if isinstance(part, int):
                key += f"[{part}]"
            elif not str(part).startswith(("function-", "constrained-")):
                key += ("." if key else "") + str(part)
        kind, msg = err["type"], err["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            rule = "unknown key"
        elif kind == "missing":
            rule = "required key is missing"
        else:
            sub = re.match(r"^(\[\d+\]\.\w+): (.*)$", msg, re.S)
            if sub:  # a list validator naming its element ("[1].name: ...")
                key, msg = key + sub[1], sub[2]
            shown = err.get("input")
            rule = msg if isinstance(shown, (dict, list)) or shown is None else f"{msg} (got {shown!r})"
        raise ProfileError(source, key, rule) from None


def load_site(profiles_dir: Path) -> dict[str, Any]:
    """site.toml's `[site]` table as data (validated per profile, after its overrides)."""
    path = profiles_dir / SITE_FILE
    if not path.exists():
        raise ProfileError(str(path), "", "missing: the site settings every profile shares live here")
    data = _read(path)
    for key in data:
        if key != "site":
            raise ProfileError(str(path), key, "unknown key (site.toml holds one [site] table)")
    if not isinstance(data.get("site"), dict):
        raise ProfileError(str(path), "site", "required table is missing")
    return data["site"]


def load_profile(path: Path, site: dict[str, Any], templates_dir: Path) -> Profile:
    source = str(path)
    name = path.stem
    if not _NAME.match(name):
        raise ProfileError(source, "", f"{name!r} is not a profile name (letters, digits, '.', '_', '-'; max 64)")
    data = _validate(ProfileData, _read(path), source)
    site_model = _validate(Site, _merge(site, data.site), source, "site")
    if data.answer.file in data.answer.extras:
        raise ProfileError(source, f"answer.extras.{data.answer.file}", "is the answer file itself")
    for key, template in _templates(data).items():
        if not (templates_dir / template).is_file():
            raise ProfileError(source, key, f"no template {template!r} in {templates_dir}")
    return Profile(
        name=name,
        source=source,
        description=data.description,
        os=data.os,
        hypervisor=data.hypervisor,
        boot=data.boot,
        answer=data.answer,
        settings=data.settings,
        site=site_model,
    )


class Catalog:
    """The site's profiles by name (read-only once loaded)."""

    def __init__(self, profiles: dict[str, Profile], templates_dir: Path):
        self._profiles = dict(sorted(profiles.items()))
        self.templates_dir = templates_dir

    def names(self) -> list[str]:
        return list(self._profiles)

    def __contains__(self, name: object) -> bool:
        return name in self._profiles

    def __iter__(self) -> Iterator[Profile]:
        return iter(self._profiles.values())

    def __len__(self) -> int:
        return len(self._profiles)

    def get(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            raise NotFound(f"profile: no profile {name!r} (known: {', '.join(self._profiles) or 'none'})") from None


def load(profiles_dir: Path, templates_dir: Path) -> Catalog:
    """Every profile of `profiles_dir`, validated; the first broken file raises ProfileError."""
    profiles_dir, templates_dir = Path(profiles_dir), Path(templates_dir)
    if not profiles_dir.is_dir():
        raise ProfileError(str(profiles_dir), "", "not a directory (config profiles.profiles_dir)")
    if not templates_dir.is_dir():
        raise ProfileError(str(templates_dir), "", "not a directory (config profiles.templates_dir)")
    site = load_site(profiles_dir)
    profiles = {}
    for path in sorted(profiles_dir.glob("*.toml")):
        if path.name != SITE_FILE:
            profiles[path.stem] = load_profile(path, site, templates_dir)
    return Catalog(profiles, templates_dir)
