"""Mutation operators and random genomes (paper-spec §5.6, §2.5, §1.6): typed, bounded, compilable."""
from __future__ import annotations

import collections
import random

import pytest
import torch
from deap import gp

from deapnos.optim.compiler import compile_genome
from deapnos.optim.optimizer import EvolvedOptimizer
from deapnos.optim.schedules import decay_is_valid
from deapnos.search import mutation as M
from deapnos.search.config import InitConfig, MutationConfig
from deapnos.space import Genome, builtin_space
from deapnos.space.psets import Decay, Schedule, Tensor

torch.set_num_threads(1)


def _ctx(seed=0, compat=False, **mut):
    return M.MutationContext(builtin_space(), random.Random(seed), MutationConfig(**mut), InitConfig(),
                             ("none", "mom", "nest"), compat)


def _runs(genome: Genome) -> None:
    """Compiles and makes one optimizer step."""
    compile_genome(genome, 20)
    p = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 7))
    opt = EvolvedOptimizer([p], genome, lr=0.01, total_steps=20)
    p.grad = torch.linspace(0.5, -0.5, 7)
    opt.step()


def _assert_member(genome: Genome, mcfg: MutationConfig) -> None:
    assert M.well_typed(genome.update, Tensor)
    assert M.well_typed(genome.schedule, Schedule)
    assert not M.genome_problems(genome, mcfg), (genome.to_text(), M.genome_problems(genome, mcfg))
    # the text form round-trips
    assert Genome.parse(genome.to_text()).to_text() == genome.to_text()


@pytest.mark.parametrize("name", M.OPERATORS)
def test_operator_keeps_trees_typed_bounded_and_compilable(name):
    """Each operator, 500 draws chained over a population (so trees grow towards the limits)."""
    ctx = _ctx(seed=M.OPERATORS.index(name), max_height=7, max_size=40)
    op = M.OPERATOR_FUNCS[name]
    pop = [M.random_genome(ctx) for _ in range(20)]
    changed = 0
    for k in range(500):
        g = pop[k % len(pop)]
        before = g.to_text()
        out = op(g, ctx)
        assert isinstance(out, tuple) and len(out) == 1 and out[0] is g      # DEAP style, in place
        changed += g.to_text() != before
        _assert_member(g, ctx.mutation)
        assert g.update.height <= 7 and len(g.update) <= 40
        _runs(g)
    assert changed > 250, f"{name} changed only {changed}/500 genomes"


def test_mixed_mutation_thousands_of_draws():
    ctx = _ctx(seed=7)
    pop = [M.random_genome(ctx) for _ in range(30)]
    for k in range(1500):
        g = pop[k % len(pop)]
        (g,) = M.mutate(g, ctx)
        _assert_member(g, ctx.mutation)
        if k % 3 == 0:
            _runs(g)


def test_height_limit_is_never_exceeded_at_a_tight_limit():
    ctx = _ctx(seed=3, max_height=3, decay_max_height=1, schedule_max_height=1)
    g = Genome.parse("none ~ add(g, neg(v_hat))")
    for _ in range(2000):
        M.mutate(g, ctx)
        assert g.update.height <= 3
        assert g.schedule.height <= 1
        for j in M.decay_positions(g.update):
            d = M.children(g.update, j)[0]
            assert M.nodes_height(list(g.update[g.update.searchSubtree(d)])) <= 1


def test_op_change_keeps_arity_and_type():
    ctx = _ctx(seed=1)
    for _ in range(300):
        g = Genome.parse("none ~ add(sqrt(g), v_hat)")
        before = list(g.update)
        M.mut_op(g, ctx)
        after = list(g.update)
        assert len(before) == len(after)
        diff = [i for i, (a, b) in enumerate(zip(before, after)) if a is not b]
        assert len(diff) == 1
        i = diff[0]
        assert before[i].arity == after[i].arity and after[i].ret is Tensor


def test_unary_op_change_follows_the_identity_rule():
    """From the identity: any other op; else 20% to the identity (paper-spec §5.6)."""
    ctx = _ctx(seed=2)
    to_id = 0
    n = 3000
    for _ in range(n):
        g = Genome.parse("none ~ sqrt(g)")
        M.mut_op(g, ctx)
        to_id += g.update[0].name == "id"
        assert g.update[0].name != "sqrt"
    assert 0.15 < to_id / n < 0.25
    for _ in range(200):
        g = Genome.parse("none ~ id(g)")
        M.mut_op(g, ctx)
        assert g.update[0].name != "id"


def test_momentum_changes_to_another_configured_kind():
    ctx = _ctx()
    seen = collections.Counter()
    for _ in range(300):
        g = Genome.parse("mom ~ g")
        M.mut_momentum(g, ctx)
        seen[g.momentum] += 1
    assert set(seen) == {"none", "nest"}


def test_decay_add_remove_mutate():
    ctx = _ctx(seed=4)
    outcomes = collections.Counter()
    for _ in range(600):
        g = Genome.parse("none ~ add(decay(mul(a1, a3), g), v_hat)")
        M.mut_decay(g, ctx)
        n = len(M.decay_positions(g.update))
        text = g.to_text()
        if n == 0:
            outcomes["removed"] += 1
        elif n == 2:
            outcomes["added"] += 1
        elif "mul(a1, a3)" not in text:
            outcomes["mutated"] += 1
        for j in M.decay_positions(g.update):
            assert decay_is_valid(g.update, g.space, M.children(g.update, j)[0])
    assert outcomes["removed"] > 50 and outcomes["added"] > 50 and outcomes["mutated"] > 50


def test_decay_validity_rejects_nan_and_out_of_range():
    space = builtin_space()
    ok = Genome.parse("none ~ decay(mul(a1, a3), g)")
    assert decay_is_valid(ok.update, space, 1)
    too_big = Genome.parse("none ~ decay(add(a1, a4), g)")       # exceeds 1 in the middle
    assert not decay_is_valid(too_big.update, space, 1)
    ctx = _ctx(seed=5)
    for _ in range(200):
        nodes = M.random_decay(ctx)
        assert nodes is not None and decay_is_valid(gp.PrimitiveTree(nodes), space)
        assert M.well_typed(nodes, Decay)


def test_expression_mutation_differs_from_its_parent():
    """paper-spec §2.5: a mutated decay differs in text and phenotype (L2 > 1e-4) and is valid."""
    ctx = _ctx(seed=6)
    space = builtin_space()
    parent = list(Genome.parse("none ~ decay(min(a12, a9), g)").update)[1:4]
    p_phen = M.phenotype(parent, space)
    for _ in range(200):
        child = M.mutate_expression(ctx, parent, "decay")
        assert child is not None
        assert decay_is_valid(gp.PrimitiveTree(child), space)
        assert float(torch.linalg.vector_norm(M.phenotype(child, space) - p_phen)) > 1e-4


def test_schedule_mutation_gives_valid_schedules():
    ctx = _ctx(seed=8)
    g = Genome.parse("none ~ g")
    kinds = collections.Counter()
    for _ in range(400):
        M.mut_schedule(g, ctx)
        text = g.to_text()
        kinds["one" if "lr =" not in text else "tree"] += 1
        assert M.well_typed(g.schedule, Schedule)
        if "lr =" in text:
            assert M.schedule_is_valid(g.schedule, g.space, ctx.mutation.schedule_max_value)
    assert kinds["one"] > 20 and kinds["tree"] > 100


def test_operator_shares_follow_the_spec():
    ctx = _ctx(seed=9)
    n = 40000
    counts = collections.Counter(M.choose_operator(ctx) for _ in range(n))
    expect = {"op": 0.40, "branch": 0.30, "toggle": 0.10, "momentum": 0.10, "decay": 0.10, "schedule": 0.05}
    total = sum(expect.values())
    for name, share in expect.items():
        assert abs(counts[name] / n - share / total) < 0.012, (name, counts[name] / n)
    compat = _ctx(seed=9, compat=True)
    counts = collections.Counter(M.choose_operator(compat) for _ in range(5000))
    assert counts["schedule"] == 0


def test_compat_never_draws_maxvalue_by_mutation():
    ctx = _ctx(seed=10, compat=True)
    for _ in range(2000):
        g = Genome.parse("none ~ sqrt(g)")
        M.mut_op(g, ctx)
        assert g.update[0].name != "runmax"
    fixed = _ctx(seed=10)
    names = set()
    for _ in range(3000):
        g = Genome.parse("none ~ sqrt(g)")
        M.mut_op(g, fixed)
        names.add(g.update[0].name)
    assert "runmax" in names


def test_random_genomes_resemble_the_original_initialisation():
    ctx = _ctx(seed=11)
    gs = [M.random_genome(ctx) for _ in range(600)]
    kinds = collections.Counter(g.momentum for g in gs)
    assert set(kinds) == {"none", "mom", "nest"} and min(kinds.values()) > 150
    root_binary = sum(g.update[0].arity == 2 for g in gs) / len(gs)
    assert 0.68 < root_binary < 0.82
    with_decay = sum(bool(M.decay_positions(g.update)) for g in gs) / len(gs)
    assert 0.15 < with_decay < 0.7
    for g in gs:
        _assert_member(g, ctx.mutation)
        # the root references at least one op node (a hidden node), as in the original
        assert any(M.is_branch(g.update, c) for c in M.children(g.update, 0))
        assert not g.flip and M.tree_text(g.schedule) == "one"


def test_same_seed_same_mutants():
    def draw(seed):
        ctx = _ctx(seed=seed)
        g = M.random_genome(ctx)
        out = []
        for _ in range(50):
            child, op, _ = M.make_mutant(g, ctx)
            out.append((op, child.to_text()))
            g = child
        return out
    assert draw(12) == draw(12)
    assert draw(12) != draw(13)


def test_make_mutant_redraws_what_accept_refuses():
    ctx = _ctx(seed=13)
    parent = Genome.parse("none ~ add(g, sqrt(v_hat))")
    seen = {parent.to_text()}

    def accept(child):
        if child.momentum != "none":
            return False, "only none"
        if child.to_text() in seen:
            return False, "duplicate"
        return True, ""
    for _ in range(30):
        child, op, tries = M.make_mutant(parent, ctx, accept)
        assert child is not None and child.momentum == "none" and child.to_text() not in seen
        assert op != "momentum"
        seen.add(child.to_text())
    child, op, tries = M.make_mutant(parent, ctx, lambda c: (False, "never"), max_tries=5)
    assert child is None and tries == 5


def test_mutant_resets_flip_except_in_compat():
    parent = Genome.parse("none ~ add(g, sqrt(v_hat)) | flip")
    child, _, _ = M.make_mutant(parent, _ctx(seed=14))
    assert child.flip is False
    child, _, _ = M.make_mutant(parent, _ctx(seed=14, compat=True))
    assert child.flip is True


# names defined in deapnos/search/mutation.py before it was split into trees, limits, expressions, genomes
# and operators (issue 17): the module re-exports every one of them
_OLD_NAMES = """random dataclass field torch gp decay_is_valid tree_table Genome tree_text DECAY_ON_BRANCH
MOMENTUM_KINDS Decay Schedule SearchSpace Tensor InitConfig MutationConfig OPERATORS PHENOTYPE_T MIN_PHENOTYPE_DISTANCE
_HIDDEN Vocabulary MutationContext subtree_slice children depths nodes_height well_typed op_nodes unwrap is_branch
decay_positions _splice _nodes _ancestors phenotype compat_decay_is_valid _decay_valid op_count schedule_is_valid
within_limits fits genome_problems _scalar_hidden _random_scalar_expr random_decay random_schedule _TensorGen
random_update_tree random_genome _mutate_expr_once mutate_expression _limited _leaf_positions _new_operand _new_arg
mut_op mut_branch free_hidden_nodes _compat_root_branch _move_leaf mut_toggle mut_momentum mut_decay mut_schedule
OPERATOR_FUNCS choose_operator mutate _same_genes make_mutant random_valid_genome""".split()


def test_mutation_module_keeps_every_old_name():
    from deapnos.search import expressions, genomes, limits, mutation_context, operators, trees
    missing = [n for n in _OLD_NAMES if not hasattr(M, n)]
    assert not missing, missing
    assert M.MutationContext is mutation_context.MutationContext and M.children is trees.children
    assert M.within_limits is limits.within_limits and M.mutate_expression is expressions.mutate_expression
    assert M.random_genome is genomes.random_genome and M.make_mutant is operators.make_mutant
    # old private names of helpers that are public in their new modules
    assert M._decay_valid is limits.decay_valid and M._nodes is trees.subtree_nodes
    assert M._splice is trees.splice and M._TensorGen is genomes.TensorGen


def test_the_limits_are_checked_once():
    """within_limits is "no limit problems"; genome_problems reports the same limits, plus types and values."""
    tight = MutationConfig(max_height=4, max_size=12, decay_max_height=1, schedule_max_height=2)
    ctx = _ctx(seed=5, schedule=0.3)
    seen = collections.Counter()
    for _ in range(150):
        g = M.random_genome(ctx)
        for _ in range(3):
            M.mutate(g, ctx)
        problems = M.limit_problems(g, tight)
        assert M.within_limits(g, tight) == (not problems)
        assert set(problems) <= set(M.genome_problems(g, tight))
        seen[not problems] += 1
    assert seen[True] and seen[False], seen
