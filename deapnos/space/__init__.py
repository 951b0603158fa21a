"""WHAT an optimizer is: operands, ops, decays, primitive sets and genomes."""
from .genome import Genome, GenomeParseError, parse_tree, tree_text
from .psets import (MOMENTUM_KINDS, Decay, Schedule, SearchSpace, SpaceError, Tensor, build_space,
                    builtin_space, default_space)

__all__ = ["Genome", "GenomeParseError", "parse_tree", "tree_text", "MOMENTUM_KINDS", "Decay", "Schedule",
           "SearchSpace", "SpaceError", "Tensor", "build_space", "builtin_space", "default_space"]
