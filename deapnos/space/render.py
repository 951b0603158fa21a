"""Human-readable renderings of genomes: the paper's equation text and LaTeX.

The text follows the original's log strings (docs/paper.md §1.7): ``Nest ~ bessel_i1e([(a13)*(a2)][g])``
means U = i1e(a13*a2*g) under the search's Nesterov kind; ``[d][x]`` is a decay d multiplying x.
"""
from __future__ import annotations

from deap import gp

from .fold import fold
from .psets import DECAY_ON_BRANCH, Tensor

KIND_PREFIX = {"none": "None", "mom": "Mom", "nest": "Nest", "nesterov": "Nesterov"}
KIND_LATEX = {"none": "", "mom": "\\text{momentum}", "nest": "\\text{Nest (search)}",
              "nesterov": "\\text{Nesterov}"}


def _fold(tree: gp.PrimitiveTree, leaf, node_fmt):
    """Render a prefix tree bottom-up: ``leaf(node)`` for terminals, ``node_fmt(node, args)`` else."""
    if not len(tree):
        return ""
    return fold(tree, lambda node, args: leaf(node) if node.arity == 0 else node_fmt(node, args))


def tree_str(tree: gp.PrimitiveTree, space) -> str:
    def leaf(node):
        if node.ret is Tensor:
            return space.operands[node.name].fmt
        return node.name if node.name not in ("one", "two") else {"one": "1", "two": "2"}[node.name]

    def fmt(node, args):
        if node.name == DECAY_ON_BRANCH and node.ret is Tensor:
            return f"[{args[0]}][{args[1]}]"
        return space.op_spec(node.ret, node.name).fmt.format(*args)

    return _fold(tree, leaf, fmt)


def tree_latex(tree: gp.PrimitiveTree, space) -> str:
    def leaf(node):
        if node.ret is Tensor:
            return space.operands[node.name].latex
        if node.name in space.schedule_constants:
            return f"{space.schedule_constants[node.name]:g}"
        return space.leaf_spec(node.ret, node.name).latex.format()

    def fmt(node, args):
        if node.name == DECAY_ON_BRANCH and node.ret is Tensor:
            return f"\\left[{args[0]}\\right] {args[1]}"
        return space.op_spec(node.ret, node.name).latex.format(*args)

    return _fold(tree, leaf, fmt)


def genome_str(genome) -> str:
    text = f"{KIND_PREFIX[genome.momentum]} ~ {tree_str(genome.update, genome.space)}"
    sched = tree_str(genome.schedule, genome.space)
    if sched != "1":
        text += f" ; lr x {sched}"
    if genome.flip:
        text += " ; flip"
    return text


def genome_latex(genome) -> str:
    u = tree_latex(genome.update, genome.space)
    parts = [f"U_t = {u}"]
    sched = tree_latex(genome.schedule, genome.space)
    if sched != "1":
        parts.append(f"\\eta_t = \\eta^{{\\mathrm{{base}}}}_t \\cdot {sched}")
    sign = "+" if genome.flip else "-"
    if genome.momentum == "none":
        parts.append(f"w_{{t+1}} = w_t {sign} \\eta_t U_t")
    else:
        parts.append(f"M_t = m_t M_{{t-1}} {sign} \\eta_t U_t")
        parts.append({"mom": "w_{t+1} = w_t + M_t",
                      "nest": f"w_{{t+1}} = w_t + M_t {sign} \\eta_t U_t",
                      "nesterov": f"w_{{t+1}} = w_t + m_t M_t {sign} \\eta_t U_t"}[genome.momentum])
    return ",\\quad ".join(parts)
