"""Mutation and random genomes: the names of the modules below, in one place (the old home of them all).

- :mod:`.mutation_context`: :class:`MutationContext` (space, seeded generator, config) and :class:`Vocabulary`;
- :mod:`.trees`: helpers over DEAP trees (children, depths, heights, op nodes, decay edges, phenotype);
- :mod:`.limits`: the limits of ``mutation`` (:func:`limit_problems`, :func:`within_limits`, :func:`fits`,
  :func:`genome_problems`) and the validity of decay and schedule expressions;
- :mod:`.expressions`: random decay and schedule expressions and their mutation (docs/paper.md §2.5);
- :mod:`.genomes`: random (initial) genomes (:func:`random_genome`, :func:`random_valid_genome`);
- :mod:`.operators`: the operators (:func:`mut_op`, ...), :func:`mutate` and :func:`make_mutant`.

Code inside deapnos imports from those modules; plugins, examples and tests may keep importing from here.
"""
from __future__ import annotations

# what this module imported when it held everything, kept so that old attribute access still works
import random as random
from dataclasses import dataclass as dataclass
from dataclasses import field as field

import torch as torch
from deap import gp as gp

from ..optim.schedules import decay_is_valid, tree_table
from ..space.genome import Genome, tree_text
from ..space.psets import DECAY_ON_BRANCH, MOMENTUM_KINDS, Decay, Schedule, SearchSpace, Tensor
from .config import InitConfig, MutationConfig
from .expressions import _HIDDEN as _HIDDEN
from .expressions import MIN_PHENOTYPE_DISTANCE, mutate_expression, random_decay, random_schedule
from .expressions import _mutate_expr_once as _mutate_expr_once
from .expressions import _random_scalar_expr as _random_scalar_expr
from .expressions import _scalar_hidden as _scalar_hidden
from .genomes import TensorGen, random_genome, random_update_tree, random_valid_genome
from .limits import (compat_decay_is_valid, decay_valid, fits, genome_problems, limit_problems, schedule_is_valid,
                     within_limits)
from .mutation_context import MutationContext, Vocabulary
from .operators import (OPERATOR_FUNCS, OPERATORS, choose_operator, free_hidden_nodes, make_mutant, mut_branch,
                        mut_decay, mut_momentum, mut_op, mut_schedule, mut_toggle, mutate)
from .operators import _compat_root_branch as _compat_root_branch
from .operators import _leaf_positions as _leaf_positions
from .operators import _limited as _limited
from .operators import _move_leaf as _move_leaf
from .operators import _new_arg as _new_arg
from .operators import _new_operand as _new_operand
from .operators import _same_genes as _same_genes
from .trees import (PHENOTYPE_T, ancestors, children, decay_positions, depths, is_branch, nodes_height, op_count,
                    op_nodes, phenotype, splice, subtree_nodes, subtree_slice, unwrap, well_typed)

# the old private names of helpers that are public in their new modules
_splice, _nodes, _ancestors, _decay_valid, _TensorGen = splice, subtree_nodes, ancestors, decay_valid, TensorGen

__all__ = [
    # mutation_context
    "MutationContext", "Vocabulary",
    # trees
    "PHENOTYPE_T", "ancestors", "children", "decay_positions", "depths", "is_branch", "nodes_height", "op_count",
    "op_nodes", "phenotype", "splice", "subtree_nodes", "subtree_slice", "unwrap", "well_typed",
    # limits
    "compat_decay_is_valid", "decay_valid", "fits", "genome_problems", "limit_problems", "schedule_is_valid",
    "within_limits",
    # expressions
    "MIN_PHENOTYPE_DISTANCE", "mutate_expression", "random_decay", "random_schedule",
    # genomes
    "TensorGen", "random_genome", "random_update_tree", "random_valid_genome",
    # operators
    "OPERATOR_FUNCS", "OPERATORS", "choose_operator", "free_hidden_nodes", "make_mutant", "mut_branch",
    "mut_decay", "mut_momentum", "mut_op", "mut_schedule", "mut_toggle", "mutate",
    # imported here before the split
    "decay_is_valid", "tree_table", "Genome", "tree_text",
    "DECAY_ON_BRANCH", "MOMENTUM_KINDS", "Decay", "Schedule", "SearchSpace", "Tensor", "InitConfig",
    "MutationConfig",
]
