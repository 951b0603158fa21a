"""The import layering of DESIGN.md ("Rooms talk downward only"), checked on the source with ast.

Every import counts, also those inside functions (lazy imports still tie the layers together).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# what each room of deapnos/ must not import (prefix match on the absolute module name)
FORBIDDEN = {
    "deapnos.space": ("deapnos.",),     # the bottom room: only deapnos.space itself (see ALLOWED)
    "deapnos.optim": ("deapnos.",),
    "deapnos.evaluate": ("deapnos.search", "deapnos.run", "deapnos.cli", "deapnos.distributed",
                         "deapnos.commands", "deapnos.report", "deapnos.live", "deapnos.status"),
    # the search reaches the machines only through the map it is given (toolbox.map)
    "deapnos.search": ("deapnos.run", "deapnos.cli", "deapnos.commands", "deapnos.report", "deapnos.distributed"),
}
ALLOWED = {
    "deapnos.space": ("deapnos.space",),
    "deapnos.optim": ("deapnos.space", "deapnos.optim", "deapnos.registry", "deapnos.hookspecs"),
}
# Documented exceptions, each with its reason; keep this list short and explain every entry.
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


def imports(path: Path, module: str, root: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) of every import statement in the file, at any depth."""
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            names = [a.name for a in node.names]
            out.append((base, names, node.lineno))
            # `from deapnos import plugins`: the submodule is what is imported
            for name in names:
                sub = root.joinpath(*f"{base}.{name}".split("."))
                if sub.with_suffix(".py").exists() or (sub / "__init__.py").exists():
                    out.append((f"{base}.{name}", [], node.lineno))
    return out


def _under(name: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def framework_violations(root: Path) -> list[str]:
    """Imports under deapnos/ that run against the layering."""
    bad = []
    for path in sorted((root / "deapnos").rglob("*.py")):
        module = module_name(path, root)
        room = next((r for r in FORBIDDEN if _under(module, r)), None)
        for target, _, line in imports(path, module, root):
            where = f"{path.relative_to(root)}:{line}: {module} imports {target}"
            if _under(target, "deapnos_plugins") or _under(target, "plugins"):
                bad.append(where + " (deapnos/ imports nothing from plugins/)")
                continue
            if room is None or not _under(target, "deapnos") or (module, target) in EXCEPTIONS:
                continue
            if any(_under(target, a) for a in ALLOWED.get(room, ())):
                continue
            if any(_under(target, f) for f in FORBIDDEN[room]):
                bad.append(where + f" ({room} must not import it)")
    return bad


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


def test_plugins_use_only_the_public_api():
    bad = plugin_violations(ROOT)
    assert not bad, "plugins importing beyond the public API:\n" + "\n".join(bad)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    space = tmp_path / "deapnos" / "space"
    space.mkdir(parents=True)
    (tmp_path / "deapnos" / "__init__.py").write_text("")
    (tmp_path / "deapnos" / "plugins.py").write_text("")
    (space / "__init__.py").write_text("")
    (space / "genome.py").write_text("def f():\n    from ..optim.optimizer import X\n    from .. import plugins\n")
    bad = framework_violations(tmp_path)
    assert [b.split(": ", 1)[1].split(" (")[0] for b in bad] == [
        "deapnos.space.genome imports deapnos.optim.optimizer", "deapnos.space.genome imports deapnos",
        "deapnos.space.genome imports deapnos.plugins"]
