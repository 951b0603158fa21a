"""Update tree -> evaluation plan, without ``eval``.

Provides :func:`compile_genome`, giving a :class:`Plan` (a straight list of :class:`Instr` over flat
tensors: per-step subtrees folded into tables, identities removed, equal subtrees shared, workspace
buffers reused), and :class:`PlanRunner`, which runs it each step over one flat bucket.
Details: docs/space.md, "The optimizer".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import torch
from deap import gp

from ..space.genome import tree_text
from ..space import ops as _ops
from ..space.ops import NONNEG_TWINS
from ..space.psets import DECAY_ON_BRANCH, Tensor
from ..space import operands as _operands
from ..space.operands import OperandContext
from .flat import FlatState
from . import fused as _fused
from .schedules import check_horizon, scalar_tree_code, tree_table

CONST, STEP, FULL = "const", "step", "full"

# ops through which a positive per-step scale passes unchanged: f(x s) = f(x) s for s > 0
_SCALE_THROUGH = {_ops.k_neg, _ops.k_abs, _ops.k_relu, _ops.k_negrelu}
_SQRTS = {_ops.k_sqrt, _ops.k_sqrt_nonneg}
_DIVS = {_ops.k_div: _ops.k_div_eps, _ops.k_div_nonneg: _ops.k_div_nonneg_eps}
# kernels much slower over their own input than into another buffer (torch's i1e: ~4x on CPU)
_NO_INPLACE = {_ops.k_i1e}
# division kernels -> the function building their denominator (for the fused last division)
_DENOMINATORS: dict[Callable | None, Callable] = {_ops.k_div: _fused.den_div, _ops.k_div_nonneg: _fused.den_div_nonneg,
                 _ops.k_div_eps: _fused.den_div_eps, _ops.k_div_nonneg_eps: _fused.den_div_nonneg_eps}


@dataclass
class Instr:
    """One step of a plan: ``out`` <- ``fn`` of argument values.

    ``kind``: ``operand`` (fn is an OperandSpec.compute), ``state`` (a state slot used as it is:
    no computation, no buffer), ``op`` (an OpSpec kernel), ``scale`` (multiply by the per-step
    scalar ``scales[scale_id][t]``) or ``fill`` (materialise a per-step or constant value).
    ``args`` are value ids; ``eps_scale`` (div kernels) divides the epsilon by a per-step scale.
    ``label`` is the subtree's text, for error messages and export.
    """
    kind: str
    fn: Callable | None
    args: tuple[int, ...]
    out: int                   # value id produced
    buf: int                   # workspace buffer index (-1: none)
    needs: tuple[str, ...] = ()
    accepts_out: bool = True
    uses_scratch: bool = False
    label: str = ""
    name: str = ""
    state_key: str | None = None   # per-node state dict key for stateful ops
    scale_id: int | None = None
    eps_scale: int | None = None
    arg_scale: int | None = None   # appends the per-step scalar scales[arg_scale][t] to the arguments


@dataclass
class Plan:
    """A compiled genome for a given horizon ``total_steps``.

    The direction it computes is ``U = tensor(root) * scales[root_scale][t]``: per-step scalar
    factors (bias corrections, decays on branches) travel beside tensors and are applied to the
    learning rate at the end instead of costing a pass over the parameters each.
    """
    total_steps: int
    instrs: list[Instr]
    values: dict[int, tuple[str, Any]]  # value id -> (CONST, float) | (STEP, float32 table) | (FULL, None)
    recipes: dict[int, str]             # value id -> source computing a CONST/STEP payload (for export)
    scales: list[list[float]]           # per-step scalar factors, by scale id
    scale_recipes: list[str]            # source computing each (for export)
    root: int                           # value id of the tensor of U
    root_scale: int | None
    n_buffers: int
    states: tuple[str, ...]          # EMA-like state slots to allocate and update, in order
    state_specs: tuple
    reads_params: bool
    stateful_keys: tuple[str, ...]   # keys of per-node op state
    needs_generator: bool
    text: str
    root_den: Callable | None = None   # the last instruction is a division of two full tensors: its
                                       # denominator kernel (the optimizer may fuse it into addcdiv)
    den_buf: int = -1                  # workspace buffer that may hold that denominator (-1: its own)
    elementwise: bool = False          # every step of the update acts element by element (built-in
                                       # operands, state updates and kernels only): it may run in chunks

    def state_names(self) -> list[str]:
        return list(self.states) + list(self.stateful_keys)


class _Builder:
    def __init__(self, space, T: int) -> None:
        self.space, self.T = space, T
        self.values: dict[int, tuple[str, Any]] = {}
        self.nonneg: dict[int, bool] = {}     # value id -> known to be >= 0 everywhere
        self.recipes: dict[int, str] = {}     # value id -> source of its CONST/STEP payload
        self.tensor_of: dict[int, int] = {}   # FULL value id -> id of the instruction output holding it
        self.scale_of: dict[int, int] = {}    # FULL value id -> scale id (absent: 1)
        self.scales: list[list[float]] = []
        self.scale_recipes: list[str] = []
        self.instrs: list[Instr] = []
        self.memo: dict[str, int] = {}
        self.next_id = 0
        self.states: list[str] = []
        self.reads_params = False
        self.stateful = 0
        self.needs_generator = False

    # -- values ------------------------------------------------------------------------------

    def new_value(self, kind, payload=None, nonneg: bool = False, recipe: str | None = None) -> int:
        vid = self.next_id
        self.next_id += 1
        if recipe is not None:
            self.recipes[vid] = recipe
        self.values[vid] = (kind, payload)
        if kind == CONST:
            nonneg = payload >= 0
        elif kind == STEP:
            nonneg = bool((payload >= 0).all())
        self.nonneg[vid] = nonneg
        return vid

    def emit(self, ins_kind, fn, args, nonneg=False, scale=None, **kw) -> int:
        vid = self.new_value(FULL, nonneg=nonneg)
        self.tensor_of[vid] = vid
        if scale is not None:
            self.scale_of[vid] = scale
        self.instrs.append(Instr(ins_kind, fn, tuple(args), vid, -1, **kw))
        return vid

    def new_scale(self, values: list[float], recipe: str) -> int:
        self.scales.append(values)
        self.scale_recipes.append(recipe)
        return len(self.scales) - 1

    def positive(self, sid: int | None) -> bool:
        return sid is None or all(v > 0 for v in self.scales[sid])

    def scale_product(self, a: int | None, b: int | None) -> int | None:
        if a is None or b is None:
            return b if a is None else a
        return self.new_scale([x * y for x, y in zip(self.scales[a], self.scales[b])],
                              f"[a * b for a, b in zip(S[{a}], S[{b}])]")

    def scale_ratio(self, a: int | None, b: int | None) -> int | None:
        if b is None:
            return a
        if a is None:
            return self.new_scale([1.0 / y for y in self.scales[b]], f"[1.0 / b for b in S[{b}]]")
        return self.new_scale([x / y for x, y in zip(self.scales[a], self.scales[b])],
                              f"[a / b for a, b in zip(S[{a}], S[{b}])]")

    def unscaled(self, vid: int) -> int:
        """The id of a tensor holding the value itself: multiplies a scaled value out (one pass)."""
        if self.values[vid][0] != FULL:
            return vid
        sid = self.scale_of.get(vid)
        if sid is None:
            return self.tensor_of[vid]
        return self.emit("scale", None, (self.tensor_of[vid],), nonneg=self.nonneg[vid], scale_id=sid,
                         label="scale", name="scale")

    def arg(self, vid: int) -> int:
        """Instruction argument for a value: its tensor (scale handled by the caller) or table."""
        return self.tensor_of.get(vid, vid)

    # -- tree walk ---------------------------------------------------------------------------

    def build(self, tree: gp.PrimitiveTree, i: int) -> tuple[int, int]:
        """Compile the subtree at ``i``; returns (value id, index past the subtree)."""
        node = tree[i]
        end = tree.searchSubtree(i).stop
        key = tree_text(gp.PrimitiveTree(tree[i:end]))
        if key in self.memo:
            return self.memo[key], end
        vid = self._build(tree, i, node, key)
        if self._shareable(tree, i, end):
            self.memo[key] = vid
        return vid, end

    def _shareable(self, tree, i, end):
        for node in tree[i:end]:
            if node.arity and node.ret is Tensor and node.name != DECAY_ON_BRANCH:
                spec = self.space.op_spec(Tensor, node.name)
                if "state" in spec.needs or "generator" in spec.needs:
                    return False
        return True

    def _build(self, tree, i, node, key):
        if node.arity == 0:
            return self._operand(node, key)
        if node.name == DECAY_ON_BRANCH:
            return self._decay(tree, i, key)
        return self._op(tree, i, node, key)

    def _operand(self, node, key):
        spec = self.space.operands[node.name]
        if spec.constant is not None:
            return self.new_value(CONST, float(spec.constant), recipe=repr(float(spec.constant)))
        for slot in spec.states:
            if slot not in self.states:
                self.states.append(slot)
        self.reads_params |= spec.reads_params
        if spec.lazy is not None:
            slot, fn = spec.lazy
            sid = self.new_scale([fn(t) for t in range(self.T)], f"[{fn.__name__}(t) for t in range(T)]")
            return self.emit("state", None, (), nonneg=spec.nonneg, scale=sid, label=key, name=slot)
        return self.emit("operand", spec.compute, (), nonneg=spec.nonneg, label=key, name=node.name)

    def _decay(self, tree, i, key):
        space = self.space
        decay_table = tree_table(tree, space, self.T, i + 1).to(torch.float32)
        decay_code = f"_table32({scalar_tree_code(tree, space, i + 1)}, T)"
        x, _ = self.build(tree, tree.searchSubtree(i + 1).stop)
        kind, payload = self.values[x]
        if kind != FULL:
            return self.new_value(STEP, decay_table * _as_table(kind, payload),
                                  recipe=f"({decay_code} * {self._table_code(x)})")
        dvid = self.new_value(STEP, decay_table, recipe=decay_code)
        # the decayed branch is the same tensor with one more per-step factor: no pass at all
        d_sid = self.new_scale(decay_table.tolist(), f"v{dvid}.tolist()")
        vid = self.new_value(FULL, nonneg=self.nonneg[x] and self.nonneg[dvid])
        self.tensor_of[vid] = self.tensor_of[x]
        self.scale_of[vid] = self.scale_product(self.scale_of.get(x), d_sid)
        return vid

    def _op(self, tree, i, node, key):
        spec = self.space.op_spec(Tensor, node.name)
        state_key = None
        if "state" in spec.needs:   # numbered in prefix order, as Genome.state_needed names them
            self.stateful += 1
            state_key = f"{node.name}#{self.stateful}"
        args, j = [], i + 1
        for _ in range(node.arity):
            a, j = self.build(tree, j)
            args.append(a)
        if node.name == "id" and spec.fn is _ops.k_identity:
            return args[0]
        kinds = [self.values[a][0] for a in args]
        if spec.pure and all(k != FULL for k in kinds):
            folded = spec.fn(*[_as_table(*self.values[a]) for a in args])
            call = f"{spec.fn.__name__}({', '.join(self._table_code(a) for a in args)})"
            if all(k == CONST for k in kinds):
                return self.new_value(CONST, float(folded), recipe=f"float({call})")
            return self.new_value(STEP, torch.broadcast_to(folded, (self.T,)).to(torch.float32).clone(),
                                  recipe=f"torch.broadcast_to({call}, (T,)).to(torch.float32).clone()")
        nonneg = spec.nonneg or self._keeps_nonneg(node.name, args)
        if not spec.pure:
            # ops with state, randomness or tensor boundaries run on full, unscaled tensors only
            self.needs_generator |= "generator" in spec.needs
            targs = [self.unscaled(self._materialise(a)) for a in args]
            return self.emit("op", spec.fn, targs, nonneg=nonneg, needs=spec.needs, accepts_out=spec.accepts_out,
                             uses_scratch=spec.uses_scratch, label=key, name=node.name, state_key=state_key)
        fn = spec.fn
        twin = NONNEG_TWINS.get(fn)
        if twin is not None and self.nonneg[args[twin[0]]]:
            fn = twin[1]
        scales = [self.scale_of.get(a) for a in args]
        out_scale, eps_scale = None, None
        if fn is _ops.k_mul:
            out_scale = self.scale_product(*scales)
            targs = [self.arg(a) for a in args]
        elif (fn in _SQRTS or fn in _SCALE_THROUGH) and self.positive(scales[0]):
            out_scale = (scales[0] if fn in _SCALE_THROUGH or scales[0] is None else
                         self.new_scale([math.sqrt(v) for v in self.scales[scales[0]]],
                                        f"[math.sqrt(a) for a in S[{scales[0]}]]"))
            targs = [self.arg(args[0])]
        elif fn is _ops.k_clip and self.positive(scales[0]) and self.positive(scales[1]):
            # clip(s1 a, s2 b) = s1 clip(a, (s2 / s1) b): the scales cost no pass
            a, b = args
            out_scale = scales[0]
            arg_scale = self.scale_ratio(scales[1], scales[0])
            nonneg_b = self.nonneg[b]
            if arg_scale is not None:
                fn = _fused.k_clip_nonneg_scaled if nonneg_b else _fused.k_clip_scaled
            elif nonneg_b:
                fn = _fused.k_clip_nonneg
            return self.emit("op", fn, [self.arg(a), self.arg(b)], nonneg=nonneg, scale=out_scale,
                             accepts_out=spec.accepts_out, uses_scratch=spec.uses_scratch, label=key,
                             name=node.name, arg_scale=arg_scale)
        elif fn in _DIVS:
            a, b = args
            sb = scales[1] if self.positive(scales[1]) else None
            tb = self.arg(b) if sb is not None else self.unscaled(b)
            out_scale = self.scale_ratio(scales[0], sb)
            targs = [self.arg(a), tb]
            if sb is not None:
                fn, eps_scale = _DIVS[fn], sb
        else:
            targs = [self.unscaled(a) for a in args]
        return self.emit("op", fn, targs, nonneg=nonneg, scale=out_scale, accepts_out=spec.accepts_out,
                         uses_scratch=spec.uses_scratch, label=key, name=node.name, eps_scale=eps_scale)

    def _keeps_nonneg(self, name, args):
        """Sign facts of the built-in binary ops that cost nothing to know."""
        signs = [self.nonneg[a] for a in args]
        if name in ("add", "mul", "min", "div", "mix95") and len(args) == 2:
            return all(signs)
        if name == "max":
            return any(signs)
        return False

    def _table_code(self, vid):
        """Source of the value as :func:`_as_table` gives it (a variable of the exported tables)."""
        if self.values[vid][0] == CONST:
            return f"torch.tensor(v{vid}, dtype=torch.float32)"
        return f"v{vid}"

    def _materialise(self, vid):
        if self.values[vid][0] == FULL:
            return vid
        return self.emit("fill", None, (vid,), nonneg=self.nonneg[vid], label="fill", name="fill")


def _as_table(kind, payload):
    return torch.tensor(payload, dtype=torch.float32) if kind == CONST else payload


def _assign_buffers(instrs: list[Instr], root: int) -> int:
    """Give each instruction a workspace buffer: reuse dead buffers, write in place over a dying
    input where the op allows it.  ``state`` instructions need none and are never written.
    Returns the number of buffers."""
    last_use: dict[int, int] = {}
    for k, ins in enumerate(instrs):
        for a in ins.args:
            last_use[a] = k
    last_use[root] = len(instrs)
    buf_of: dict[int, int] = {}
    free: list[int] = []
    n = 0
    for k, ins in enumerate(instrs):
        if ins.kind == "state":
            continue
        dying = [a for a in dict.fromkeys(ins.args) if a in buf_of and last_use.get(a) == k]
        inplace_ok = (ins.kind in ("op", "scale") and ins.accepts_out and "state" not in ins.needs
                      and ins.fn not in _NO_INPLACE)
        if inplace_ok and dying:
            ins.buf = buf_of[dying[0]]
            dying = dying[1:]
        elif free:
            ins.buf = free.pop()
        else:
            ins.buf = n
            n += 1
        buf_of[ins.out] = ins.buf
        free.extend(buf_of[a] for a in dying if buf_of[a] != ins.buf)
    return n


def compile_genome(genome, total_steps: int) -> Plan:
    """Compile ``genome.update`` for a run of ``total_steps`` steps."""
    check_horizon(total_steps)
    space = genome.space
    b = _Builder(space, total_steps)
    root, _ = b.build(genome.update, 0)
    root = b._materialise(root)
    root_scale = b.scale_of.get(root)
    root_tensor = b.tensor_of[root]   # may be a state slot itself (`none ~ v_hat`): read, never written
    n = _assign_buffers(b.instrs, root_tensor)
    stateful = tuple(ins.state_key for ins in b.instrs if ins.state_key)
    state_specs = tuple(space.states[s] for s in b.states)
    root_den = _root_denominator(b.instrs, b.values, root_tensor)
    return Plan(total_steps, b.instrs, b.values, b.recipes, b.scales, b.scale_recipes, root_tensor, root_scale,
                n, tuple(b.states), state_specs, b.reads_params, stateful,
                b.needs_generator, genome.to_text(), root_den, _den_buffer(b.instrs, root_den),
                _elementwise(b.instrs, state_specs))


def _root_denominator(instrs: list[Instr], values, root: int) -> Callable | None:
    """The denominator kernel of a last instruction ``a / b`` over two full tensors, else None."""
    if not instrs or instrs[-1].out != root:
        return None
    last = instrs[-1]
    den = _DENOMINATORS.get(last.fn) if last.kind == "op" else None
    if den is None or any(values[a][0] != FULL for a in last.args):
        return None
    return den


# denominator kernels that may write over their own input (one pass of b alone)
_DEN_INPLACE = {_fused.den_div_nonneg, _fused.den_div_nonneg_eps}
_ELEMENTWISE_MODULES = {_ops.__name__, _fused.__name__}


def _den_buffer(instrs: list[Instr], root_den) -> int:
    """Where the fused division's denominator goes: the buffer the last instruction would have
    written, unless that holds the numerator (or the denominator's input, for a kernel that cannot
    write over it).  -1: a buffer of its own."""
    if root_den is None:
        return -1
    last = instrs[-1]
    buf_of = {ins.out: ins.buf for ins in instrs if ins.kind != "state"}
    num, den = last.args
    if last.buf < 0 or buf_of.get(num) == last.buf:
        return -1
    if buf_of.get(den) == last.buf and root_den not in _DEN_INPLACE:
        return -1
    return last.buf


def _plugin_code(instrs: list[Instr], state_specs) -> str | None:
    """The first piece of a plan that is plugin code (it may mix elements), said in words; None when
    every operand, state update and kernel is built in."""
    operands = _operands.__name__
    for spec in state_specs:
        if spec.update.__module__ != operands:
            return f"the state update of {spec.update.__name__} is plugin code"
    for ins in instrs:
        if ins.kind == "operand" and getattr(ins.fn, "__module__", None) != operands:
            return f"operand {ins.label or ins.name!r} is plugin code"
        if ins.kind == "op" and getattr(ins.fn, "__module__", None) not in _ELEMENTWISE_MODULES:
            return f"op {ins.name!r} is plugin code"
    return None


def _elementwise(instrs: list[Instr], state_specs) -> bool:
    """Whether the plan acts element by element: only built-in operands, state updates and kernels
    without context (state, step, generator, tensor boundaries)."""
    return (_plugin_code(instrs, state_specs) is None
            and not any(ins.kind == "op" and ins.needs for ins in instrs))


def member_problem(plan: Plan) -> str | None:
    """Why K runs stacked in one bucket (the batched LR screen) would not each follow their own run,
    or None: an op that draws random numbers (a stacked draw is not the K runs' draws), or plugin code
    (it may mix elements).  Ops over tensor boundaries (``norm``) are fine: the stacked optimizer
    gives them each member's tensors."""
    for ins in plan.instrs:
        if ins.kind == "op" and "generator" in ins.needs:
            return f"op {ins.name!r} draws random numbers"
    return _plugin_code(plan.instrs, plan.state_specs)


class PlanRunner(FlatState):
    """Runs a plan over one flat bucket of ``numel`` elements split into tensors of ``sizes``.

    State lives in flat tensors: ``state[slot]`` for EMA slots and ``op_state[key]`` (dicts of
    tensors) for stateful ops.  ``direction(g, t, params_fn)`` returns the flat update U.
    ``compiled``, when set (:class:`~deapnos.optim.compiled.CompiledUpdate`), computes the update
    instead; if it raises, it is dropped (its ``failed`` hears why) and the plan runs eagerly.
    """

    compiled: Any = None

    def __init__(self, plan: Plan, numel: int, sizes: list[int], device, dtype, generator=None):
        super().__init__(numel, sizes, device, dtype, plan.states, plan.stateful_keys, plan.n_buffers,
                         any(ins.uses_scratch for ins in plan.instrs), generator)
        self.plan = plan
        self.tables = {vid: (p.to(device) if kind == STEP else torch.tensor(p, dtype=dtype, device=device))
                       for vid, (kind, p) in plan.values.items() if kind != FULL}

    @property
    def elementwise(self) -> bool:   # type: ignore[override]
        """The plan runs eagerly and acts element by element, so the optimizer may run it over windows."""
        return self.plan.elementwise and self.compiled is None

    def direction(self, g: torch.Tensor, t: int, params_fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The flat update direction U at 0-based step ``t`` (already clamped to the horizon)."""
        u, scale = self.direction_scaled(g, t, params_fn)
        return u if scale == 1.0 else torch.mul(u, scale)

    def direction_scaled(self, g, t, params_fn):
        """(tensor, scalar) whose product is U: the optimizer folds the scalar into the LR."""
        if self.compiled is not None:
            out = self._try_compiled(self.compiled, g, t, params_fn)
            if out is not None:
                return out
        plan = self.plan
        vals = self._run(g, t, params_fn, plan.instrs)
        return vals[plan.root], (1.0 if plan.root_scale is None else plan.scales[plan.root_scale][t])

    def increment(self, g, t, params_fn, kind, M, m_t, lr_factor):
        """With ``compiled`` set: the tensor a step adds to the weights, momentum ``kind`` included
        (``M`` updated in place), from one compiled kernel.  None: run the step eagerly."""
        if self.compiled is None:
            return None
        return self._try_compiled(self.compiled.increment, g, t, params_fn, kind, M, m_t, lr_factor)

    def _try_compiled(self, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - whatever fails to compile runs eagerly
            failed, self.compiled = self.compiled, None
            failed.failed(exc)
            return None

    def _run(self, g, t, params_fn, instrs):
        """Update the state slots, then run ``instrs``; returns their values by id."""
        plan = self.plan
        ctx = OperandContext(g, t, self.state, params_fn)
        for spec in plan.state_specs:
            spec.update(self.state[spec.name], ctx)
        vals: dict[int, torch.Tensor] = {}
        scales = plan.scales
        for ins in instrs:
            if ins.kind == "state":
                vals[ins.out] = self.state[ins.name]
                continue
            buf = self.buffers[ins.buf]
            if ins.kind == "operand":
                v = ins.fn(ctx, out=buf)
            elif ins.kind == "scale":
                v = torch.mul(vals[ins.args[0]], scales[ins.scale_id][t], out=buf)
            elif ins.kind == "fill":
                v = buf.fill_(self._value(vals, ins.args[0], t))
            else:
                args = [self._value(vals, a, t) for a in ins.args]
                if ins.eps_scale is not None:
                    args.append(1e-7 / scales[ins.eps_scale][t])
                if ins.arg_scale is not None:
                    args.append(scales[ins.arg_scale][t])
                kw = {}
                for need in ins.needs:
                    if need == "state":
                        kw["state"] = self.op_state[ins.state_key]
                    elif need == "t":
                        kw["t"] = t
                    elif need == "generator":
                        kw["generator"] = self.generator
                    elif need == "sizes":
                        kw["sizes"] = self.sizes
                if ins.uses_scratch:
                    kw["scratch"] = self.scratch
                if ins.accepts_out:
                    v = ins.fn(*args, **kw, out=buf)
                else:   # a plugin op: its result may be a new tensor, a scalar or broadcastable
                    v = ins.fn(*args, **kw)
                    if not isinstance(v, torch.Tensor) or v.shape != buf.shape:
                        v = buf.copy_(torch.as_tensor(v, dtype=buf.dtype, device=buf.device).expand_as(buf))
            vals[ins.out] = v
        return vals

    def direction_parts(self, g, t, params_fn):
        """(numerator, denominator, scalar) with U = scalar x numerator / denominator, for a plan
        whose last instruction is a division (``plan.root_den``); None for any other plan."""
        plan = self.plan
        if plan.root_den is None or self.compiled is not None:   # compiled: U comes out of one kernel
            return None
        last = plan.instrs[-1]
        vals = self._run(g, t, params_fn, plan.instrs[:-1])
        extra = [1e-7 / plan.scales[last.eps_scale][t]] if last.eps_scale is not None else []
        out = self.buffers[plan.den_buf] if plan.den_buf >= 0 else self.den_buffer()
        den = plan.root_den(vals[last.args[1]], *extra, out=out)
        return vals[last.args[0]], den, (1.0 if plan.root_scale is None else plan.scales[plan.root_scale][t])

    def _value(self, vals, vid, t):
        if vid in vals:
            return vals[vid]
        table = self.tables[vid]
        return table if table.dim() == 0 else table[t]
