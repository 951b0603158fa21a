"""What each loaded plugin provides: the rows and the table of ``deapnos plugins``.

:func:`plugin_info` asks every plugin's hooks what it provides (one row per plugin, also for those
that failed to load); :func:`describe` and :func:`format_table` put the rows in words.  The command
(:mod:`deapnos.commands.plugins`) loads the plugins and prints these; they sit here, in the plugin
layer, so that the old ``deapnos.plugins.plugin_info`` reaches them without importing the command.
This module imports nothing of deapnos.plugins (which imports it, for those old names).
"""
from __future__ import annotations

from typing import Any, cast

from .hookcalls import _first_line, _per_plugin, _PluginSpace, is_builtin

_PROV_KINDS = {"operand": "operand", "unary": "op", "binary": "op", "decay": "decay", "state": "state"}

#: plugin_info keys of the hooks that return named things, and their words in `deapnos plugins`
_PROVIDES = (("deapnos_integrity_checks", "checks", "integrity checks"),
             ("deapnos_surrogates", "surrogates", "surrogates"),
             ("deapnos_fitness_tasks", "tasks", "fitness tasks"),
             ("deapnos_map_backends", "backends", "map backends"),
             ("deapnos_search_algorithms", "algorithms", "search algorithms"),
             ("deapnos_zoo_optimizers", "zoo_optimizers", "zoo optimizers"),
             ("deapnos_zoo_schedules", "zoo_schedules", "zoo schedules"),
             ("deapnos_config_sections", "sections", "config sections"))
_OBSERVERS = ("deapnos_evaluation_finished", "deapnos_timestep_finished", "deapnos_run_finished")


def _row(name: str, src: Any, hooks: list[str], module: str, origin: str) -> dict:
    """A plugin's row; ``src``: its :class:`deapnos.plugins.PluginSource`, or None (then ``module``
    and ``origin`` say what is known)."""
    row: dict[str, Any] = {"name": name, "module": getattr(src, "module", module),
                           "origin": getattr(src, "origin", origin), "dist": getattr(src, "dist", None),
                           "version": getattr(src, "version", None), "hooks": hooks}
    row.update({key: [] for _, key, _ in _PROVIDES})
    row.update({"primitives": [], "error": None})
    return row


def _names_of(result: Any) -> list[str]:
    if result is None:
        return []
    items = result.items() if isinstance(result, dict) else [(getattr(x, "name", None), x) for x in result]
    names = [name for name, _ in items]
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"returned something without a name: {result!r}")
    return cast(list[str], names)   # every name is a non-empty str: checked just above


def plugin_info(pm) -> list[dict]:
    """One dict per plugin: ``name``, ``module``, ``origin``, ``dist``, ``version``, ``hooks``,
    ``checks``, ``surrogates``, ``tasks``, ``backends``, ``algorithms``, ``zoo_optimizers``,
    ``zoo_schedules``, ``sections``, ``primitives`` (e.g. ``operand slow_v_hat``) and ``error``
    (why it failed to load or to answer a hook; None when fine).  Plugins that failed to load
    (``pm.failed``) are listed too."""
    from .space import psets
    rows: dict[str, dict] = {}
    for name, plugin in pm.list_name_plugin():
        if plugin is None or is_builtin(name):     # deapnos's own modules are not listed as plugins
            continue
        rows[name] = _row(name, getattr(pm, "sources", {}).get(name),
                          sorted(c.name for c in (pm.get_hookcallers(plugin) or [])),
                          getattr(plugin, "__name__", "?"), "register")
    errors: dict[str, list[str]] = {}
    for hook_name, key, _ in _PROVIDES:
        for impl, caller in _per_plugin(pm, hook_name):
            if is_builtin(impl.plugin_name):        # deapnos's own (a Context's): not listed, not asked
                continue
            try:
                names = _names_of((caller() or [None])[0])
            except Exception as exc:  # noqa: BLE001 - plugin code
                errors.setdefault(impl.plugin_name, []).append(f"{hook_name}: {_first_line(exc)}")
                continue
            if impl.plugin_name in rows:
                rows[impl.plugin_name][key] = names
    space = psets.default_space()
    for impl, caller in _per_plugin(pm, "deapnos_add_primitives"):
        if is_builtin(impl.plugin_name):
            continue
        try:
            caller(space=_PluginSpace(space, impl.plugin_name))
        except Exception as exc:  # noqa: BLE001 - plugin code
            errors.setdefault(impl.plugin_name, []).append(f"deapnos_add_primitives failed: {_first_line(exc)}")
    for key, source in space.provenance.items():
        kind, prim = key.split(":", 1)
        if source in rows:
            rows[source]["primitives"].append(f"{_PROV_KINDS.get(kind, kind)} {prim}")
    for name, msgs in errors.items():
        if name in rows:
            rows[name]["error"] = "; ".join(msgs)
    for name, message in getattr(pm, "failed", {}).items():
        rows.setdefault(name, _row(name, getattr(pm, "sources", {}).get(name), [], name, "-p"))["error"] = \
            f"not loaded: {message}"
    return list(rows.values())


def describe(row: dict) -> str:
    """What a plugin provides, in words (one line)."""
    parts = []
    for key, label in [(key, label) for _, key, label in _PROVIDES] + [("primitives", "primitives")]:
        if row.get(key):
            parts.append(f"{label}: {', '.join(row[key])}")
    if "deapnos_addoption" in row["hooks"]:
        parts.append("run options")
    observers = [h for h in row["hooks"] if h in _OBSERVERS]
    if observers:
        parts.append(f"observers: {', '.join(h[len('deapnos_'):] for h in observers)}")
    if row.get("error"):
        parts.append(f"ERROR: {row['error']}")
    return "; ".join(parts) or "nothing"


def format_table(rows: list[dict]) -> str:
    """The plugin table of ``deapnos plugins``."""
    header = ("PLUGIN", "DISTRIBUTION", "VERSION", "LOADED BY", "PROVIDES")
    body = [(r["name"], r["dist"] or "-", r["version"] or "-", r["origin"], describe(r)) for r in rows]
    widths = [max(len(str(line[i])) for line in [header] + body) for i in range(4)]
    lines = []
    for line in [header] + body:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(line[:4], widths)) + "  " + line[4])
    return "\n".join(lines)


def print_plugins(pm, as_json: bool, autoload_env: str) -> int:
    """Print ``deapnos plugins``' listing of ``pm`` (a table, or JSON); 1 when a plugin failed to load or
    to answer, else 0.  ``autoload_env``: the variable that turned autoloading off, named when it did."""
    import json
    rows = plugin_info(pm)
    if as_json:
        print(json.dumps({"autoload": pm.autoload, "plugins": rows}, indent=2))
    else:
        if not pm.autoload:
            print(f"{autoload_env} is set: installed plugins are not loaded unless named with -p")
        print(format_table(rows) if rows else "no plugins loaded")
    return 1 if any(r["error"] for r in rows) else 0
