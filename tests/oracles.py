"""Hand-written reference implementations of the zoo, straight from paper-spec formulas.

Plain torch and ``math`` only: nothing here imports deapnos, so a wrong deapnos kernel, compiler,
schedule or genome cannot hide behind the same code in the oracle.  Where the spec formula has no
epsilon, neither has the oracle (the zoo's sign-safe division differs there by 1e-7 in a
denominator; the tests' tolerances cover that, and only that).
"""
from __future__ import annotations

import math

import torch

# ---------------------------------------------------------------------------------------------
# Decay functions, paper-spec §2.1 (python floats, float64)
# ---------------------------------------------------------------------------------------------


def a1(t, T): return 1.0 - t / T
def a2(t, T): return t / T
def a3(t, T): return 0.5 * (1.0 + math.cos(math.pi * t / T))
def a4(t, T): return 0.5 * (1.0 - math.cos(math.pi * t / T))
def a5(t, T): return 0.5 * (1.0 + math.cos(2.0 * math.pi * t / T))
def a6(t, T): return 0.5 * (1.0 - math.cos(2.0 * math.pi * t / T))
def a7(t, T): return 0.5 * (1.0 + math.cos(math.pi * ((2 * t) % T) / T))
def a8(t, T): return 0.5 * (1.0 - math.cos(math.pi * ((2 * t) % T) / T))
def a9(t, T): return 1.0 - ((2 * t) % T) / T
def a10(t, T): return ((2 * t) % T) / T
def a11(t, T): return 0.01 ** (t / T)
def a12(t, T): return 1.0 - 0.01 ** (t / T)


def _beta_d(t, T):
    return 0.95 * (1.0 - (t + 1) / T)


def a13(t, T):
    b = _beta_d(t, T)
    return b / ((1.0 - 0.95) + b)


def a14(t, T):
    return 0.95 - a13(t, T)


def a14p(t, T):
    """a14' of EvolvedLRSchedules: (beta_0 - beta_d)/((1 - beta_0) + beta_d), 19 at t = T-1."""
    b = _beta_d(t, T)
    return (0.95 - b) / ((1.0 - 0.95) + b)


def sigmoid(x): return 1.0 / (1.0 + math.exp(-x))
def dt(x): return 1.0 - math.tanh(x) ** 2
def ds(x): return 1.0 / (1.0 + abs(x))
def softsign(x): return x / (1.0 + abs(x))


# ---------------------------------------------------------------------------------------------
# Base LR and momentum schedules, paper-spec §3.1-3.2 (hold H = 0)
# ---------------------------------------------------------------------------------------------

def base_lr(t, T, W, kind="warmup_cosine"):
    if kind == "constant":
        return 1.0
    if t < W:
        return t / W
    return 0.5 * (1.0 + math.cos(math.pi * (t - W) / (T - W)))


def _linspace(a, b, n):
    if n == 1:
        return [a]
    return [a + (b - a) * i / (n - 1) for i in range(n)]


def momentum_coef(t, T, W):
    """m_t: W points 0.95 -> 0.85, then T-W points 0.85 -> 0.95, both ends included."""
    table = (_linspace(0.95, 0.85, W) if W else []) + _linspace(0.85, 0.95, T - W)
    return table[t]


# ---------------------------------------------------------------------------------------------
# EvolvedLRSchedules, paper-spec §3.3: multiplier of type k (lr(k+1) in the zoo)
# ---------------------------------------------------------------------------------------------

def lr_multiplier(k, t, T):
    if k == 0:
        return math.erfc(math.erfc(a4(t, T))) / dt(a8(t, T))
    if k == 1:
        return math.erfc(math.erfc(a4(t, T))) / (dt(a8(t, T)) * dt(a4(t, T)))
    if k == 2:
        return math.atan(a2(t, T)) / (dt(a10(t, T)) * math.sqrt(ds(a14p(t, T))))
    if k == 3:
        return sigmoid(a2(t, T)) ** 2 / sigmoid(2.0 * softsign(a1(t, T)))
    if k == 4:
        return 1.0 / math.sqrt(math.erf(a11(t, T)))
    if k == 5:
        return math.atan(a2(t, T)) * math.erfc(a6(t, T)) / math.sqrt(ds(a6(t, T)))
    if k == 6:
        return 1.0 / math.sqrt(ds(a10(t, T)))
    if k == 7:
        return 1.0 / (math.sqrt(softsign(math.atan(a12(t, T)))) + 1e-7)
    if k == 8:
        return math.tanh(max(a10(t, T), a6(t, T)))
    raise ValueError(k)


def schedule_lr(k, t, T, W, base="warmup_cosine"):
    return base_lr(t, T, W, base) * lr_multiplier(k, t, T)


# ---------------------------------------------------------------------------------------------
# Optimizers, paper-spec §4 (and the baselines)
# ---------------------------------------------------------------------------------------------

NESTEROV = {"opt9", "opt10", "nesterov"}
HEAVY_BALL = {"momentum"}
LR_TYPE0 = {"opt4", "opt5", "opt6"}
NAMES = ("adam", "rmsprop", "sgd", "momentum", "nesterov", "qhm", "powersign", "addsign",
         "signsgd", "signum", "lion", "adamw", "a1", "a2", "a3", "a4", "a5") + tuple(f"opt{i}" for i in range(1, 11))


def _clip(x, c):
    """tf.clip_by_value(x, -c, c) for c >= 0."""
    return torch.minimum(torch.maximum(x, -c), c)


def _softsign(x):
    return x / (1.0 + x.abs())


class SpecOptimizer:
    """One optimizer of the zoo, written from the spec: w <- w - eta_t U (or the momentum forms).

    ``use_decay``: finalOptimizers' switch (decay factors and Opt4-6's LR multiplier).
    ``opt3_l``: ``"g3"`` (the fix the zoo uses) or ``"g2"`` (the original's EMA of g^2).
    ``momentum``: None for the §3.2 schedule, or a constant coefficient.
    """

    def __init__(self, params, name, lr, total_steps, warmup_steps=0, base="warmup_cosine",
                 use_decay=True, momentum=None, opt3_l="g3"):
        if name not in NAMES:
            raise ValueError(name)
        self.params = list(params)
        self.name, self.lr, self.T, self.W, self.base = name, lr, total_steps, warmup_steps, base
        self.use_decay, self.momentum, self.opt3_l = use_decay, momentum, opt3_l
        self.t = 0
        self.state = [dict(v=torch.zeros_like(p), s=torch.zeros_like(p), l=torch.zeros_like(p),
                           M=torch.zeros_like(p), lion_m=torch.zeros_like(p)) for p in self.params]

    def eta(self, t):
        mult = 1.0
        if self.name in LR_TYPE0 and self.use_decay:
            mult = lr_multiplier(0, t, self.T)
        return self.lr * base_lr(t, self.T, self.W, self.base) * mult

    def m(self, t):
        return self.momentum if self.momentum is not None else momentum_coef(t, self.T, self.W)

    def direction(self, g, w, st, t):
        T, n, d = self.T, self.name, self.use_decay
        if n == "lion":
            # Lion (Chen et al. 2023, Alg. 2): c = sign(b1 m + (1-b1) g) with the old m, then
            # m <- b2 m + (1-b2) g; decoupled weight decay 0.1 added to the direction
            c = torch.sign(0.9 * st["lion_m"] + 0.1 * g)
            st["lion_m"] = 0.99 * st["lion_m"] + 0.01 * g
            return c + 0.1 * w
        st["v"] = 0.9 * st["v"] + 0.1 * g
        st["s"] = 0.99 * st["s"] + 0.01 * g * g
        st["l"] = 0.999 * st["l"] + 0.001 * (g ** 3 if self.opt3_l == "g3" else g * g)
        vh = st["v"] / (1.0 - 0.9 ** (t + 1))
        sh = st["s"] / (1.0 - 0.99 ** (t + 1))
        lh = st["l"] / (1.0 - 0.999 ** (t + 1))
        q = 0.3 * g + 0.7 * vh
        if n == "adam":
            return vh / (sh.sqrt() + 1e-7)
        if n == "adamw":
            return vh / (sh.sqrt() + 1e-7) + 0.01 * w
        if n == "signsgd":
            return torch.sign(g)
        if n == "signum":        # Bernstein et al. 2018, Alg. 3: the sign of the updated momentum
            return torch.sign(st["v"])
        if n == "rmsprop":
            return g / (sh.sqrt() + 1e-7)
        if n in ("sgd", "momentum", "nesterov"):
            return g
        if n == "qhm":
            return q
        if n == "powersign":
            return torch.exp(torch.sign(g) * torch.sign(vh)) * g
        if n == "addsign":
            return (1.0 + torch.sign(g) * torch.sign(vh)) * g
        if n == "a1":
            return _clip(vh, sh.sqrt() + 1e-7)
        if n == "a2":
            return _clip(vh, torch.log(sh + 1e-7).abs())
        if n == "a3":
            return _clip(vh, torch.log(sh + 1e-7).abs().sqrt())
        if n == "a4":
            return _clip(vh, torch.sigmoid(sh + 1e-7))
        if n == "a5":
            u = _clip(vh, sh.sqrt() + 1e-7)
            norm = float(torch.linalg.vector_norm(u))
            return u * (1.0 / max(norm, 1.0))
        if n == "opt1":
            c = (1e-5 * w - 0.05 * g * g + 0.95 * sh).abs()
            return q + _softsign(_clip(1e-5 * w, c))
        if n == "opt2":
            c = 1e-5 * w - (0.05 * g * g + 0.95 * sh)
            return q + _softsign(1e-5 * w / torch.sqrt(1.0 + c * c))
        if n == "opt3":
            c = 1e-5 * w - (0.01 * g ** 3 + 0.99 * lh)
            return q + _softsign(1e-5 * w / torch.sqrt(1.0 + c * c))
        if n == "opt4":
            phi = math.atan(a13(t, T))          # not gated by use_decay in the original
            c = (phi * torch.exp(vh)).abs()
            return q / _clip(torch.full_like(c, 2.0), c)
        if n == "opt5":
            return q / torch.minimum(torch.full_like(vh, 2.0), torch.exp(vh))
        if n == "opt6":
            psi = dt(a4(t, T)) if d else 1.0
            return q / (psi * torch.exp(1e-4 * w)).abs()
        if n in ("opt7", "opt8"):
            alpha = max(a6(t, T), a10(t, T)) if d else 1.0
            inner = alpha * torch.asinh(q)
            return torch.tanh(inner) if n == "opt7" else torch.asinh(inner)
        if n == "opt9":
            alpha = math.erfc(a11(t, T)) if d else 1.0
            return alpha * g * torch.exp(torch.atan(0.05 * g * g + 0.95 * sh))
        if n == "opt10":
            alpha = a13(t, T) * a2(t, T) if d else 1.0
            return torch.special.i1e(torch.special.i1e(alpha * g))
        raise AssertionError(n)

    @torch.no_grad()
    def step(self):
        t = self.t
        eta, m = self.eta(t), self.m(t)
        for p, st in zip(self.params, self.state):
            if p.grad is None:
                continue
            u = self.direction(p.grad, p.detach().clone(), st, t)
            if self.name in NESTEROV:
                st["M"] = m * st["M"] - eta * u
                p.add_(m * st["M"] - eta * u)
            elif self.name in HEAVY_BALL:
                st["M"] = m * st["M"] - eta * u
                p.add_(st["M"])
            else:
                p.add_(-eta * u)
        self.t += 1
