"""EvolvedOptimizer: a genome running as a real ``torch.optim.Optimizer``.

Speed: the parameters of a group that share a device and dtype form one *bucket*.  Each step the
bucket's gradients are gathered into one flat buffer, the compiled plan runs over flat tensors
(one kernel per op for all parameters), and the update is added back with one ``_foreach_add_``.
State lives in flat tensors too; ``self.state[p]`` holds views into them, so ``state_dict`` and
``load_state_dict`` work as for any torch optimizer.

Per-step LR: ``lr`` (the peak, per param group) x base schedule (``warmup_cosine`` by default,
paper-spec §3.1, or ``constant``) x the genome's schedule tree.  Momentum coefficient: the
schedule of §3.2 by default, or a constant (``momentum=0.9``).  The step counter is global to the
optimizer and increments once per ``step()``; past ``total_steps`` every table holds its last value.

Low-precision parameters (bfloat16, float16) keep their state and do their arithmetic in float32;
the update is rounded to the parameter dtype when it is applied.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..space.genome import Genome
from .compiler import PlanRunner, compile_genome
from .schedules import BASE_SCHEDULES, base_lr_table, clamp_step, momentum_table, tree_table

_EXTRA_KEY = "deapnos"


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


class _Bucket:
    """Parameters of one group on one device with one dtype, and the flat state of their updates."""

    def __init__(self, params: list[torch.Tensor], plan, generator):
        self.params = params
        self.key = tuple(id(p) for p in params)
        self.sizes = [p.numel() for p in params]
        self.numel = sum(self.sizes)
        p0 = params[0]
        self.dtype = p0.dtype
        self.cdtype = _compute_dtype(p0.dtype)
        self.device = p0.device
        self.runner = PlanRunner(plan, self.numel, self.sizes, self.device, self.cdtype, generator)
        self.g = torch.empty(self.numel, device=self.device, dtype=self.cdtype)
        self.w = None
        self.M: torch.Tensor | None = None
        self._views: dict[int, list[torch.Tensor]] = {}

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Per-parameter views of a flat tensor (cached by storage address)."""
        key = flat.data_ptr()
        views = self._views.get(key)
        if views is None or len(self._views) > 64:
            if len(self._views) > 64:
                self._views.clear()
            views = [v.view_as(p) for v, p in zip(torch.split(flat, self.sizes), self.params)]
            self._views[key] = views
        return views

    def gather_grads(self):
        grads = [p.grad.reshape(-1) for p in self.params]
        if self.cdtype == self.dtype:
            torch.cat(grads, out=self.g)
        else:
            self.g.copy_(torch.cat(grads))
        return self.g

    def gather_params(self) -> torch.Tensor:
        if self.w is None:
            self.w = torch.empty(self.numel, device=self.device, dtype=self.cdtype)
        flat = [p.detach().reshape(-1) for p in self.params]
        if self.cdtype == self.dtype:
            torch.cat(flat, out=self.w)
        else:
            self.w.copy_(torch.cat(flat))
        return self.w

    def add_to_params(self, delta: torch.Tensor, alpha: float = 1.0):
        if self.cdtype != self.dtype:
            delta = (delta * alpha).to(self.dtype) if alpha != 1.0 else delta.to(self.dtype)
            alpha = 1.0
        views = self.views(delta)
        with torch.no_grad():
            if alpha == 1.0:
                torch._foreach_add_(self.params, views)
            else:
                torch._foreach_add_(self.params, views, alpha=alpha)


class EvolvedOptimizer(torch.optim.Optimizer):
    """Run a :class:`~deapnos.space.genome.Genome` as a PyTorch optimizer.

    Args:
        params: parameters or param groups (each group may set its own ``lr``).
        genome: the genome (or its text form).
        lr: peak learning rate.
        total_steps: number of ``step()`` calls of the run; required (decays depend on it).
        warmup_steps: linear warm-up length of the base schedule.
        base_schedule: ``"warmup_cosine"`` (paper-spec §3.1) or ``"constant"``.
        hold_steps: steps at the peak LR between warm-up and cosine (``finalOptimizers``' hold).
        momentum: ``None`` for the paper's 0.95 -> 0.85 -> 0.95 schedule (§3.2), or a constant.
        check_finite: check each update; a non-finite one is skipped and recorded in
            ``self.diverged`` / ``self.divergence`` instead of being applied (costs one reduction).
        seed: seed of the generator that dropout ops draw from.
    """

    def __init__(self, params: Iterable, genome: Genome | str, lr: float = 1e-3, total_steps: int | None = None,
                 warmup_steps: int = 0, base_schedule: str = "warmup_cosine", hold_steps: int = 0,
                 momentum: float | None = None, check_finite: bool = False, seed: int = 0):
        if isinstance(genome, str):
            genome = Genome.parse(genome)
        if not isinstance(lr, (int, float)) or lr < 0:
            raise ValueError(f"lr must be a non-negative number, got {lr!r}")
        if base_schedule not in BASE_SCHEDULES:
            raise ValueError(f"base_schedule must be one of {', '.join(BASE_SCHEDULES)}, got {base_schedule!r}")
        if momentum is not None and not (0.0 <= float(momentum) < 1.0):
            raise ValueError(f"momentum must be None (the paper's schedule) or in [0, 1), got {momentum!r}")
        super().__init__(params, dict(lr=lr))
        self.genome = genome
        self.total_steps = total_steps
        self.plan = compile_genome(genome, total_steps)
        self.lr_multipliers = [b * float(m) for b, m in zip(
            base_lr_table(total_steps, warmup_steps, base_schedule, hold_steps),
            tree_table(genome.schedule, genome.space, total_steps))]
        self.momentum_values = momentum_table(total_steps, warmup_steps, hold_steps, momentum)
        self.sign = 1.0 if genome.flip else -1.0
        self.check_finite = check_finite
        self.diverged = False
        self.divergence: str | None = None
        self.step_count = 0
        self.generator = None
        if self.plan.needs_generator:
            device = next((p.device for g in self.param_groups for p in g["params"]), torch.device("cpu"))
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(seed)
        self._buckets: dict[tuple, _Bucket] = {}
        self._warned: list = []

    # -- learning rate ----------------------------------------------------------------------

    def lr_at(self, step: int, group: int = 0) -> float:
        """The effective LR of param group ``group`` at 0-based step ``step``."""
        t = min(step, self.total_steps - 1)
        return self.param_groups[group]["lr"] * self.lr_multipliers[t]

    # -- stepping ---------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        t = clamp_step(self.step_count, self.total_steps, self._warned)
        lr_mult, m_t = self.lr_multipliers[t], self.momentum_values[t]
        for gi, group in enumerate(self.param_groups):
            for bucket in self._buckets_of(gi, group):
                self._step_bucket(bucket, t, group["lr"] * lr_mult, m_t)
        self.step_count += 1
        return loss

    def _step_bucket(self, bucket: _Bucket, t: int, lr_t: float, m_t: float):
        g = bucket.gather_grads()
        u = bucket.runner.direction(g, t, bucket.gather_params)
        if self.check_finite and not bool(torch.isfinite(u).all()):
            self.diverged = True
            if self.divergence is None:
                self.divergence = f"step {self.step_count}: non-finite update from {self.genome.to_text()!r}"
            return
        alpha = self.sign * lr_t
        kind = self.genome.momentum
        if kind == "none":
            bucket.add_to_params(u, alpha)
            return
        M = bucket.M
        M.mul_(m_t).add_(u, alpha=alpha)
        if kind == "mom":
            bucket.add_to_params(M)
        elif kind == "nest":
            bucket.add_to_params(torch.add(M, u, alpha=alpha))
        else:  # standard Nesterov: w += m_t M_new + s lr U
            bucket.add_to_params(torch.add(torch.mul(M, m_t), u, alpha=alpha))

    def _buckets_of(self, gi: int, group: dict) -> list[_Bucket]:
        by_kind: dict[tuple, list[torch.Tensor]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("EvolvedOptimizer does not support sparse gradients")
            by_kind.setdefault((p.device, p.dtype), []).append(p)
        out = []
        for kind, params in by_kind.items():
            key = (gi, kind)
            bucket = self._buckets.get(key)
            if bucket is None or bucket.key != tuple(id(p) for p in params):
                bucket = self._make_bucket(params)
                self._buckets[key] = bucket
            out.append(bucket)
        return out

    def _make_bucket(self, params: list[torch.Tensor]) -> _Bucket:
        """A new flat bucket; state already held per parameter (from an older bucket or from
        ``load_state_dict``) is gathered into it, so rebuilding never loses state."""
        bucket = _Bucket(params, self.plan, self.generator)
        runner = bucket.runner

        def gather(key, target):
            parts = []
            for p in params:
                saved = self.state[p].get(key) if p in self.state else None
                parts.append(saved.reshape(-1).to(target.dtype) if saved is not None
                             else torch.zeros(p.numel(), device=target.device, dtype=target.dtype))
            target.copy_(torch.cat(parts))

        for name, flat in runner.state.items():
            gather(name, flat)
        if self.genome.momentum != "none":
            bucket.M = torch.zeros(bucket.numel, device=bucket.device, dtype=bucket.cdtype)
            gather("M", bucket.M)
        for key in runner.op_state:
            sub = {}
            names = {k.split(".", 1)[1] for p in params for k in self.state.get(p, {}) if k.startswith(key + ".")}
            for name in sorted(names):
                flat = torch.zeros(bucket.numel, device=bucket.device, dtype=bucket.cdtype)
                gather(f"{key}.{name}", flat)
                sub[name] = flat
            runner.op_state[key] = sub
        self._expose_state(bucket)
        return bucket

    def _expose_state(self, bucket: _Bucket):
        """Point ``self.state[p]`` at views of the bucket's flat state (what state_dict saves)."""
        flats = dict(bucket.runner.state)
        if bucket.M is not None:
            flats["M"] = bucket.M
        for key, sub in bucket.runner.op_state.items():
            for name, flat in sub.items():
                flats[f"{key}.{name}"] = flat
        for name, flat in flats.items():
            for p, view in zip(bucket.params, torch.split(flat, bucket.sizes)):
                self.state[p][name] = view.view(p.shape)

    # -- checkpointing ----------------------------------------------------------------------

    def state_dict(self):
        # stateful ops create their state on first use: expose it before saving
        for bucket in self._buckets.values():
            self._expose_state(bucket)
        sd = super().state_dict()
        sd[_EXTRA_KEY] = {"step": self.step_count, "genome": self.genome.to_text(),
                          "generator": self.generator.get_state() if self.generator is not None else None,
                          "diverged": self.diverged, "divergence": self.divergence}
        return sd

    def load_state_dict(self, state_dict):
        extra = state_dict.get(_EXTRA_KEY)
        if extra is None:
            raise ValueError("not an EvolvedOptimizer state dict (no 'deapnos' entry)")
        if extra["genome"] != self.genome.to_text():
            raise ValueError(f"state dict is for genome {extra['genome']!r}, this optimizer runs "
                             f"{self.genome.to_text()!r}")
        sd = {k: v for k, v in state_dict.items() if k != _EXTRA_KEY}
        super().load_state_dict(sd)
        # torch casts floating state to the parameter dtype; keep the saved (compute) dtype so
        # that the float32 state of bfloat16 parameters survives a resume unrounded
        saved_ids = [i for g in sd["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for idx, p in zip(saved_ids, params):
            for key, value in sd["state"].get(idx, {}).items():
                if isinstance(value, torch.Tensor):
                    self.state[p][key] = value.to(device=p.device)
        self.step_count = int(extra["step"])
        self.diverged, self.divergence = bool(extra.get("diverged")), extra.get("divergence")
        if self.generator is not None and extra.get("generator") is not None:
            self.generator.set_state(extra["generator"])
        self._buckets.clear()   # rebuilt from the loaded per-parameter state on the next step

    def __repr__(self):
        return f"EvolvedOptimizer({self.genome.to_text()!r}, total_steps={self.total_steps})"
