"""The flat-bucket optimizer machinery, in plain torch.

Provides :class:`FlatState` (one bucket's flat storage), :class:`FlatOptimizer` (buckets per param
group, device and dtype; momentum kinds; per-step tables) and the base LR and momentum tables
(docs/paper.md §3.1-3.2).  It imports only torch and the standard library: ``deapnos export`` copies
it verbatim, so an exported optimizer reproduces EvolvedOptimizer bit for bit.  Details: docs/space.md.
"""
import math
import warnings

import torch

BASE_SCHEDULES = ("warmup_cosine", "constant")
# param-group options that fix the per-step tables; total_steps must agree across groups
SCHEDULE_KEYS = ("total_steps", "warmup_steps", "hold_steps", "base_schedule", "momentum")
_EXTRA_KEY = "deapnos"


def check_horizon(total_steps, warmup_steps=0, hold_steps=0):
    if total_steps is None:
        raise ValueError("total_steps is required: decay functions and the LR schedule depend on the "
                         "training length (pass total_steps=number of optimizer steps)")
    if not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    if not isinstance(warmup_steps, int) or warmup_steps < 0 or warmup_steps > total_steps:
        raise ValueError(f"warmup_steps must be an integer in [0, total_steps={total_steps}], "
                         f"got {warmup_steps!r}")
    if not isinstance(hold_steps, int) or hold_steps < 0 or warmup_steps + hold_steps > total_steps:
        raise ValueError(f"hold_steps must be an integer >= 0 with warmup_steps + hold_steps <= total_steps, "
                         f"got {hold_steps!r}")
    return total_steps


def check_lr(lr):
    if not isinstance(lr, (int, float)) or lr < 0:
        raise ValueError(f"lr must be a non-negative number, got {lr!r}")


def check_options(base_schedule, momentum):
    if base_schedule not in BASE_SCHEDULES:
        raise ValueError(f"base_schedule must be one of {', '.join(BASE_SCHEDULES)}, got {base_schedule!r}")
    if momentum is not None and not (0.0 <= float(momentum) < 1.0):
        raise ValueError(f"momentum must be None (the paper's schedule) or in [0, 1), got {momentum!r}")


def base_lr_table(total_steps, warmup_steps=0, kind="warmup_cosine", hold_steps=0):
    """Multiplier of the peak LR at each step (docs/paper.md §3.1).

    ``warmup_cosine``: t/W during warm-up (step 0 has LR 0, as in the search), 1 during the hold,
    then half a cosine to 0.  The hold goes to the peak LR, as in ``finalOptimizers`` (the search
    code's drop to 0 during the hold is a bug it never triggers).  ``constant``: 1 everywhere.
    """
    check_horizon(total_steps, warmup_steps, hold_steps)
    if kind == "constant":
        return [1.0] * total_steps
    if kind != "warmup_cosine":
        raise ValueError(f"base_schedule must be one of {', '.join(BASE_SCHEDULES)}, got {kind!r}")
    W, H, T = warmup_steps, hold_steps, total_steps
    out = []
    for t in range(T):
        if t < W:
            out.append(t / W)
        elif H > 0 and t <= W + H:
            out.append(1.0)
        else:
            span = T - W - H
            out.append(0.5 * (1.0 + math.cos(math.pi * (t - W - H) / span)) if span > 0 else 1.0)
    return out


def momentum_table(total_steps, warmup_steps=0, hold_steps=0, constant=None):
    """Momentum coefficient m_t (docs/paper.md §3.2): W points 0.95 -> 0.85, H points 0.85, then
    T-W-H points 0.85 -> 0.95, each piece a linspace with both ends included.  ``constant``
    replaces the schedule by a fixed coefficient."""
    check_horizon(total_steps, warmup_steps, hold_steps)
    if constant is not None:
        return [float(constant)] * total_steps
    W, H, T = warmup_steps, hold_steps, total_steps
    return _linspace(0.95, 0.85, W) + [0.85] * H + _linspace(0.85, 0.95, T - W - H)


def _linspace(a, b, n):
    return [float(v) for v in torch.linspace(a, b, n, dtype=torch.float64)] if n > 0 else []


def momentum_increment(kind, u, alpha, M, m_t, out):
    """What momentum kind ``kind`` adds to the weights, as (tensor, factor): w += factor x tensor.

    ``u`` is the update direction and ``alpha`` its factor s lr_t (a float; pass an already scaled
    ``u`` with 1.0).  ``M`` is the momentum buffer, updated in place (unused by ``none``); ``m_t`` the
    momentum coefficient; ``out()`` gives a buffer for the Nesterov kinds.  docs/paper.md §1.5.
    """
    if kind == "none":
        return u, alpha
    M.mul_(m_t).add_(u, alpha=alpha)
    if kind == "mom":
        return M, 1.0
    if kind == "nest":          # the search's variant: w += M_new + s lr U
        return torch.add(M, u, alpha=alpha, out=out()), 1.0
    if kind == "nesterov":      # standard Nesterov: w += m_t M_new + s lr U
        return torch.mul(M, m_t, out=out()).add_(u, alpha=alpha), 1.0
    raise ValueError(f"unknown momentum kind {kind!r}")


def clamp_step(t, total_steps, warned):
    """Index into the per-step tables for step t.  Past the horizon the last entry holds (with
    one warning): LR, momentum and decays stay at their last-step values; nothing raises."""
    if t < total_steps:
        return t
    if not warned:
        warnings.warn(f"optimizer stepped past total_steps={total_steps}: the learning rate, momentum "
                      "and decay values stay at their last-step values", RuntimeWarning, stacklevel=3)
        warned.append(True)
    return total_steps - 1


class FlatState:
    """Flat storage of one bucket: ``state`` slots, ``op_state`` dicts, ``buffers`` and ``scratch``.

    Subclasses implement ``direction(g, t, params_fn) -> U`` over this storage.  An engine whose
    update acts element by element (``elementwise``) may also run over windows of the bucket
    (:meth:`window`), one after another.
    """
    elementwise = False

    def __init__(self, numel, sizes, device, dtype, state_names, stateful_keys, n_buffers, use_scratch,
                 generator=None):
        self.numel = numel
        self.sizes = list(sizes)
        self.device, self.dtype = device, dtype
        self.generator = generator
        self.state = {name: torch.zeros(numel, device=device, dtype=dtype) for name in state_names}
        self.op_state = {key: {} for key in stateful_keys}
        self.buffers = [torch.empty(numel, device=device, dtype=dtype) for _ in range(n_buffers)]
        # temporaries of the kernels, shared: kernels run one at a time
        self.scratch = [torch.empty(numel, device=device, dtype=dtype) for _ in range(2)] if use_scratch else None
        self._den = None
        self._whole = self

    def direction(self, g, t, params_fn):
        raise NotImplementedError

    def direction_scaled(self, g, t, params_fn):
        """(tensor, scalar) whose product is the update direction U."""
        return self.direction(g, t, params_fn), 1.0

    def den_buffer(self):
        """A workspace tensor for a fused division's denominator, allocated on first use."""
        whole = self._whole
        if whole._den is None:
            whole._den = torch.empty(whole.numel, device=whole.device, dtype=whole.dtype)
        return whole._den[:self.numel]

    def window(self, start, stop):
        """This engine over elements [start, stop) of the bucket, for an ``elementwise`` update.

        State slots are views of the bucket's; the workspace is the first stop - start elements of
        the engine's own, shared by all windows (they run one after another), so a window's
        temporaries stay in cache.
        """
        w = object.__new__(type(self))
        w.__dict__.update(self.__dict__)
        n = stop - start
        w.numel, w.sizes = n, [n]
        w.state = {name: flat[start:stop] for name, flat in self.state.items()}
        w.buffers = [b[:n] for b in self.buffers]
        w.scratch = None if self.scratch is None else [b[:n] for b in self.scratch]
        return w


def _compute_dtype(dtype):
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def _cached_views(cache, flat, make):
    """``make(flat)``, the views a step adds through, cached by ``flat``'s storage address (a bucket's
    few flat buffers; the cache is emptied past 64 addresses)."""
    key = flat.data_ptr()
    views = cache.get(key)
    if views is None:
        if len(cache) > 64:
            cache.clear()
        views = cache[key] = make(flat)
    return views


class _Bucket:
    """Parameters of one group on one device with one dtype, their flat gradient and momentum."""

    def __init__(self, params, engine_factory):
        self.params = params
        self.key = tuple(id(p) for p in params)
        self.sizes = [p.numel() for p in params]
        self.numel = sum(self.sizes)
        self.dtype = params[0].dtype
        self.cdtype = _compute_dtype(self.dtype)
        self.device = params[0].device
        self.engine = engine_factory(self.numel, self.sizes, self.device, self.cdtype)
        self.g = torch.empty(self.numel, device=self.device, dtype=self.cdtype)
        self.w = None
        self.M = None
        self._step = None
        self._views = {}
        self._windows = None
        self._params_key = None
        self.flat_grads = None      # each gradient as a flat tensor, for the windows of one step

    def step_buffer(self):
        """A preallocated flat tensor for the Nesterov step (allocating 4 bytes per parameter
        every step costs more than the arithmetic)."""
        if self._step is None:
            self._step = torch.empty(self.numel, device=self.device, dtype=self.cdtype)
        return self._step

    def views(self, flat):
        """Per-parameter views of a flat tensor (cached by storage address)."""
        return _cached_views(self._views, flat,
                             lambda f: [v.view_as(p) for v, p in zip(torch.split(f, self.sizes), self.params)])

    def gather_grads(self):
        grads = [p.grad.reshape(-1) for p in self.params]
        if self.cdtype == self.dtype:
            torch.cat(grads, out=self.g)
        else:
            self.g.copy_(torch.cat(grads))
        return self.g

    def gather_params(self):
        if self.w is None:
            self.w = torch.empty(self.numel, device=self.device, dtype=self.cdtype)
        flat = [p.detach().reshape(-1) for p in self.params]
        if self.cdtype == self.dtype:
            torch.cat(flat, out=self.w)
        else:
            self.w.copy_(torch.cat(flat))
        return self.w

    def targets(self):
        """The tensors an update is added to, matching :meth:`views`."""
        return self.params

    def add_to_params(self, delta, alpha=1.0):
        if self.cdtype != self.dtype:
            delta = (delta * alpha).to(self.dtype) if alpha != 1.0 else delta.to(self.dtype)
            alpha = 1.0
        views = self.views(delta)
        if alpha == 1.0:
            torch._foreach_add_(self.params, views)
        else:
            torch._foreach_add_(self.params, views, alpha=alpha)

    def windows(self, chunk):
        """The bucket as consecutive windows of at most ``chunk`` elements, ready for one step (built
        on first use; their weight slices rebuilt when a parameter's storage changed)."""
        if self._windows is None or self._windows[0] != chunk:
            self._windows = (chunk, [_Window(self, a, min(a + chunk, self.numel))
                                     for a in range(0, self.numel, chunk)])
            self._params_key = None
        key = tuple(p.data_ptr() for p in self.params)
        if key != self._params_key:
            flats = [p.view(-1) for p in self.params]
            for window in self._windows[1]:
                window.targets_ = window.slices(flats)
            self._params_key = key
        return self._windows[1]

    def flat_state(self):
        """Every flat state tensor of the bucket by its per-parameter state key."""
        flats = dict(self.engine.state)
        if self.M is not None:
            flats["M"] = self.M
        for key, sub in self.engine.op_state.items():
            for name, flat in sub.items():
                flats[f"{key}.{name}"] = flat
        return flats


class _Window:
    """Elements [start, stop) of a bucket: one pass of a chunked step, with a bucket's interface.

    The window's gradient, weights, temporaries and update share the first stop - start elements of
    the bucket's buffers; where the window lies inside one parameter, its gradient and weights are
    read in place (no copy).
    """

    def __init__(self, bucket, start, stop):
        self.bucket = bucket
        self.numel = stop - start
        self.cdtype = self.dtype = bucket.dtype
        self.engine = bucket.engine.window(start, stop)
        self.M = None if bucket.M is None else bucket.M[start:stop]
        self.pieces = []    # (parameter index, first and last element in it, first element in the window)
        offset = 0
        for i, n in enumerate(bucket.sizes):
            lo, hi = max(start, offset), min(stop, offset + n)
            if lo < hi:
                self.pieces.append((i, lo - offset, hi - offset, lo - start))
            offset += n
        self._views = {}
        self.targets_ = []   # the window's pieces of the weights (set by _Bucket.windows)

    def slices(self, flats):
        """The window's pieces of per-parameter flat tensors."""
        return [flats[i][a:b] for i, a, b, _ in self.pieces]

    def gather_grads(self):
        parts = self.slices(self.bucket.flat_grads)
        if len(parts) == 1:
            return parts[0]
        return torch.cat(parts, out=self.bucket.g[:self.numel])

    def gather_params(self):
        parts = self.targets_
        if len(parts) == 1:
            return parts[0]
        if self.bucket.w is None:
            self.bucket.w = torch.empty(self.bucket.numel, device=self.bucket.device, dtype=self.cdtype)
        return torch.cat(parts, out=self.bucket.w[:self.numel])

    def step_buffer(self):
        return self.bucket.step_buffer()[:self.numel]

    def views(self, flat):
        return _cached_views(self._views, flat, lambda f: [f[o:o + b - a] for _, a, b, o in self.pieces])

    def targets(self):
        return self.targets_

    def add_to_params(self, delta, alpha=1.0):
        if alpha == 1.0:
            torch._foreach_add_(self.targets_, self.views(delta))
        else:
            torch._foreach_add_(self.targets_, self.views(delta), alpha=alpha)


class FlatOptimizer(torch.optim.Optimizer):
    """Per-step tables x flat-bucket engine = an optimizer.

    Like ``lr`` in torch's Adam, the options of ``SCHEDULE_KEYS`` are ``defaults`` that each param
    group may override, so they are saved in ``state_dict()["param_groups"]``; ``total_steps`` is
    global (the compiled decay tables and the step counter are shared) and every group must agree.
    Per-step tables are built per distinct group setting and cached.

    Before calling ``FlatOptimizer.__init__`` (which validates every group), subclasses set
    ``self.schedule_multipliers`` (the schedule tree on t = 0..total_steps-1, floats), ``self.sign``
    (-1 descends), ``self.momentum_kind`` (none, mom, nest, nesterov) and ``self.identity`` (text
    saved in the state dict); they implement ``_new_engine(numel, sizes, device, dtype)`` and may
    override ``_check_settings(settings)`` to refuse a group setting.
    """

    # an element-wise update on CPU runs in windows of this many bytes per tensor (0: never): a
    # window's gradient, temporaries and update stay in cache (L2) between the passes over it
    chunk_bytes = 1 << 20

    def __init__(self, params, lr, total_steps, warmup_steps=0, base_schedule="warmup_cosine", hold_steps=0,
                 momentum=None, check_finite=False):
        check_lr(lr)
        check_horizon(total_steps, warmup_steps, hold_steps)
        check_options(base_schedule, momentum)
        self.total_steps = total_steps
        self._group_tables = {}
        defaults = dict(lr=lr, total_steps=total_steps, warmup_steps=warmup_steps, hold_steps=hold_steps,
                        base_schedule=base_schedule, momentum=momentum)
        super().__init__(params, defaults)
        self.check_finite = check_finite
        self.diverged = False
        self.divergence = None
        self.step_count = 0
        self.generator = None
        self._buckets = {}
        self._warned = []

    def add_param_group(self, param_group):
        """Add a group (torch's semantics); its lr and schedule options are checked first."""
        index = len(self.param_groups)
        settings = {k: param_group.get(k, self.defaults[k]) for k in ("lr",) + SCHEDULE_KEYS}
        try:
            check_lr(settings["lr"])
        except ValueError as exc:
            raise ValueError(f"param group {index}: {exc}" if index else str(exc)) from None
        self._tables_of(settings, index)
        super().add_param_group(param_group)

    def _check_settings(self, settings):
        """Raise ValueError for group settings this optimizer cannot run (none refused here)."""

    def _tables_of(self, group, index=0):
        """(LR multipliers, momentum coefficients) over t = 0..total_steps-1 for a group's settings."""
        key = tuple(group[k] for k in SCHEDULE_KEYS)
        tables = self._group_tables.get(key)
        if tables is None:
            settings = dict(zip(SCHEDULE_KEYS, key))
            T, W, H = settings["total_steps"], settings["warmup_steps"], settings["hold_steps"]
            try:
                if T != self.total_steps:
                    raise ValueError(f"param group {index} has total_steps={T!r}, but total_steps is global to "
                                     f"the optimizer (total_steps={self.total_steps!r}): the compiled decay tables "
                                     "and the step counter are shared by all param groups")
                check_horizon(T, W, H)
                check_options(settings["base_schedule"], settings["momentum"])
                self._check_settings(settings)
            except ValueError as exc:
                if index == 0 or str(exc).startswith("param group"):
                    raise
                raise ValueError(f"param group {index}: {exc}") from None
            lr_mults = [b * m for b, m in zip(base_lr_table(T, W, settings["base_schedule"], H),
                                              self.schedule_multipliers)]
            tables = (lr_mults, momentum_table(T, W, H, settings["momentum"]))
            self._group_tables[key] = tables
        return tables

    @property
    def lr_multipliers(self):
        """Param group 0's LR multiplier at each step (base schedule x schedule tree)."""
        return self._tables_of(self.param_groups[0])[0]

    @property
    def momentum_values(self):
        """Param group 0's momentum coefficient at each step."""
        return self._tables_of(self.param_groups[0])[1]

    def _new_engine(self, numel, sizes, device, dtype):
        raise NotImplementedError

    def _make_generator(self, seed):
        device = next((p.device for g in self.param_groups for p in g["params"]), torch.device("cpu"))
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def lr_at(self, step, group=0):
        """The effective LR of param group ``group`` at 0-based step ``step``."""
        t = min(step, self.total_steps - 1)
        g = self.param_groups[group]
        return g["lr"] * self._tables_of(g, group)[0][t]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        t = clamp_step(self.step_count, self.total_steps, self._warned)
        for gi, group in enumerate(self.param_groups):
            lr_mults, moms = self._tables_of(group, gi)
            lr_t, m_t = group["lr"] * lr_mults[t], moms[t]
            for bucket in self._buckets_of(gi, group):
                self._step_bucket(bucket, t, lr_t, m_t)
        self.step_count += 1
        return loss

    def _step_bucket(self, bucket, t, lr_t, m_t):
        if not self._chunked(bucket):
            self._step_part(bucket, t, lr_t, m_t)
            return
        # the whole step, window after window: each window's temporaries stay in cache
        bucket.flat_grads = [p.grad.reshape(-1) for p in bucket.params]
        try:
            for window in bucket.windows(self.chunk_bytes // bucket.g.element_size()):
                self._step_part(window, t, lr_t, m_t)
        finally:
            bucket.flat_grads = None

    def _chunked(self, bucket):
        """Whether the bucket's step runs in windows: an element-wise update on CPU (on an accelerator
        one kernel over the whole bucket is faster), larger than a window, without check_finite (it
        must see the whole update before applying any), in the parameters' own dtype, with contiguous
        parameters, and with the bucket's own methods (a subclass may replace them)."""
        return (self.chunk_bytes and not self.check_finite and bucket.device.type == "cpu"
                and bucket.cdtype == bucket.dtype and bucket.numel * bucket.g.element_size() > self.chunk_bytes
                and getattr(bucket.engine, "elementwise", False)
                and all(p.is_contiguous() for p in bucket.params)
                and not {"add_to_params", "gather_grads"} & vars(bucket).keys()
                and not {"direction_parts", "direction_scaled"} & vars(bucket.engine).keys())

    def _step_part(self, part, t, lr_t, m_t):
        """One step over a bucket or a window of one."""
        g = part.gather_grads()
        fused = None if self.check_finite else getattr(part.engine, "increment", None)
        if fused is not None:   # an engine that computes the whole increment (momentum included) at once
            delta = fused(g, t, part.gather_params, self.momentum_kind, part.M, m_t, self.sign * lr_t)
            if delta is not None:
                part.add_to_params(delta)
                return
        if self.momentum_kind == "none" and not self.check_finite and part.cdtype == part.dtype:
            # an update ending in a division goes to the weights as one addcdiv (no quotient pass)
            parts = getattr(part.engine, "direction_parts", None)
            parts = parts(g, t, part.gather_params) if parts is not None else None
            if parts is not None:
                num, den, scale = parts
                torch._foreach_addcdiv_(part.targets(), part.views(num), part.views(den),
                                        value=self.sign * lr_t * scale)
                return
        u, scale = part.engine.direction_scaled(g, t, part.gather_params)
        if self.check_finite and not (math.isfinite(scale) and bool(torch.isfinite(u).all())):
            self.diverged = True
            if self.divergence is None:
                self.divergence = f"step {self.step_count}: non-finite update from {self.identity!r}"
            return
        alpha = self.sign * lr_t * scale
        if self.momentum_kind == "nesterov" and part.cdtype == part.dtype:
            # w += m_t M_new + alpha U as two passes over the weights, not three that build the sum first
            part.M.mul_(m_t).add_(u, alpha=alpha)
            part.add_to_params(part.M, m_t)
            part.add_to_params(u, alpha)
            return
        delta, alpha = momentum_increment(self.momentum_kind, u, alpha, part.M, m_t, part.step_buffer)
        part.add_to_params(delta, alpha)

    def _buckets_of(self, gi, group):
        by_kind = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
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

    def _make_bucket(self, params):
        """A new flat bucket.  State already held per parameter (from an older bucket or from
        ``load_state_dict``) is gathered into it, so rebuilding never loses state."""
        bucket = _Bucket(params, self._new_engine)
        engine = bucket.engine

        def gather(key, target):
            parts = []
            for p in params:
                saved = self.state[p].get(key) if p in self.state else None
                parts.append(saved.reshape(-1).to(target.dtype) if saved is not None
                             else torch.zeros(p.numel(), device=target.device, dtype=target.dtype))
            target.copy_(torch.cat(parts))

        for name, flat in engine.state.items():
            gather(name, flat)
        if self.momentum_kind != "none":
            bucket.M = torch.zeros(bucket.numel, device=bucket.device, dtype=bucket.cdtype)
            gather("M", bucket.M)
        for key in engine.op_state:
            names = {k.split(".", 1)[1] for p in params for k in self.state.get(p, {}) if k.startswith(key + ".")}
            sub = {}
            for name in sorted(names):
                sub[name] = torch.zeros(bucket.numel, device=bucket.device, dtype=bucket.cdtype)
                gather(f"{key}.{name}", sub[name])
            engine.op_state[key] = sub
        self._expose_state(bucket)
        return bucket

    def _expose_state(self, bucket):
        """Point ``self.state[p]`` at views of the bucket's flat state (what state_dict saves)."""
        for name, flat in bucket.flat_state().items():
            for p, view in zip(bucket.params, torch.split(flat, bucket.sizes)):
                self.state[p][name] = view.view(p.shape)

    def state_dict(self):
        for bucket in self._buckets.values():   # stateful ops create state on first use
            self._expose_state(bucket)
        sd = super().state_dict()
        sd[_EXTRA_KEY] = {"step": self.step_count, "genome": self.identity, "momentum_kind": self.momentum_kind,
                          "generator": self.generator.get_state() if self.generator is not None else None,
                          "diverged": self.diverged, "divergence": self.divergence}
        return sd

    def load_state_dict(self, state_dict):
        extra = state_dict.get(_EXTRA_KEY)
        if extra is None:
            raise ValueError("not a deapnos optimizer state dict (no 'deapnos' entry)")
        if extra["genome"] != self.identity:
            kind = extra.get("momentum_kind")
            other = f" (momentum kind {kind!r}, this one {self.momentum_kind!r})" if (
                kind is not None and kind != self.momentum_kind) else ""
            raise ValueError(f"state dict is for genome {extra['genome']!r}, this optimizer runs "
                             f"{self.identity!r}{other}")
        sd = {k: v for k, v in state_dict.items() if k != _EXTRA_KEY}
        sd["param_groups"] = self._checked_groups(sd["param_groups"])
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

    def _checked_groups(self, saved_groups):
        """The saved param groups, refused when a schedule option differs from this optimizer's (the
        per-step tables depend on it).  Groups saved before these options were stored get this
        optimizer's values, with a warning."""
        if len(saved_groups) != len(self.param_groups):
            return saved_groups                  # torch's load_state_dict says what is wrong
        missing = [k for k in SCHEDULE_KEYS if any(k not in g for g in saved_groups)]
        if missing:
            warnings.warn(f"state dict param groups have no {', '.join(missing)} (saved by an older deapnos): "
                          "loaded without checking them against this optimizer, whose values are kept",
                          UserWarning, stacklevel=3)
        out = []
        for i, (saved, mine) in enumerate(zip(saved_groups, self.param_groups)):
            for k in SCHEDULE_KEYS:
                if k in saved and saved[k] != mine[k]:
                    raise ValueError(f"state dict param group {i} was saved with {k}={saved[k]!r}, but this "
                                     f"optimizer has {k}={mine[k]!r}; the per-step tables depend on it, so build "
                                     f"the optimizer with {k}={saved[k]!r} to resume that run")
            out.append({**{k: mine[k] for k in SCHEDULE_KEYS}, **saved})
        return out
