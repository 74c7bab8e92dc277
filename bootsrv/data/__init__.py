"""Where the shipped profiles and templates are: the one resolver of bootsrv's packaged data.

The checkout keeps them at the top level (profiles/, templates/); pyproject.toml's package-dir
installs them as the packages `bootsrv.data.profiles` and `bootsrv.data.templates`, so
`importlib.resources` finds copies inside a wheel's install and the checkout's own directories
under an editable install, whatever the working directory. Nothing else in bootsrv computes a
data path from `__file__`.

A site that keeps its own profiles or templates names them with absolute paths in the config
(`[profiles]`); `shipped()` gives the meaning of the relative ones, the defaults among them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path, PurePath

SHIPPED = ("profiles", "templates")


def directory(name: str) -> Path:
    """The installed directory of the shipped data `name` ("profiles" or "templates")."""
    if name not in SHIPPED:
        raise ValueError(
            f"{name!r} is not shipped data: a relative path names {' or '.join(SHIPPED)} "
            "(the packaged ones); a directory of your own needs an absolute path"
        )
    try:
        root = resources.files(f"{__name__}.{name}")
    except ModuleNotFoundError:
        # An editable install made before the data became packages has no mapping for them.
        raise ValueError(
            f"the packaged {name} are not installed (no package {__name__}.{name}): "
            "reinstall bootsrv (./setup, or pip install)"
        ) from None
    if not isinstance(root, Path):
        # Jinja's FileSystemLoader and the catalog's glob need a directory, not a zip member.
        raise ValueError(f"the packaged {name} are inside an archive ({root}): install bootsrv unzipped")
    return root


def profiles_dir() -> Path:
    return directory("profiles")


def templates_dir() -> Path:
    return directory("templates")


def shipped(relative: PurePath) -> Path:
    """What a relative config path means: `profiles` or `templates` (or a path inside one) of
    the installed package, so that it does not depend on the working directory."""
    if relative.is_absolute() or not relative.parts:
        raise ValueError(f"{str(relative)!r} must be a relative path starting with {' or '.join(SHIPPED)}")
    head, *rest = relative.parts
    return directory(head).joinpath(*rest)
