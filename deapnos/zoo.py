"""Named genomes: baselines, the paper's published optimizers and its evolved LR schedules.

A registry in the style of timm's ``create_model`` / ``list_models``: :func:`names`, :func:`get`,
:func:`describe` for optimizers, :func:`schedule_names` and :func:`schedule` (a ``LambdaLR`` for any
torch optimizer) for the schedules lr1..lr9.  Entries, formula conventions and the sign-safe division:
docs/space.md, "The zoo"; the published forms: docs/paper.md §3.3, §4.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from .hookspecs import hookimpl
from .optim.horizon import OPT4_UPDATE, horizon_problem
from .registry import BUILTIN, Registry, UnknownNameError
from .space.genome import Genome, parse_tree, tree_text
from .space.psets import SearchSpace, builtin_space

__all__ = ["ZooEntry", "ScheduleEntry", "UnknownNameError", "CompatError", "names", "get", "info", "describe",
           "text", "schedule_names", "schedule", "get_schedule_tree", "schedule_info", "horizon_problem", "KINDS",
           "OPTIMIZERS", "SCHEDULES"]

KINDS = ("baseline", "adamclip", "evolved")


@dataclass(frozen=True)
class ZooEntry:
    """One named optimizer.

    ``text``: the genome in text form (the paper's intent: decays on).  ``no_decay_text``: the
    genome that ``finalOptimizers`` runs with its default ``use_decay=False`` (None: the same).
    ``formula``: the update rule in words.  ``notes``: where the genome departs from the source
    formula, and why.  ``source``: where the formula comes from.
    """
    name: str
    kind: str
    text: str
    formula: str
    source: str
    notes: str = ""
    no_decay_text: str | None = None


@dataclass(frozen=True)
class ScheduleEntry:
    """One named LR-schedule multiplier (a schedule tree over a1..a14, a14p, one, two)."""
    name: str
    text: str
    formula: str
    source: str
    notes: str = ""


# ---------------------------------------------------------------------------------------------
# LR schedules: EvolvedLRSchedules type 0..8 (docs/paper.md §3.3) as lr1..lr9
# ---------------------------------------------------------------------------------------------

_SCHEDULE_NOTE = ("eta_t = lr x base(t) x multiplier(t); base is the warm-up + cosine schedule of "
                  "docs/paper.md §3.1.  The original callback writes eta_t + 1e-7; the +1e-7 is dropped.  "
                  "dt(x) = 1 - tanh(x)^2, ds(x) = 1/(1+|x|).")

#: the zoo's LR schedules (filled here, never changed; a run's plugins extend a copy)
SCHEDULES: Registry[ScheduleEntry] = Registry("zoo schedule")
for _s in (
    ScheduleEntry("lr1", "div(erfc(erfc(a4)), dtanh(a8))",
                  "erfc(erfc(a4)) / dt(a8)",
                  "docs/paper.md §3.3, EvolvedLRSchedules type 0; also the LR multiplier of Opt4-Opt6",
                  "dt(a8) >= 0.41, so the sign-safe division's 1e-7 changes the value by < 3e-7 relative."),
    ScheduleEntry("lr2", "div(erfc(erfc(a4)), mul(dtanh(a8), dtanh(a4)))",
                  "erfc(erfc(a4)) / (dt(a8) dt(a4))",
                  "docs/paper.md §3.3, EvolvedLRSchedules type 1",
                  "Sign-safe division: 1e-7 added to a denominator >= 0.17."),
    ScheduleEntry("lr3", "div(atan(a2), mul(dtanh(a10), sqrt(dsoft(a14p))))",
                  "atan(a2) / (dt(a10) sqrt(ds(a14')))",
                  "docs/paper.md §3.3, EvolvedLRSchedules type 2",
                  "a14' (leaf a14p) = (0.95 - beta_d)/(0.05 + beta_d), beta_d = 0.95 (1 - (t+1)/T): the "
                  "EvolvedLRSchedules variant of a14, rising from about 0 to 19 at t = T-1 (docs/paper.md §2.1), "
                  "not the search's a14 = 0.95 - a13.  Sign-safe division: 1e-7 added to a positive "
                  "denominator."),
    ScheduleEntry("lr4", "div(square(sigmoid(a2)), sigmoid(mul(two, softsign(a1))))",
                  "sigmoid(a2)^2 / sigmoid(2 softsign(a1))",
                  "docs/paper.md §3.3, EvolvedLRSchedules type 3",
                  "Sign-safe division: 1e-7 added to a denominator >= 0.5."),
    ScheduleEntry("lr5", "div(one, sqrt(erf(a11)))",
                  "1 / sqrt(erf(a11))",
                  "docs/paper.md §3.3, EvolvedLRSchedules type 4",
                  "Sign-safe division: 1e-7 added to a denominator >= 0.1."),
    ScheduleEntry("lr6", "div(mul(atan(a2), erfc(a6)), sqrt(dsoft(a6)))",
                  "atan(a2) erfc(a6) / sqrt(ds(a6))",
                  "docs/paper.md §3.3, EvolvedLRSchedules type 5",
                  "Sign-safe division: 1e-7 added to a denominator >= 0.7."),
    ScheduleEntry("lr7", "div(one, sqrt(dsoft(a10)))",
                  "1 / sqrt(ds(a10))",
                  "docs/paper.md §3.3, EvolvedLRSchedules type 6",
                  "Sign-safe division: 1e-7 added to a denominator >= 0.7."),
    ScheduleEntry("lr8", "div(one, sqrt(softsign(atan(a12))))",
                  "1 / (sqrt(softsign(atan(a12))) + 1e-7)",
                  "docs/paper.md §3.3, EvolvedLRSchedules type 7",
                  "Exact: the sign-safe division of a value >= 0 is the formula's + 1e-7.  At t = 0, a12 = 0 "
                  "and the multiplier is 1e7; the warm-up makes the LR 0 there when warmup_steps > 0."),
    ScheduleEntry("lr9", "tanh(max(a10, a6))",
                  "tanh(max(a10, a6))",
                  "docs/paper.md §3.3, EvolvedLRSchedules type 8"),
):
    SCHEDULES.register(_s.name, _s)
del _s
_LR_TYPE0 = SCHEDULES.get("lr1").text


# ---------------------------------------------------------------------------------------------
# Optimizers
# ---------------------------------------------------------------------------------------------

_DIV_NOTE = "Sign-safe division: the denominator gets + 1e-7 (it is >= 0 here)."

#: the zoo's optimizers (filled here, never changed; a run's plugins extend a copy)
OPTIMIZERS: Registry[ZooEntry] = Registry("zoo optimizer")
for _e in (
    # -- baselines -------------------------------------------------------------------------
    ZooEntry("adam", "baseline", "none ~ div(v_hat, sqrt(s_hat))",
             "U = v^ / (sqrt(s^) + 1e-7)",
             "Adam (Kingma & Ba) with the search space's EMAs",
             "Equals torch.optim.Adam(betas=(0.9, 0.99), eps=1e-7) with base_schedule='constant': "
             "beta2 is 0.99 as in the search's s (docs/paper.md §1.2), not torch's default 0.999."),
    ZooEntry("rmsprop", "baseline", "none ~ div(g, sqrt(s_hat))",
             "U = g / (sqrt(s^) + 1e-7)",
             "RMSProp, bias-corrected second moment (beta 0.99)",
             "Bias-corrected s^ (not torch.optim.RMSprop's raw EMA); eps 1e-7 from the sign-safe division."),
    ZooEntry("sgd", "baseline", "none ~ g",
             "U = g", "plain SGD"),
    ZooEntry("momentum", "baseline", "mom ~ g",
             "U = g;  M <- m_t M - eta_t U;  w <- w + M",
             "heavy-ball momentum (docs/paper.md §1.5 type 'Mom')",
             "With momentum=0.9 (a constant) this is torch.optim.SGD(momentum=0.9); with momentum=None "
             "m_t follows the 0.95 -> 0.85 -> 0.95 schedule of docs/paper.md §3.2."),
    ZooEntry("nesterov", "baseline", "nesterov ~ g",
             "U = g;  M <- m_t M - eta_t U;  w <- w + m_t M - eta_t U",
             "standard Nesterov momentum (the form of Opt9/Opt10)",
             "With momentum=0.9 this is torch.optim.SGD(momentum=0.9, nesterov=True).  Not the search's "
             "'Nest' kind (docs/paper.md §1.5)."),
    ZooEntry("qhm", "baseline", "none ~ qh_v",
             "U = q = 0.3 g + 0.7 v^",
             "quasi-hyperbolic momentum (Ma & Yarats), nu = 0.7, beta = 0.9: operand 14 of docs/paper.md §1.2",
             "The momentum buffer is the bias-corrected EMA v^."),
    ZooEntry("powersign", "baseline", "none ~ mul(exp(mul(sign_g, sign_v_hat)), g)",
             "U = exp(sign(g) sign(v^)) g",
             "PowerSign (Bello et al., Neural Optimizer Search, 2017), base e, with v^ as the momentum"),
    ZooEntry("addsign", "baseline", "none ~ mul(add(one, mul(sign_g, sign_v_hat)), g)",
             "U = (1 + sign(g) sign(v^)) g",
             "AddSign (Bello et al., 2017), alpha = 1, with v^ as the momentum"),
    # -- stronger yardsticks: sign methods, Lion, AdamW ---------------------------------------
    ZooEntry("signsgd", "baseline", "none ~ sign_g",
             "U = sign(g)",
             "signSGD (Bernstein et al., 2018)",
             "sign(0) = 0, as torch.sign."),
    ZooEntry("signum", "baseline", "none ~ sign_v_hat",
             "v <- 0.9 v + 0.1 g;  U = sign(v)",
             "Signum, the sign of momentum (Bernstein et al., 2018), beta = 0.9",
             "beta 0.9, the signSGD paper's default and the search's v; the bias correction of v^ does not "
             "change its sign.  No weight decay."),
    ZooEntry("lion", "baseline", "none ~ add(sign_lion, w_1e1)",
             "U = sign(0.9 m + 0.1 g) + 0.1 w;  then m <- 0.99 m + 0.01 g",
             "Lion (Chen et al., 2023, \"Symbolic Discovery of Optimization Algorithms\"), "
             "beta1 = 0.9, beta2 = 0.99, decoupled weight decay 0.1",
             "The paper's default betas.  Weight decay 0.1: Lion's authors set it 3-10x AdamW's (here 0.01) "
             "because Lion's tuned LR is 3-10x smaller, which keeps lr x decay alike.  The decay is decoupled "
             "as in Lion: w <- w - eta_t (sign(...) + 0.1 w).  The operand sign_lion reads m after this "
             "step's update (m_t + 0.1 g has the sign of 0.9 m_{t-1} + 0.1 g)."),
    ZooEntry("adamw", "baseline", "none ~ add(div(v_hat, sqrt(s_hat)), w_1e2)",
             "U = v^ / (sqrt(s^) + 1e-7) + 0.01 w",
             "AdamW (Loshchilov & Hutter, \"Decoupled Weight Decay Regularization\"), weight decay 0.01",
             "Equals torch.optim.AdamW(betas=(0.9, 0.99), eps=1e-7, weight_decay=0.01) with "
             "base_schedule='constant' (torch's default decay 0.01; beta2 0.99 as the search's s, as in the "
             "zoo's adam).  torch shrinks w by (1 - lr 0.01) before the Adam step: the same update."),
    # -- AdamClip variants 0..4 = A1..A5 (docs/paper.md §4.2) ---------------------------------
    ZooEntry("a1", "adamclip", "none ~ clip(v_hat, sqrt(s_hat))",
             "U = clip(v^, -c, c),  c = sqrt(s^) + 1e-7",
             "docs/paper.md §4.2, AdamClip variant 0",
             "The space writes c = sqrt(s^) without the + 1e-7: the clip bound differs by 1e-7."),
    ZooEntry("a2", "adamclip", "none ~ clip(v_hat, ln(s_hat))",
             "U = clip(v^, -c, c),  c = |ln(s^ + 1e-7)|",
             "docs/paper.md §4.2, AdamClip variant 1",
             "Exact: ln is ln(|x| + 1e-7) and clip bounds by |b|."),
    ZooEntry("a3", "adamclip", "none ~ clip(v_hat, sqrt(ln(s_hat)))",
             "U = clip(v^, -c, c),  c = sqrt(|ln(s^ + 1e-7)|)",
             "docs/paper.md §4.2, AdamClip variant 2",
             "Exact: ln is ln(|x| + 1e-7) and sqrt is sqrt(|x|)."),
    ZooEntry("a4", "adamclip", "none ~ clip(v_hat, sigmoid(s_hat))",
             "U = clip(v^, -c, c),  c = sigmoid(s^ + 1e-7), in (0.5, 1)",
             "docs/paper.md §4.2, AdamClip variant 3",
             "The space writes sigmoid(s^) without the + 1e-7 inside: c differs by < 2.5e-8."),
    ZooEntry("a5", "adamclip", "none ~ norm(clip(v_hat, sqrt(s_hat)))",
             "U = clip_by_norm(clip(v^, -c, c), 1),  c = sqrt(s^) + 1e-7; the L2 norm is taken over each "
             "parameter tensor",
             "docs/paper.md §4.2, AdamClip variant 4",
             "As a1, the clip bound lacks the + 1e-7."),
    # -- Opt1..Opt10 (docs/paper.md §4.3), decays on ------------------------------------------
    ZooEntry("opt1", "evolved", "none ~ add(qh_v, softsign(clip(w_1e5, add(w_1e5, mix95(s_hat, neg(g2))))))",
             "c = |1e-5 w - 0.05 g^2 + 0.95 s^|;  U = q + softsign(clip(1e-5 w, -c, c))",
             "docs/paper.md §4.3, Opt1",
             "Reproduces the original's parenthesisation as written (1e-5 w - 0.05 g^2 + 0.95 s^, "
             "unlike Opt2's 1e-5 w - (0.05 g^2 + 0.95 s^)), which may be a slip of the original (docs/paper.md §4.3).  "
             "mix95(s^, -g^2) = 0.95 s^ - 0.05 g^2."),
    ZooEntry("opt2", "evolved", "none ~ add(qh_v, softsign(divsqrt(w_1e5, sub(w_1e5, qh_s))))",
             "c = 1e-5 w - (0.05 g^2 + 0.95 s^);  U = q + softsign(1e-5 w / sqrt(1 + c^2))",
             "docs/paper.md §4.3, Opt2"),
    ZooEntry("opt3", "evolved", "none ~ add(qh_v, softsign(divsqrt(w_1e5, sub(w_1e5, qh_lam))))",
             "l_t = 0.999 l + 0.001 g^3, l^ = l_t/(1-0.999^(t+1));  c = 1e-5 w - (0.01 g^3 + 0.99 l^);  "
             "U = q + softsign(1e-5 w / sqrt(1 + c^2))",
             "docs/paper.md §4.3, Opt3 (bug fixed)",
             "FIXED: finalOptimizers' Opt3 keeps l as an EMA of g^2 while mixing it with 0.01 g^3 (a bug: "
             "docs/paper.md §4.3); this entry uses the EMA of g^3, the search's lambda (operand qh_lam), as "
             "the search intended.  The original's g^2 EMA is not expressible in the search space."),
    ZooEntry("opt4", "evolved", f"{OPT4_UPDATE} | lr = {_LR_TYPE0}",
             "c = |atan(a13) exp(v^)|;  U = q / clip(2, -c, c) = q / min(2, c);  eta_t = lr x base(t) x "
             "erfc(erfc(a4)) / dt(a8)  (schedule lr1)",
             "docs/paper.md §4.3, Opt4, use_decay=True",
             "Last-step guard: a13 reaches 0 at t = T-1, where the original divides by zero (U = inf; with "
             "the sign-safe 1e-7 alone, U = 1e7 q).  This entry uses atan(max(a13, a1 a2)) for atan(a13): "
             "a1 a2 = (t/T)(1 - t/T) is below a13 at every step but the last (checked for every T up to 3000 "
             "and at 16000, 96000, 1e6), where it is (T-1)/T^2, so the formula is exact everywhere else and "
             "U is about T q at the last step instead of 1e7 q.  Under the warm-up + cosine base that last "
             "step is then no larger than the ones before it, for every horizon.  Under "
             "base_schedule='constant' (or a hold up to T) the published formula itself grows like T/(19 k) "
             "over the last k steps: EvolvedOptimizer refuses that with a message (optim.horizon.horizon_problem).  "
             "use_decay=False drops only the LR multiplier: the atan(a13) factor is not gated by use_decay "
             "in the original.",
             no_decay_text=OPT4_UPDATE),
    ZooEntry("opt5", "evolved", f"none ~ div(qh_v, min(two, exp(v_hat))) | lr = {_LR_TYPE0}",
             "U = q / min(2, exp(v^));  eta_t = lr x base(t) x erfc(erfc(a4)) / dt(a8)  (schedule lr1)",
             "docs/paper.md §4.3, Opt5 (Opt4 with phi = 1), use_decay=True",
             "min(2, exp(v^)) equals the original's clip(2, -|exp(v^)|, |exp(v^)|).  " + _DIV_NOTE,
             no_decay_text="none ~ div(qh_v, min(two, exp(v_hat)))"),
    ZooEntry("opt6", "evolved", f"none ~ div(qh_v, decay(dtanh(a4), exp(w_1e4))) | lr = {_LR_TYPE0}",
             "psi = dt(a4) = 1 - tanh(a4)^2;  U = q / |psi exp(1e-4 w)|;  eta_t = lr x base(t) x "
             "erfc(erfc(a4)) / dt(a8)  (schedule lr1)",
             "docs/paper.md §4.3, Opt6, use_decay=True",
             "The |.| is dropped: psi > 0 and exp > 0.  " + _DIV_NOTE,
             no_decay_text="none ~ div(qh_v, exp(w_1e4))"),
    ZooEntry("opt7", "evolved", "none ~ tanh(decay(max(a6, a10), asinh(qh_v)))",
             "alpha = max(a6, a10);  U = tanh(alpha asinh(q));  eta_t = lr x base(t)",
             "docs/paper.md §4.3, Opt7, use_decay=True",
             no_decay_text="none ~ tanh(asinh(qh_v))"),
    ZooEntry("opt8", "evolved", "none ~ asinh(decay(max(a6, a10), asinh(qh_v)))",
             "alpha = max(a6, a10);  U = asinh(alpha asinh(q));  eta_t = lr x base(t)",
             "docs/paper.md §4.3, Opt8, use_decay=True",
             no_decay_text="none ~ asinh(asinh(qh_v))"),
    ZooEntry("opt9", "evolved", "nesterov ~ mul(decay(erfc(a11), g), exp(atan(qh_s)))",
             "alpha = erfc(a11);  U = alpha g exp(atan(0.05 g^2 + 0.95 s^));  M <- m_t M - eta_t U;  "
             "w <- w + m_t M - eta_t U  (standard Nesterov, m_t of docs/paper.md §3.2)",
             "docs/paper.md §4.3, Opt9, use_decay=True",
             "Pass momentum=None (the default) for the paper's 0.95 -> 0.85 -> 0.95 momentum schedule.",
             no_decay_text="nesterov ~ mul(g, exp(atan(qh_s)))"),
    ZooEntry("opt10", "evolved", "nesterov ~ i1e(i1e(decay(mul(a13, a2), g)))",
             "alpha = a13 a2;  U = i1e(i1e(alpha g));  M <- m_t M - eta_t U;  w <- w + m_t M - eta_t U  "
             "(standard Nesterov, m_t of docs/paper.md §3.2)",
             "docs/paper.md §4.3, Opt10, use_decay=True",
             "The log's particle 7 found it with the search's 'Nest' kind (Nest ~ bessel_i1e(bessel_i1e("
             "[(a13)*(a2)][g]))); finalOptimizers runs it with standard Nesterov, as here.",
             no_decay_text="nesterov ~ i1e(i1e(g))"),
):
    OPTIMIZERS.register(_e.name, _e)
del _e


# ---------------------------------------------------------------------------------------------
# Look-ups
# ---------------------------------------------------------------------------------------------

def _unknown(name, known: list[str], what: str, other: Registry | dict, other_hint: str) -> UnknownNameError:
    msg = f"unknown zoo {what} {name!r}"
    if isinstance(name, str) and name in other:
        msg += f" ({name!r} is {other_hint})"
    else:
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        if close:
            msg += f"; did you mean {', '.join(map(repr, close))}?"
    msg += ("" if msg.endswith("?") else ".") + f" Known {what}s: {', '.join(known)}"
    return UnknownNameError(msg)


def info(name: str, registry: Registry[ZooEntry] | None = None) -> ZooEntry:
    """The registry entry of optimizer ``name`` (``registry``: a run's copy with plugin entries;
    default :data:`OPTIMIZERS`)."""
    reg = OPTIMIZERS if registry is None else registry
    if isinstance(name, str) and name in reg:
        return reg.get(name)
    raise _unknown(name, reg.names(), "optimizer", SCHEDULES,
                   "an LR schedule: use zoo.schedule() or zoo.get_schedule_tree()")


def schedule_info(name: str, registry: Registry[ScheduleEntry] | None = None) -> ScheduleEntry:
    """The registry entry of LR schedule ``name`` (default registry :data:`SCHEDULES`)."""
    reg = SCHEDULES if registry is None else registry
    if isinstance(name, str) and name in reg:
        return reg.get(name)
    raise _unknown(name, reg.names(), "schedule", OPTIMIZERS, "an optimizer: use zoo.get()")


def names(pattern: str | None = None, kind: str | None = None,
          registry: Registry[ZooEntry] | None = None) -> list[str]:
    """Names of the zoo's optimizers, in registry order (baselines, a1..a5, opt1..opt10).

    ``pattern``: a shell-style filter (``"opt*"``); ``kind``: one of :data:`KINDS`.
    LR schedules are listed by :func:`schedule_names`.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    reg = OPTIMIZERS if registry is None else registry
    return [n for n in reg.names(pattern) if kind is None or reg.get(n).kind == kind]


def text(name: str, use_decay: bool = True, registry: Registry[ZooEntry] | None = None) -> str:
    """The genome text of optimizer ``name``."""
    entry = info(name, registry)
    return entry.text if use_decay or entry.no_decay_text is None else entry.no_decay_text


def get(name: str, use_decay: bool = True, space: SearchSpace | None = None, compat: bool = False,
        registry: Registry[ZooEntry] | None = None) -> Genome:
    """A fresh :class:`~deapnos.space.genome.Genome` of optimizer ``name``.

    ``use_decay=False`` gives the genome that ``finalOptimizers`` runs by default (its evolved decay
    factors and LR multipliers off; docs/paper.md §4.3); the default is the paper's intent, decays on.
    ``compat=True`` asks for the authors' released class itself: a name whose released form the search
    space cannot express (Opt3, whose l is an EMA of g^2) raises :class:`CompatError`.
    Unknown names raise :class:`UnknownNameError` (a KeyError and a ValueError) naming close matches.
    """
    entry = info(name, registry)
    if compat and entry.name in COMPAT_REFUSED:
        raise CompatError(f"zoo optimizer {name!r} in compat mode: {COMPAT_REFUSED[entry.name]}")
    return Genome.parse(text(name, use_decay, registry), space=space)


class CompatError(ValueError):
    """The authors' released form of a zoo optimizer cannot be reproduced (compat mode)."""


# zoo names whose released form (finalOptimizers.py) compat mode cannot reproduce, and why
COMPAT_REFUSED = {
    "opt3": "the released Opt3 keeps l as an EMA of g^2 (beta 0.999) while mixing it with 0.01 g^3; the "
            "search space has no operand for an EMA of g^2 with beta 0.999, so that bug cannot be "
            "reproduced. zoo.get('opt3') (compat off) gives the fixed Opt3, with the EMA of g^3 the search "
            "space defines (docs/paper.md §4.3, §8.2)",
    "lion": "Lion needs the operands sign_lion and w_1e1, which the original's search space lacks",
    "adamw": "AdamW needs the operand w_1e2 (decoupled weight decay 0.01), which the original's search space lacks",
}


def describe(name: str, registry: Registry[ZooEntry] | None = None,
             schedules: Registry[ScheduleEntry] | None = None) -> str:
    """The documentation of an optimizer or LR schedule: formula, genome text, source, notes, and the
    plugin that registered it.  ``registry`` / ``schedules``: a run's copies with plugin entries
    (default :data:`OPTIMIZERS` / :data:`SCHEDULES`)."""
    optimizers = OPTIMIZERS if registry is None else registry
    schedules = SCHEDULES if schedules is None else schedules
    if name in schedules:
        s, owner = schedules.get(name), schedules.owner(name)
        lines = [f"{s.name}: LR schedule multiplier", f"  formula: {s.formula}", f"  tree:    {s.text}",
                 f"  source:  {s.source}", f"  usage:   eta_t = lr x base(t) x ({s.formula})"]
        notes = " ".join(filter(None, [s.notes, _SCHEDULE_NOTE]))
    elif name in optimizers:
        e, owner = optimizers.get(name), optimizers.owner(name)
        lines = [f"{e.name} ({e.kind})", f"  formula: {e.formula}", f"  genome:  {e.text}",
                 f"  source:  {e.source}"]
        if e.no_decay_text is not None:
            lines.append(f"  use_decay=False: {e.no_decay_text}")
        notes = e.notes
    else:
        raise _unknown(name, optimizers.names() + schedules.names(), "name", {}, "")
    if owner != BUILTIN:
        lines.append(f"  plugin:  {owner}")
    if notes:
        lines.append(f"  notes:   {notes}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# LR schedules
# ---------------------------------------------------------------------------------------------

def schedule_names(pattern: str | None = None) -> list[str]:
    """Names of the zoo's LR schedules: lr1..lr9 (EvolvedLRSchedules type 0..8)."""
    return SCHEDULES.names(pattern)


def get_schedule_tree(name: str, space: SearchSpace | None = None):
    """The parsed schedule tree (a ``deap.gp.PrimitiveTree`` of type Schedule) of ``name``."""
    return parse_tree(schedule_info(name).text, "schedule", space)


def schedule(name: str, optimizer, total_steps: int, warmup_steps: int = 0,
             base_schedule: str = "warmup_cosine", hold_steps: int = 0, space: SearchSpace | None = None):
    """A :class:`torch.optim.lr_scheduler.LambdaLR` running schedule ``name`` on any torch optimizer.

    The LR at step t is ``initial lr x base(t) x multiplier(t)`` (docs/paper.md §3.3), where base is
    ``warmup_cosine`` (§3.1; with ``hold_steps`` at the peak) or ``constant``.  Call
    ``scheduler.step()`` once after each ``optimizer.step()``; the horizon ``total_steps`` is the
    number of optimizer steps.
    """
    import torch

    from .optim.schedules import ScheduleLambda
    space = space.build() if space is not None else builtin_space()
    tree = get_schedule_tree(name, space)
    fn = ScheduleLambda(tree, space, total_steps, warmup_steps, base_schedule, hold_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def _check_registry() -> None:
    """Every entry parses and prints back to its own text (run by the tests)."""
    for e in (OPTIMIZERS.get(n) for n in OPTIMIZERS):
        for t in filter(None, (e.text, e.no_decay_text)):
            if Genome.parse(t).to_text() != t:
                raise AssertionError(f"zoo entry {e.name}: text {t!r} is not canonical")
    for s in (SCHEDULES.get(n) for n in SCHEDULES):
        if tree_text(parse_tree(s.text, "schedule")) != s.text:
            raise AssertionError(f"zoo schedule {s.name}: text {s.text!r} is not canonical")


# -- the built-in zoo as a plugin (registered by deapnos.context, as pytest registers its own) ------

@hookimpl
def deapnos_zoo_optimizers() -> dict[str, ZooEntry]:
    """The built-in zoo optimizers (:data:`OPTIMIZERS`, which is never changed)."""
    return dict(OPTIMIZERS.items())


@hookimpl
def deapnos_zoo_schedules() -> dict[str, ScheduleEntry]:
    """The built-in LR schedules (:data:`SCHEDULES`)."""
    return dict(SCHEDULES.items())
