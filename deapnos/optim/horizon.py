"""The horizon guard: Opt4's update explodes over a horizon where the LR does not decay to 0.

Opt4 divides by min(2, atan(a13) exp(v^)) and a13 falls to 0 at the end of the horizon, so its step
multiplier grows like T/(19 k) over the last k steps: only a base schedule that decays to 0 there keeps
them bounded.  The zoo's ``opt4`` entry is built from the texts here (one source).
"""
from __future__ import annotations

import math

from ..space.genome import Genome, parse_tree

#: Opt4's atan(a13) with its last-step guard (docs/paper.md, Opt4)
OPT4_PHI = "atan(max(a13, mul(a1, a2)))"
#: Opt4's update equation, whatever its LR schedule
OPT4_UPDATE = f"none ~ div(qh_v, clip(two, decay({OPT4_PHI}, exp(v_hat))))"


def horizon_problem(genome: Genome, total_steps: int, warmup_steps: int = 0, base_schedule: str = "warmup_cosine",
                    hold_steps: int = 0) -> str | None:
    """Why a genome with Opt4's update would explode over this horizon (None when it would not, or
    when the update is another).  Refused: a largest per-step multiplier lr_t / min(2, atan(a13_t))
    (with exp(v^) = 1) above 20 x its median over the run, or a non-finite one."""
    g = genome.copy()
    g.flip = False
    if g.to_text().split(" | ")[0] != OPT4_UPDATE:
        return None
    import torch                       # here, so that the zoo's import of this module stays light

    from .flat import base_lr_table
    from .schedules import tree_table
    T = int(total_steps)
    space = genome.space
    phi = tree_table(parse_tree(OPT4_PHI, "decay", space), space, T)
    mult = torch.tensor(base_lr_table(T, warmup_steps, base_schedule, hold_steps), dtype=torch.float64)
    mult = mult * tree_table(genome.schedule, space, T) / torch.clamp(phi, max=2.0)
    big, med = float(mult.max()), float(mult.median())
    if math.isfinite(big) and (med <= 0 or big <= 20.0 * med):
        return None
    return (f"opt4 over total_steps={T} with base_schedule={base_schedule!r} (warmup_steps={warmup_steps}, "
            f"hold_steps={hold_steps}): its step multiplier lr_t / min(2, atan(a13)) reaches {big:.3g} x the peak LR "
            f"(median {med:.3g}), because a13 falls to 0 at the end of the horizon; Opt4 needs a base schedule "
            f"that decays to 0 there: base_schedule='warmup_cosine' with warmup_steps + hold_steps < total_steps")
