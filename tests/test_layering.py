"""The import layering of DESIGN.md ("Rooms talk downward only"), checked on the source with ast.

Every module under deapnos/ has a layer (:data:`LAYERS`) and imports only from its own layer and
those below.  Every import counts, also those inside functions (lazy imports still tie the layers
together).  Imports under ``if TYPE_CHECKING:`` are left out: they are never executed (annotations
only, e.g. hookspecs naming the types plugins return), so they order nothing at run time.  A second
test asserts that the import graph of deapnos/ has no cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The layers of DESIGN.md, lowest first: registry and space at the bottom; optim knows space; zoo knows
# optim; plugins/hookspecs know the layers below and nothing above; evaluate knows optim; search knows
# evaluate; distributed, context, run, cli and the reporting rooms on top.  An entry names a module or
# a package (all of it); the most specific entry wins; "deapnos" is the package's own __init__ only.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # hookspecs: pluggy markers and specs, whose upward names are TYPE_CHECKING only (optim, zoo and
    # the built-in hook modules import its `hookimpl`); errors: exceptions several rooms share;
    # processes, argtypes, listargs, schema: standard library only
    ("bottom", ("deapnos.registry", "deapnos.space", "deapnos.hookspecs", "deapnos.errors",
                "deapnos.processes", "deapnos.argtypes", "deapnos.listargs", "deapnos.schema")),
    ("optim", ("deapnos.optim",)),
    # the package __init__ (resolve_genome, optimizer) and identify (nearest known optimizer) read the zoo
    ("zoo", ("deapnos.zoo", "deapnos.identify", "deapnos")),
    # hookcalls: calling hooks one plugin at a time and the registries of what they return (plugins.py
    # loads the plugins and re-exports it); plugin_table: what each plugin provides (`deapnos plugins`'
    # rows, which the old deapnos.plugins.plugin_info reaches without importing the command)
    ("plugins", ("deapnos.plugins", "deapnos.hookcalls", "deapnos.plugin_table")),
    ("evaluate", ("deapnos.evaluate",)),
    ("search", ("deapnos.search",)),
    # deapnos.commands (all of it): the commands without a room of their own (show, export, evaluate, plugins);
    # backends: the map backends, below the context (which registers them as a built-in plugin);
    # worker_entry: what the backends run on a worker, with a Context from build_context, handed down to
    # evaluate/worker.py (which may not import the context); distributed re-exports both, above the context
    ("top", ("deapnos.backends", "deapnos.worker_entry", "deapnos.distributed", "deapnos.context", "deapnos.run",
             "deapnos.cli", "deapnos.commands",
             "deapnos.report", "deapnos.reproduce", "deapnos.status", "deapnos.live", "deapnos.api",
             "deapnos.repair", "deapnos.workspace", "deapnos.scoop_entry", "deapnos.launch", "deapnos.outcome",
             "deapnos.report_plots", "deapnos.report_identity")),
]
# rooms that import less than their layer allows: the bottom room knows only itself
ONLY = {"deapnos.space": ("deapnos.space",)}
# Documented exceptions (importer, imported), each with its reason; keep this list short (it is empty)
# and explain every entry.
EXCEPTIONS: set[tuple[str, str]] = set()
# what built-in plugins may import of deapnos: the names in deapnos.__all__ and these modules
# (docs/plugins.md, "What a plugin may import")
PLUGIN_MODULES = ("deapnos.hookspecs", "deapnos.evaluate.tasks", "deapnos.evaluate.data",
                  "deapnos.evaluate.integrity", "deapnos.evaluate.training")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                out.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return out


def imports(path: Path, module: str, root: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) of every import statement in the file, at any depth
    (not those under ``if TYPE_CHECKING:``).  ``from PKG import SUBMODULE`` imports the submodule
    (and PKG only when it also imports a name of PKG itself)."""
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = _type_checking_nodes(tree)
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            names = [a.name for a in node.names]
            subs = []
            for name in names:   # `from deapnos import plugins`: the submodule is what is imported
                sub = root.joinpath(*f"{base}.{name}".split("."))
                if sub.with_suffix(".py").exists() or (sub / "__init__.py").exists():
                    subs.append(f"{base}.{name}")
            if len(subs) < len(names):
                out.append((base, [n for n in names if f"{base}.{n}" not in subs], node.lineno))
            out += [(sub, [], node.lineno) for sub in subs]
    return out


def _under(name: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    """The index in :data:`LAYERS` of ``module`` (its most specific entry), None when it has none."""
    best: tuple[int, int] | None = None
    for i, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if module == entry or (entry != "deapnos" and _under(module, entry)):
                if best is None or len(entry) > best[1]:
                    best = (i, len(entry))
    return None if best is None else best[0]


def deapnos_modules(root: Path) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted((root / "deapnos").rglob("*.py"))}


def framework_violations(root: Path) -> list[str]:
    """Imports under deapnos/ that run against the layering, and modules without a layer."""
    bad = []
    for module, path in deapnos_modules(root).items():
        mine = layer_of(module)
        if mine is None:
            bad.append(f"{path.relative_to(root)}: {module} has no layer in LAYERS (tests/test_layering.py)")
            continue
        room = next((k for k in ONLY if _under(module, k)), None)
        for target, _, line in imports(path, module, root):
            where = f"{path.relative_to(root)}:{line}: {module} imports {target}"
            if _under(target, "deapnos_plugins") or _under(target, "plugins"):
                bad.append(where + " (deapnos/ imports nothing from plugins/)")
                continue
            if not _under(target, "deapnos") or (module, target) in EXCEPTIONS:
                continue
            if room is not None and not any(_under(target, o) for o in ONLY[room]):
                bad.append(where + f" ({room} imports only {', '.join(ONLY[room])})")
                continue
            theirs = layer_of(target)
            if theirs is not None and theirs > mine:
                bad.append(where + f" (layer {LAYERS[mine][0]} must not import layer {LAYERS[theirs][0]})")
    return bad


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the deapnos modules it imports (lazy imports included, ``if TYPE_CHECKING:`` ones
    not: they never run).  ``import a.b.c`` counts as an edge to the module a.b.c only: the parent
    packages that Python imports on the way are not the code's own dependency."""
    modules = deapnos_modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, set())
        for target, _, _ in imports(path, module, root):
            while target and target not in modules:      # `from deapnos.x import name`: the module deapnos.x
                target = target.rpartition(".")[0]
            if target and target != module and (module, target) not in EXCEPTIONS:
                edges.add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as [a, b, ..., a]; [] when there is none."""
    state: dict[str, int] = {}     # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def plugin_violations(root: Path) -> list[str]:
    """Imports of deapnos by the built-in plugins beyond the public API."""
    import deapnos
    public = set(deapnos.__all__)
    bad = []
    for path in sorted((root / "plugins").glob("*.py")):
        module = "deapnos_plugins." + path.stem if path.stem != "__init__" else "deapnos_plugins"
        for target, names, line in imports(path, module, root):
            if not _under(target, "deapnos") or any(_under(target, m) for m in PLUGIN_MODULES):
                continue
            where = f"{path.relative_to(root)}:{line}: imports {target}"
            if target == "deapnos":
                private = [n for n in names if n not in public]
                if private:
                    bad.append(where + f" names outside deapnos.__all__: {', '.join(private)}")
            else:
                bad.append(where + " (not a public module for plugins)")
    return bad


def test_deapnos_imports_run_downward_only():
    bad = framework_violations(ROOT)
    assert not bad, "imports against DESIGN.md's layering:\n" + "\n".join(bad)


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph(ROOT))
    assert not cycle, "import cycle under deapnos/: " + " -> ".join(cycle)


def test_plugins_use_only_the_public_api():
    bad = plugin_violations(ROOT)
    assert not bad, "plugins importing beyond the public API:\n" + "\n".join(bad)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    space = tmp_path / "deapnos" / "space"
    space.mkdir(parents=True)
    (tmp_path / "deapnos" / "__init__.py").write_text("")
    (tmp_path / "deapnos" / "plugins.py").write_text("")
    (space / "__init__.py").write_text("")
    (space / "genome.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import plugins\n"
                                     "def f():\n    from ..optim.optimizer import X\n    from .. import plugins\n")
    bad = framework_violations(tmp_path)
    assert [b.split(": ", 1)[1].split(" (")[0] for b in bad] == [
        "deapnos.space.genome imports deapnos.optim.optimizer", "deapnos.space.genome imports deapnos.plugins"]


def test_every_module_needs_a_layer_and_imports_downward(tmp_path):
    pkg = tmp_path / "deapnos"
    (pkg / "search").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "search" / "__init__.py").write_text("")
    (pkg / "search" / "runner.py").write_text("def f():\n    from ..context import build_context\n")
    (pkg / "context.py").write_text("")
    (pkg / "newroom.py").write_text("")
    bad = [b.split(": ", 1)[1] for b in framework_violations(tmp_path)]
    assert bad == ["deapnos.newroom has no layer in LAYERS (tests/test_layering.py)",
                   "deapnos.search.runner imports deapnos.context (layer search must not import layer top)"]


def test_the_cycle_finder_names_the_cycle(tmp_path):
    pkg = tmp_path / "deapnos"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "plugins.py").write_text("def f():\n    from .distributed import BACKENDS\n")
    (pkg / "distributed.py").write_text("from .evaluate import worker\n")
    (pkg / "evaluate").mkdir()
    (pkg / "evaluate" / "__init__.py").write_text("")
    (pkg / "evaluate" / "worker.py").write_text("from typing import TYPE_CHECKING\nfrom .. import plugins\n"
                                                "if TYPE_CHECKING:\n    from ..distributed import X\n")
    assert find_cycle(import_graph(tmp_path)) == ["deapnos.distributed", "deapnos.evaluate.worker", "deapnos.plugins",
                                                  "deapnos.distributed"]
    (pkg / "plugins.py").write_text("")
    assert find_cycle(import_graph(tmp_path)) == []
