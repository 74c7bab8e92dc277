"""The dependency rule, enforced: which package of bootsrv may import which.

Arrows point down only. The base modules (errors, log, config, values) import nothing above
them; the protocol packages (leases, profiles, tftp, dns, dhcp, virt) never import the product's
use cases (machines) or the wiring (app); machines uses the protocols; the edges that face users
(http, cli) use the product; app composes all of them into running services; lab (namespaces,
VMs, the demo) is imported by nobody but `bootsrv demo`, lazily.

Every import counts, a function-level one too: an import moved into a function is still a
dependency. ALLOWED is the allow-list of package edges; a new edge is a design decision, made
here with its reason, not in passing. The checker is a pure function over module sources, so
the test that it catches a forbidden import needs no tree of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bootsrv

# What each part may import, besides itself and the `bootsrv` package's own __init__ (__version__).
BASE = {"errors", "log", "config", "values", "data", "tomlwriter", "servable"}
PROTOCOLS = {"leases", "profiles", "tftp", "dns", "dhcp", "virt"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "log": set(),
    "config": {"errors", "tomlwriter", "data"},
    "tomlwriter": set(),
    "data": set(),
    "values": {"config", "errors"},
    # Which file under a served root may go to an anonymous client: one rule that TFTP and HTTP
    # (/tftp/, /files/) both apply, so it sits below both; it imports nothing of bootsrv.
    "servable": set(),
    # Protocols: codecs, decisions and server loops. They take small interfaces (KnownMachines,
    # Sightings, an AddressBook, a HypervisorSource) that the product implements.
    "leases": {"errors", "log", "config", "values"},
    "profiles": {"errors", "log", "config", "data"},
    "tftp": {"errors", "log", "config", "servable"},
    "dns": {"errors", "log", "config"},
    "dhcp": {"errors", "log", "config", "values", "leases"},  # the engine leases from the store
    "virt": {"errors", "log", "config", "values", "leases", "data"},  # guests' MACs bound in the store
    # The product: machines and their life cycle, over the protocols (whose interfaces it implements).
    "machines": {"errors", "log", "config", "values", "leases", "profiles", "virt", "dhcp"},
    # The edges that face users: the web over the product; the wiring over everything it runs;
    # the command line over the wiring (and the lab, for `bootsrv demo` only: LAZY_ONLY).
    "http": {"errors", "log", "config", "values", "servable", "leases", "profiles", "machines", "virt"},
    "app": BASE | PROTOCOLS | {"machines", "http"},
    "cli": BASE | PROTOCOLS | {"machines", "app", "lab"},
    "__main__": {"cli"},
    "lab": {"errors", "log", "config", "values", "leases", "profiles", "virt", "data"},
}
# Edges allowed only inside a function: `bootsrv demo` loads the lab when it runs, so no other
# command, and no installed server, imports it.
LAZY_ONLY = {("cli", "lab")}


def part(module: str) -> str:
    """bootsrv.dhcp.engine -> dhcp; bootsrv.config -> config; bootsrv -> bootsrv."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "bootsrv"


def imports(module: str, source: str) -> list[tuple[str, int, bool]]:
    """(imported bootsrv module, line, at top level?) for every import in `source`."""
    tree = ast.parse(source)
    top = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` and try/except blocks at top level count as top
        if isinstance(node, (ast.If, ast.Try)):
            top.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from bootsrv import lab` names a package; `from bootsrv.x import y` the module x.
            if node.module == "bootsrv":
                names = ["bootsrv" if a.name.startswith("_") else f"bootsrv.{a.name}" for a in node.names]
            else:
                names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{module}:{node.lineno}: relative import; bootsrv imports absolutely")
        else:
            continue
        found += [(n, node.lineno, id(node) in top) for n in names if n == "bootsrv" or n.startswith("bootsrv.")]
    return found


def private_imports(module: str, source: str) -> list[str]:
    """`from bootsrv.x import _name` across modules: a private name is its module's own."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bootsrv"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") and node.module != module:
                    out.append(f"{module}:{node.lineno}: imports {node.module}.{alias.name}, a private name")
    return out


def violations(sources: dict[str, str]) -> list[str]:
    """Every import of `sources` (module name -> source) that ALLOWED and LAZY_ONLY forbid."""
    out = []
    for module, source in sorted(sources.items()):
        here = part(module)
        if here not in ALLOWED and here != "bootsrv":
            out.append(f"{module}: part {here!r} is not in tests/test_layering.py ALLOWED; give it its place")
            continue
        for target, line, top_level in imports(module, source):
            there = part(target)
            if there in (here, "bootsrv") or here == "bootsrv":
                continue
            if there not in ALLOWED.get(here, set()):
                out.append(f"{module}:{line}: {here} -> {there} ({target}) is not an allowed edge")
            elif (here, there) in LAZY_ONLY and top_level:
                out.append(f"{module}:{line}: {here} -> {there} only inside a function ({target})")
        out += private_imports(module, source)
    return out


def cycles(sources: dict[str, str]) -> list[list[str]]:
    """The import cycles between modules of `sources` (a function-level import counts): each a
    strongly connected set of two or more modules (Tarjan's algorithm)."""

    def module_of(name: str) -> str | None:
        while name and name not in sources:
            name = name.rpartition(".")[0]
        return name or None

    graph = {
        m: {t for n, _, _ in imports(m, s) if (t := module_of(n)) not in (None, m, "bootsrv")}
        for m, s in sources.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while group[-1:] != [v]:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return found


def tree_sources() -> dict[str, str]:
    root = Path(bootsrv.__file__).parent
    sources = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        sources[name] = path.read_text(encoding="utf-8")
    return sources


def test_the_tree_keeps_the_arrows_pointing_down():
    assert violations(tree_sources()) == []


def test_no_import_cycle_between_modules():
    assert cycles(tree_sources()) == []


def test_a_cycle_is_found_however_it_is_hidden():
    sources = {
        "bootsrv.tftp.server": "from bootsrv.tftp.transfer import Transfer\n",
        "bootsrv.tftp.transfer": "def start():\n    from bootsrv.tftp.loop import TransferLoop\n",
        "bootsrv.tftp.loop": "import bootsrv.tftp.server\n",
        "bootsrv.tftp.paths": "from bootsrv.tftp import options\n",
        "bootsrv.tftp.options": "",
    }
    assert cycles(sources) == [["bootsrv.tftp.loop", "bootsrv.tftp.server", "bootsrv.tftp.transfer"]]


def test_the_allowed_edges_have_no_cycle():
    # Acyclic by construction: a depth-first walk of ALLOWED never meets a part it is inside.
    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"cycle: {' -> '.join(path + (node,))}"
        for nxt in ALLOWED.get(node, ()):
            visit(nxt, path + (node,))

    for start in ALLOWED:
        visit(start, ())


FORBIDDEN = [
    pytest.param(
        "bootsrv.dhcp.engine",
        "from bootsrv.machines.admin import discover\n",
        "dhcp -> machines",
        id="protocol imports the product",
    ),
    pytest.param(
        "bootsrv.dhcp.engine",
        "def f():\n    from bootsrv.app.wiring import Wiring\n",
        "dhcp -> app",
        id="hidden in a function is still an edge",
    ),
    pytest.param("bootsrv.leases.store", "import bootsrv.machines.model\n", "leases -> machines", id="plain import"),
    pytest.param("bootsrv.machines.pool", "from bootsrv import lab\n", "machines -> lab", id="the lab from the core"),
    pytest.param(
        "bootsrv.cli.main",
        "from bootsrv.lab import demo\n",
        "only inside a function",
        id="the lab at the CLI's top level",
    ),
    pytest.param(
        "bootsrv.http.api",
        "from bootsrv.machines.enrollment import _token\n",
        "private name",
        id="another module's private name",
    ),
    pytest.param("bootsrv.gadgets.x", "import os\n", "not in tests/test_layering.py ALLOWED", id="a new part"),
]


@pytest.mark.parametrize("module, source, expected", FORBIDDEN)
def test_a_forbidden_import_is_named(module, source, expected):
    found = violations({module: source})
    assert len(found) == 1 and expected in found[0], found


ALLOWED_EXAMPLES = [
    pytest.param("bootsrv.cli.main", "def demo():\n    from bootsrv.lab import demo\n", id="the lab, lazily"),
    pytest.param(
        "bootsrv.machines.pool", "from bootsrv.virt.placement import HypervisorInfo\n", id="product over a protocol"
    ),
    pytest.param(
        "bootsrv.dhcp.engine",
        "from bootsrv import __version__\nfrom bootsrv.leases import LeaseStore\n",
        id="the package's version and a lower protocol",
    ),
]


@pytest.mark.parametrize("module, source", ALLOWED_EXAMPLES)
def test_an_allowed_import_passes(module, source):
    assert violations({module: source}) == []
