"""RUNNING a genome in PyTorch: compiler, optimizer, schedules."""
from .compiler import Plan, PlanRunner, compile_genome
from .optimizer import EvolvedOptimizer
from .schedules import ScheduleLambda, base_lr_table, decay_is_valid, momentum_table, tree_table
from .trials import run_trials

__all__ = ["Plan", "PlanRunner", "compile_genome", "EvolvedOptimizer", "ScheduleLambda", "base_lr_table",
           "decay_is_valid", "momentum_table", "tree_table", "run_trials"]
