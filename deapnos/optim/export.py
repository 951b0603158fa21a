"""Export a genome as a standalone optimizer module that imports only torch.

The module holds: the source of :mod:`deapnos.optim.flat` (buckets, momentum, state dict), the
kernels, operands and decay functions the genome uses (copied from their definitions), a
``_step_tables(T)`` function that precomputes decay and constant tables exactly as the compiler
does, and an engine whose ``direction`` is the compiled plan written out as straight-line code.
Running the same kernels in the same order, it reproduces ``EvolvedOptimizer`` bit for bit.
"""
from __future__ import annotations

import ast
import inspect
import re
import textwrap

from ..space import operands as _operands_mod
from ..space import ops as _ops_mod
from ..space.render import genome_str
from . import flat as _flat_mod
from .compiler import CONST, FULL, compile_genome
from .schedules import scalar_tree_code

_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


class ExportError(ValueError):
    """A genome that cannot be written as a standalone module (e.g. a plugin op without source)."""


class ExportNameError(ExportError):
    """The requested class name cannot be used in the exported module."""


def _module_body(module) -> str:
    """A module's source without its docstring and imports."""
    src = inspect.getsource(module)
    tree = ast.parse(src)
    lines = src.splitlines()
    keep_from = 0
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)):
            keep_from = node.end_lineno or keep_from
            continue
        break
    return "\n".join(lines[keep_from:]).strip() + "\n"


class _Sources:
    """Collects top-level definitions a function needs, following names it mentions."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.done: set[tuple[str, str]] = set()

    def add(self, fn) -> str:
        if getattr(fn, "__name__", "<lambda>") == "<lambda>":
            raise ExportError(f"cannot export a lambda ({fn!r}); define plugin functions with def")
        module = inspect.getmodule(fn)
        key = (module.__name__ if module else "?", fn.__name__)
        if key in self.done:
            return fn.__name__
        self.done.add(key)
        try:
            src = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError) as exc:
            raise ExportError(f"cannot export {fn.__name__}: its source is not available ({exc})") from None
        if module is not None:
            for name in sorted(set(_IDENT.findall(src)) - {fn.__name__}):
                value = getattr(module, name, None)
                # its own helpers, and deapnos helpers it imports (the fused kernels use ops' ones)
                if inspect.isfunction(value) and (value.__module__ == module.__name__
                                                  or value.__module__.startswith("deapnos.")):
                    self.add(value)
                elif isinstance(value, (int, float)) and not isinstance(value, bool) and name.isupper():
                    if (module.__name__, name) not in self.done:
                        self.done.add((module.__name__, name))
                        self.parts.append(f"{name} = {value!r}\n")
        self.parts.append(src)
        return fn.__name__


def _class_name(name: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", name)
    cls = "".join(p[:1].upper() + p[1:] for p in parts if p)
    return cls if cls and cls[0].isalpha() else "Evolved" + cls


def export_source(genome, name: str = "EvolvedOptimizer") -> str:
    """Source of a standalone module defining optimizer class ``name`` for ``genome``."""
    plan = compile_genome(genome, total_steps=1)   # structure only: tables are rebuilt from T
    space = genome.space
    src = _Sources()
    # kernels, operands, state updates, decay functions used by the genome
    for ins in plan.instrs:
        if ins.fn is not None:
            src.add(ins.fn)
    for spec in plan.state_specs:
        src.add(spec.update)
    if plan.root_den is not None:
        src.add(plan.root_den)
    for spec in space.operands.values():
        if spec.lazy is not None and any(spec.lazy[1].__name__ in r for r in plan.scale_recipes):
            src.add(spec.lazy[1])
    tables = _tables_source(plan, genome, space, src)
    engine = _engine_source(plan)
    cls = _class_name(name)
    header = (f'"""Standalone PyTorch optimizer exported by deapnos.\n\n'
              f"Genome: {genome.to_text()}\n"
              f"Equation: {genome_str(genome)}\n\n"
              f"Usage::\n\n    from this_module import {cls}\n"
              f"    opt = {cls}(model.parameters(), lr=1e-3, total_steps=10_000, warmup_steps=500)\n\n"
              f"Needs only torch.  Reproduces deapnos' EvolvedOptimizer step for step.\n"
              f'"""\n')
    body = [header, "import math\nimport warnings\n\nimport torch\n\n",
            f"GENOME = {genome.to_text()!r}\n\n",
            "# ---- flat-bucket optimizer machinery (deapnos.optim.flat) ----\n\n",
            _module_body(_flat_mod), "\n\n",
            "# ---- operand context (deapnos.space.operands) ----\n\n",
            textwrap.dedent(inspect.getsource(_operands_mod.OperandContext)), "\n\n",
            "# ---- kernels, operands and decay functions this genome uses ----\n\n",
            "\n\n".join(src.parts), "\n\n", tables, "\n\n", engine, "\n\n",
            _optimizer_source(cls, genome, plan)]
    helpers = _top_level_names("".join(body[:-1]))
    if cls in helpers:
        raise ExportNameError(f"the class name {cls!r} is already a helper inside the exported module, and the "
                              f"class would shadow it; choose another --class-name, e.g. My{cls}")
    return "".join(body)


def _top_level_names(source: str) -> set[str]:
    """Names a module's top level binds (functions, classes, assignments, imports)."""
    import ast
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _tables_source(plan, genome, space, src: _Sources) -> str:
    # every function the recipes and the schedule tree call
    codes = list(plan.recipes.values())
    sched_code = scalar_tree_code(genome.schedule, space, 0)
    for code in codes + [sched_code]:
        for ident in set(_IDENT.findall(code)):
            fn = getattr(_ops_mod, ident, None)
            if inspect.isfunction(fn):
                src.add(fn)
            else:
                for spec in list(space.decays.values()) + list(space.schedule_leaves.values()):
                    if spec.fn.__name__ == ident:
                        src.add(spec.fn)
                for spec in list(space.decay_unary.values()) + list(space.decay_binary.values()):
                    if spec.fn.__name__ == ident:
                        src.add(spec.fn)
    lines = ["def _table32(value, T):",
             "    return torch.broadcast_to(value, (T,)).clone().to(torch.float32)",
             "", "",
             "def _schedule_table(T):",
             '    """The schedule tree (LR multiplier) on t = 0..T-1, float64."""',
             "    t = torch.arange(T, dtype=torch.float64)",
             f"    return torch.broadcast_to({sched_code}, (T,)).clone()",
             "", "",
             "def _step_tables(T):",
             '    """Decay and constant values of the update tree (id -> 0-d or (T,) float32 tensor) and',
             '    the per-step scalar factors S (bias corrections, decays on branches) by scale id."""',
             "    t = torch.arange(T, dtype=torch.float64)"]
    for vid in sorted(plan.recipes):
        lines.append(f"    v{vid} = {plan.recipes[vid]}")
    lines.append("    S = []")
    for recipe in plan.scale_recipes:
        lines.append(f"    S.append({recipe})")
    items = ", ".join(f"{vid}: v{vid}" for vid in sorted(plan.recipes))
    lines.append(f"    return {{{items}}}, S")
    return "\n".join(lines) + "\n"


def _engine_source(plan) -> str:
    lines = ["class _Engine(FlatState):",
             '    """The compiled update tree over one flat bucket."""',
             "",
             f"    elementwise = {plan.elementwise!r}",
             "",
             "    def __init__(self, tables, scales, numel, sizes, device, dtype, generator=None):",
             f"        super().__init__(numel, sizes, device, dtype, {tuple(plan.states)!r}, "
             f"{tuple(plan.stateful_keys)!r}, {plan.n_buffers}, "
             f"{any(i.uses_scratch for i in plan.instrs)!r}, generator)",
             "        self.tables = {k: (v.to(device) if isinstance(v, torch.Tensor)",
             "                           else torch.tensor(v, dtype=dtype, device=device))",
             "                       for k, v in tables.items()}",
             "        self.scales = scales"]
    head = ["        ctx = OperandContext(g, t, self.state, params_fn)"]
    for spec in plan.state_specs:
        head.append(f"        {spec.update.__name__}(self.state[{spec.name!r}], ctx)")
    head.append("        b, s, tab, S = self.buffers, self.scratch, self.tables, self.scales")
    body = []

    def ref(vid):
        kind = plan.values[vid][0]
        if kind == FULL:
            return f"v{vid}"
        return f"tab[{vid}]" if kind == CONST else f"tab[{vid}][t]"

    for ins in plan.instrs:
        out = f"b[{ins.buf}]"
        if ins.kind == "state":
            expr = f"self.state[{ins.name!r}]"
        elif ins.kind == "operand":
            expr = f"{ins.fn.__name__}(ctx, out={out})"
        elif ins.kind == "scale":
            expr = f"torch.mul({ref(ins.args[0])}, S[{ins.scale_id}][t], out={out})"
        elif ins.kind == "fill":
            expr = f"{out}.fill_({ref(ins.args[0])})"
        else:
            args = [ref(a) for a in ins.args]
            if ins.eps_scale is not None:
                args.append(f"1e-7 / S[{ins.eps_scale}][t]")
            if ins.arg_scale is not None:
                args.append(f"S[{ins.arg_scale}][t]")
            for need in ins.needs:
                args.append({"state": f"state=self.op_state[{ins.state_key!r}]", "t": "t=t",
                             "generator": "generator=self.generator", "sizes": "sizes=self.sizes"}[need])
            if ins.uses_scratch:
                args.append("scratch=s")
            if ins.accepts_out:
                args.append(f"out={out}")
            expr = f"{ins.fn.__name__}({', '.join(args)})"
            if not ins.accepts_out:
                expr = f"_as_full({expr}, {out})"
        body.append(f"        v{ins.out} = {expr}  # {ins.label}")
    scale = "1.0" if plan.root_scale is None else f"S[{plan.root_scale}][t]"
    lines += ["", "    def direction_scaled(self, g, t, params_fn):"] + head + body
    lines.append(f"        return v{plan.root}, {scale}")
    if plan.root_den is not None:   # the optimizer applies the last division as one addcdiv
        last = plan.instrs[-1]
        eps = f", 1e-7 / S[{last.eps_scale}][t]" if last.eps_scale is not None else ""
        den_out = f"b[{plan.den_buf}]" if plan.den_buf >= 0 else "self.den_buffer()"
        lines += ["", "    def direction_parts(self, g, t, params_fn):"] + head + body[:-1]
        lines += [f"        den = {plan.root_den.__name__}({ref(last.args[1])}{eps}, out={den_out})",
                  f"        return {ref(last.args[0])}, den, {scale}"]
    if any(not i.accepts_out for i in plan.instrs if i.kind == "op"):
        lines = ["def _as_full(v, buf):",
                 "    if not isinstance(v, torch.Tensor) or v.shape != buf.shape:",
                 "        v = buf.copy_(torch.as_tensor(v, dtype=buf.dtype, device=buf.device).expand_as(buf))",
                 "    return v", "", ""] + lines
    return "\n".join(lines) + "\n"


def _optimizer_source(cls: str, genome, plan) -> str:
    sign = 1.0 if genome.flip else -1.0
    gen = "\n        self._make_generator(seed)" if plan.needs_generator else ""
    return f'''class {cls}(FlatOptimizer):
    """Genome ``{genome.to_text()}``.

    Args: params, lr (peak), total_steps (required), warmup_steps, base_schedule
    ("warmup_cosine" or "constant"), hold_steps, momentum (None: the 0.95/0.85 schedule, or a
    constant), check_finite, seed (dropout generator).  lr, warmup_steps, hold_steps,
    base_schedule and momentum are param-group options; total_steps is one too but must agree
    across groups.  load_state_dict refuses a state dict saved with other values.
    """

    def __init__(self, params, lr=1e-3, total_steps=None, warmup_steps=0, base_schedule="warmup_cosine",
                 hold_steps=0, momentum=None, check_finite=False, seed=0):
        check_options(base_schedule, momentum)
        check_horizon(total_steps, warmup_steps, hold_steps)
        self.identity = GENOME
        self.schedule_multipliers = [float(m) for m in _schedule_table(total_steps)]
        self.sign = {sign!r}
        self.momentum_kind = {genome.momentum!r}
        self._tables, self._scales = _step_tables(total_steps)
        super().__init__(params, lr, total_steps, warmup_steps, base_schedule, hold_steps, momentum,
                         check_finite){gen}

    def _new_engine(self, numel, sizes, device, dtype):
        return _Engine(self._tables, self._scales, numel, sizes, device, dtype, self.generator)


Optimizer = {cls}
'''
