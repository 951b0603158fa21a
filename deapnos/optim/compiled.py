"""The opt-in ``torch.compile`` of a plan's update: ``EvolvedOptimizer(..., compile=True)``.

Provides :func:`compile_problem` (why a plan is not compiled) and :class:`CompiledUpdate`, which
traces a bucket's step (the state updates, every instruction of the plan and the momentum) once
into a straight-line FX graph with fake tensors (nothing runs, no state changes) and hands it to
``torch.compile``: one fused kernel in place of a pass per operation.  The per-step values (decay
tables, bias corrections, epsilons, LR and momentum) enter as small tensors, so the graph compiles
once per bucket however many steps run.  ``i1e`` enters as Cephes' Chebyshev series in plain tensor
arithmetic, which the compiler vectorizes (its own ``i1e`` is scalar code, slower than torch's
kernel).  Any failure (no C++ compiler, an op the tracer or the backend cannot take, a bad backend
name) is reported once by the optimizer, which runs the eager update from then on.
Details: docs/evaluation.md, "Faster optimizer steps".
"""
from __future__ import annotations

import struct
from collections.abc import Callable

import torch

from ..space import ops as _ops
from ..space.operands import OperandContext
from .compiler import CONST, FULL, Plan


def compile_problem(plan: Plan) -> str | None:
    """Why ``plan`` is run eagerly even with compile on (None: it compiles)."""
    for ins in plan.instrs:
        if ins.kind != "op":
            continue
        if "generator" in ins.needs:
            return f"{ins.name} draws random numbers, which the compiled update does not"
        if "state" in ins.needs:
            return f"{ins.name} keeps state of its own, which the compiled update does not"
    return None


# ---------------------------------------------------------------------------------------------
# i1e as tensor arithmetic: Cephes' series exactly as ATen's calc_i1e evaluates it (same float32 or
# float64 coefficients, same Clenshaw recurrence), to float rounding (ATen's scalar code may fuse
# multiply-adds).  exp(-|x|) I1(x) = x chbevl(|x|/2 - 2, A) for |x| <= 8, else
# chbevl(32/|x| - 2, B) / sqrt(|x|), with the sign of x.
# ---------------------------------------------------------------------------------------------

_I1E_A = (2.77791411276104639959E-18, -2.11142121435816608115E-17, 1.55363195773620046921E-16,
          -1.10559694773538630805E-15, 7.60068429473540693410E-15, -5.04218550472791168711E-14,
          3.22379336594557470981E-13, -1.98397439776494371520E-12, 1.17361862988909016308E-11,
          -6.66348972350202774223E-11, 3.62559028155211703701E-10, -1.88724975172282928790E-9,
          9.38153738649577178388E-9, -4.44505912879632808065E-8, 2.00329475355213526229E-7,
          -8.56872026469545474066E-7, 3.47025130813767847674E-6, -1.32731636560394358279E-5,
          4.78156510755005422638E-5, -1.61760815825896745588E-4, 5.12285956168575772895E-4,
          -1.51357245063125314899E-3, 4.15642294431288815669E-3, -1.05640848946261981558E-2,
          2.47264490306265168283E-2, -5.29459812080949914269E-2, 1.02643658689847095384E-1,
          -1.76416518357834055153E-1, 2.52587186443633654823E-1)
_I1E_B = (7.51729631084210481353E-18, 4.41434832307170791151E-18, -4.65030536848935832153E-17,
          -3.20952592199342395980E-17, 2.96262899764595013876E-16, 3.30820231092092828324E-16,
          -1.88035477551078244854E-15, -3.81440307243700780478E-15, 1.04202769841288027642E-14,
          4.27244001671195135429E-14, -2.10154184277266431302E-14, -4.08355111109219731823E-13,
          -7.19855177624590851209E-13, 2.03562854414708950722E-12, 1.41258074366137813316E-11,
          3.25260358301548823856E-11, -1.89749581235054123450E-11, -5.58974346219658380687E-10,
          -3.83538038596423702205E-9, -2.63146884688951950684E-8, -2.51223623787020892529E-7,
          -3.88256480887769039346E-6, -1.10588938762623716291E-4, -9.76109749136146840777E-3,
          7.78576235018280120474E-1)


def _f32(v: float) -> float:
    return struct.unpack("f", struct.pack("f", v))[0]


# ATen's float32 series: the last 17 and 7 coefficients, rounded to float32
_I1E_SERIES = {torch.float64: (_I1E_A, _I1E_B),
               torch.float32: (tuple(_f32(v) for v in _I1E_A[-17:]), tuple(_f32(v) for v in _I1E_B[-7:]))}

# kernels whose output never exceeds 8 in absolute value: i1e of it needs only the first series
_WITHIN_8 = {_ops.k_i1e, _ops.k_tanh, _ops.k_sigmoid, _ops.k_erf, _ops.k_erfc, _ops.k_atan, _ops.k_dsoft,
             _ops.k_softsign, _ops.k_dsig, _ops.k_dtanh}


def _chbevl(y, coeffs):
    b0, b1, b2 = coeffs[0], 0.0, 0.0
    for c in coeffs[1:]:
        b2, b1 = b1, b0
        b0 = y * b1 - b2 + c
    return 0.5 * (b0 - b2)


def i1e_series(x: torch.Tensor, within_8: bool = False) -> torch.Tensor:
    """``torch.special.i1e(x)`` in tensor arithmetic; ``within_8``: |x| <= 8 is known (one series)."""
    a, b = _I1E_SERIES.get(x.dtype, _I1E_SERIES[torch.float32])
    z = torch.abs(x)
    out = _chbevl(z * 0.5 - 2.0, a) * z
    if not within_8:
        out = torch.where(z <= 8.0, out, _chbevl(32.0 / z - 2.0, b) / torch.sqrt(z))
    return torch.where(x < 0, -out, out)


def _inductor_options() -> dict | None:
    """Let the C++ compiler fuse multiply-adds (inductor's default on CPU is not to): the Chebyshev
    recurrences of i1e run about a quarter faster.  Results move by float rounding only."""
    from torch._inductor import config
    if hasattr(config, "cpp") and hasattr(config.cpp, "enable_floating_point_contract_flag"):
        return {"cpp.enable_floating_point_contract_flag": "fast"}
    return None


class CompiledUpdate:
    """A plan's update over one bucket, compiled on first use.

    ``runner`` is the bucket's :class:`~deapnos.optim.compiler.PlanRunner` (its state slots, size
    and tables); ``backend`` a ``torch.compile`` backend; ``on_failure`` hears the exception when
    compiling or running raised (the runner then runs the plan eagerly).  :meth:`increment` gives
    what a step adds to the weights (momentum included); calling it gives (U, scalar) like
    ``PlanRunner.direction_scaled``.  Both update the state slots in place.
    """

    def __init__(self, runner, backend: str, on_failure: Callable[[BaseException], None] | None = None):
        self.runner = runner
        self.backend = backend
        self.on_failure = on_failure
        plan: Plan = runner.plan
        self.plan = plan
        T = plan.total_steps
        # per-step values as columns of one (T, K) table: t itself, the root's scale, then the plan's
        self._cols: dict[tuple, int] = {}
        columns: list[list[float]] = []

        def column(key, values):
            if key not in self._cols:
                self._cols[key] = len(columns)
                columns.append([float(v) for v in values])

        column(("t",), range(T))
        root_scale = plan.root_scale
        column(("root",), plan.scales[root_scale] if root_scale is not None else [1.0] * T)
        for ins in plan.instrs:
            if ins.kind == "scale" and ins.scale_id is not None:
                column(("scale", ins.scale_id), plan.scales[ins.scale_id])
            if ins.kind in ("fill", "op"):
                for a in ins.args:
                    kind, payload = plan.values[a]
                    if kind != FULL:
                        column(("value", a), [float(payload)] * T if kind == CONST else payload.tolist())
            if ins.eps_scale is not None:
                column(("eps", ins.eps_scale), [1e-7 / v for v in plan.scales[ins.eps_scale]])
            if ins.arg_scale is not None:
                column(("scale", ins.arg_scale), plan.scales[ins.arg_scale])
        self.table = torch.tensor(columns, dtype=torch.float64).T.contiguous().to(runner.device)
        self.out = torch.empty(runner.numel, device=runner.device, dtype=runner.dtype)
        self._producer = {ins.out: ins for ins in plan.instrs}
        self._fns: dict[str, Callable] = {}

    def failed(self, exc: BaseException) -> None:
        """Called by the runner when this update raised (it then runs the plan eagerly)."""
        if self.on_failure is not None:
            self.on_failure(exc)

    def _compiled(self, mode: str, args):
        fn = self._fns.get(mode)
        if fn is None:
            from torch.fx.experimental.proxy_tensor import make_fx

            def update(*a):
                return self._update(mode, *a)
            graph = make_fx(update, tracing_mode="fake")(*args)
            options = _inductor_options() if self.backend == "inductor" else None
            fn = self._fns[mode] = torch.compile(graph, backend=self.backend, fullgraph=True, dynamic=False,
                                                 options=options)
        return fn

    def _args(self, g, t, params_fn):
        runner, plan = self.runner, self.plan
        w = params_fn() if plan.reads_params else g
        return (g, w, self.table[t], self.out, *[runner.state[name] for name in plan.states])

    def __call__(self, g, t, params_fn):
        args = self._args(g, t, params_fn)
        u = self._compiled("direction", args)(*args)
        plan = self.plan
        return u, (1.0 if plan.root_scale is None else plan.scales[plan.root_scale][t])

    def increment(self, g, t, params_fn, kind: str, M, m_t: float, lr_factor: float):
        """The tensor the step adds to the weights: momentum ``kind`` (docs/paper.md §1.5) with
        coefficient ``m_t`` over U times ``lr_factor`` (sign x LR), updating ``M`` in place."""
        step = torch.tensor([m_t, lr_factor], dtype=torch.float64, device=self.table.device)
        args = self._args(g, t, params_fn) + ((M if M is not None else g), step)
        self._compiled(kind, args)(*args)
        return M if kind == "mom" else self.out

    def _update(self, mode, g, w, row, out, *rest):
        """The step as plain tensor code (what is traced); the result goes to ``out`` (or M)."""
        plan = self.plan
        states = rest[:len(plan.states)]
        u = self._direction(g, w, row, dict(zip(plan.states, states)))
        if mode == "direction":
            return out.copy_(u)
        M, step = rest[len(plan.states):]
        a = step[1] * row[self._cols[("root",)]]
        if mode == "none":
            return out.copy_(u * a)
        m = step[0]
        M_new = M * m + u * a
        M.copy_(M_new)
        if mode == "mom":
            return M
        if mode == "nest":          # the search's variant: w += M_new + s lr U
            return out.copy_(M_new + u * a)
        if mode == "nesterov":      # standard Nesterov: w += m_t M_new + s lr U
            return out.copy_(M_new * m + u * a)
        raise ValueError(f"unknown momentum kind {mode!r}")

    def _direction(self, g, w, row, state):
        plan, runner = self.plan, self.runner
        ctx = OperandContext(g, row[self._cols[("t",)]], state, lambda: w)
        for spec in plan.state_specs:
            spec.update(state[spec.name], ctx)
        vals: dict[int, torch.Tensor] = {}

        def value(vid):
            return vals[vid] if vid in vals else row[self._cols[("value", vid)]]

        for ins in plan.instrs:
            if ins.kind == "state":
                v = state[ins.name]
            elif ins.kind == "operand":
                v = ins.fn(ctx, out=None)
            elif ins.kind == "scale":
                v = torch.mul(vals[ins.args[0]], row[self._cols[("scale", ins.scale_id)]])
            elif ins.kind == "fill":
                v = torch.zeros_like(g).add_(value(ins.args[0]))
            elif ins.fn is _ops.k_i1e:
                source = self._producer.get(ins.args[0])
                v = i1e_series(vals[ins.args[0]], within_8=source is not None and source.kind == "op"
                               and source.fn in _WITHIN_8)
            else:
                args = [value(a) for a in ins.args]
                if ins.eps_scale is not None:
                    args.append(row[self._cols[("eps", ins.eps_scale)]])
                if ins.arg_scale is not None:
                    args.append(row[self._cols[("scale", ins.arg_scale)]])
                kw = {}
                if "sizes" in ins.needs:
                    kw["sizes"] = runner.sizes
                if "t" in ins.needs:
                    kw["t"] = ctx.t
                v = ins.fn(*args, **kw)
                if not isinstance(v, torch.Tensor) or v.shape != g.shape:   # a plugin op's scalar
                    v = torch.zeros_like(g).add_(torch.as_tensor(v, dtype=g.dtype, device=g.device))
            vals[ins.out] = v
        return vals[plan.root]
