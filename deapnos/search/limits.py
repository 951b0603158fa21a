"""The limits a genome must respect (config ``mutation``: heights and sizes, checked once in
:func:`limit_problems`), and the validity of decay and schedule expressions on T = 100."""
from __future__ import annotations

import torch
from deap import gp

from ..optim.schedules import decay_is_valid, tree_table
from ..space.genome import Genome, tree_text
from ..space.psets import Schedule, SearchSpace, Tensor
from .config import MutationConfig
from .mutation_context import MutationContext
from .trees import PHENOTYPE_T, children, decay_positions, nodes_height, op_count, subtree_nodes, well_typed


def compat_decay_is_valid(tree, space: SearchSpace, start: int = 0, horizon: int = PHENOTYPE_T) -> bool:
    """The original's decay validity check (docs/paper.md §2.3): reject a value > 1 or < 0 on T = 100.
    NaN compares false both ways, so a decay that is NaN somewhere passes (the bug compat restores)."""
    values = tree_table(tree, space, horizon, start)
    return not bool(((values > 1) | (values < 0)).any())


def decay_valid(mutation_ctx: MutationContext, tree, start: int = 0) -> bool:
    """A decay expression's validity as the run checks it: the original's check in compat mode."""
    if mutation_ctx.compat:
        return compat_decay_is_valid(tree, mutation_ctx.space, start)
    return decay_is_valid(tree, mutation_ctx.space, start)


def schedule_is_valid(tree, space: SearchSpace, max_value: float = 20.0, start: int = 0) -> bool:
    """A schedule multiplier on T = 100 is finite, in [0, max_value], and not all ~0."""
    values = tree_table(tree, space, PHENOTYPE_T, start)
    return bool(torch.isfinite(values).all() and (values >= 0).all() and (values <= max_value).all()
                and values.max() > 1e-3)


def limit_problems(genome: Genome, mcfg: MutationConfig) -> list[str]:
    """The limits of ``mcfg`` that ``genome`` breaks (empty: within them): the update tree's height and
    size, the height of each decay expression, the schedule tree's height."""
    tree, out = genome.update, []
    if tree.height > mcfg.max_height:
        out.append(f"update tree height {tree.height} > {mcfg.max_height}")
    if len(tree) > mcfg.max_size:
        out.append(f"update tree size {len(tree)} > {mcfg.max_size}")
    for j in decay_positions(tree):
        h = nodes_height(subtree_nodes(tree, children(tree, j)[0]))
        if h > mcfg.decay_max_height:
            out.append(f"decay expression at {j} has height {h} > {mcfg.decay_max_height}")
    if genome.schedule.height > mcfg.schedule_max_height:
        out.append(f"schedule tree height {genome.schedule.height} > {mcfg.schedule_max_height}")
    return out


def within_limits(genome: Genome, mcfg: MutationConfig) -> bool:
    return not limit_problems(genome, mcfg)


def fits(genome: Genome, mutation_ctx: MutationContext) -> bool:
    """:func:`within_limits`, and with ``mutation.space = "paper"`` (implied by compat mode) the
    original's graph size: at most ``init.hidden_nodes + 1`` distinct ops (5 hidden nodes and the root)."""
    capped = mutation_ctx.compat or mutation_ctx.mutation.space == "paper"
    return within_limits(genome, mutation_ctx.mutation) and (
        not capped or op_count(genome.update) <= mutation_ctx.init.hidden_nodes + 1)


def genome_problems(genome: Genome, mcfg: MutationConfig | None = None) -> list[str]:
    """Why a genome is not a well-formed member of the search space (empty when it is): its types, the
    limits (:func:`limit_problems`), and the values of its decay and schedule expressions."""
    mcfg = mcfg or MutationConfig()
    out = []
    if not well_typed(genome.update, Tensor):
        out.append("update tree is not well-typed")
    if not well_typed(genome.schedule, Schedule):
        out.append("schedule tree is not well-typed")
    if out:
        return out
    out = limit_problems(genome, mcfg)
    tree = genome.update
    for j in decay_positions(tree):
        d = children(tree, j)[0]
        if not decay_is_valid(tree, genome.space, d):
            out.append(f"decay expression {tree_text(gp.PrimitiveTree(subtree_nodes(tree, d)))} leaves [0, 1]")
    if tree_text(genome.schedule) != "one" and not schedule_is_valid(genome.schedule, genome.space,
                                                                     mcfg.schedule_max_value):
        out.append("schedule multiplier is not finite in [0, schedule_max_value]")
    return out
