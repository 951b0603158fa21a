"""The built-in presets (`paper`, `authors-code`) and the paper's baselines in standard form
(``torch:`` specs in the elimination ladder)."""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from deapnos.search.config import CONFIG_DIR, ConfigError, config_from_dict, load_config

torch.set_num_threads(1)

PAPER_BASELINES = ["torch:Adam", "torch:RMSprop", "torch:SGD", "torch:SGD(momentum=0.9, nesterov=True)",
                   "powersign", "addsign", "qhm"]


def test_paper_preset_follows_the_paper():
    cfg = load_config("paper")
    s = cfg.search
    assert (s.particles, s.timesteps, s.mutants, s.init_factor) == (50, 5, 7, 10)   # the code and its log
    assert s.max_age == 0 and s.acceptance == "always" and s.reeval_top == 0         # particles live m timesteps
    assert cfg.run.compat is False
    assert cfg.mutation.schedule == 0.0 and cfg.init.p_schedule == 0.0             # LR schedules are decays
    assert cfg.mutation.space == "paper" and load_config("authors-code").mutation.space == "paper"
    m = cfg.mutation
    assert (m.op, m.branch, m.toggle, m.momentum, m.decay) == (0.40, 0.30, 0.10, 0.10, 0.10)
    assert cfg.protocol.screen == "paper" and cfg.fitness.relative is False and cfg.validation.enabled is False
    assert cfg.elimination.baselines == PAPER_BASELINES
    assert [r.task for r in cfg.elimination.rungs] == ["cifar10-convnet48", "cifar100-effnetv2s",
                                                      "tinyimagenet-effnetv2s", "flowers102-finetune",
                                                      "cars196-finetune", "caltech101-finetune"]


def test_authors_code_preset_follows_the_released_code():
    cfg = load_config("authors-code")
    s = cfg.search
    assert cfg.run.compat is True
    assert (s.particles, s.timesteps, s.mutants, s.init_factor, s.attempts) == (50, 5, 7, 10, 4)
    assert s.max_age == 0 and s.acceptance == "always"
    from deapnos.evaluate.protocol import protocol_table
    # the authors' protocol: what compat mode puts under [protocol], here written out as well
    assert protocol_table(cfg.protocol) == {"screen": "paper", "shuffle": False, "fresh_seed": True,
                                            "keep_best_on_divergence": True, "score": "best"}
    assert protocol_table(cfg.protocol, compat=True) == {}
    assert cfg.cache.fingerprint is False and cfg.elimination.enabled is False and cfg.validation.enabled is False
    assert cfg.run.name == "authors-code"


@pytest.mark.parametrize("name", ["paper", "authors-code"])
def test_every_number_of_a_preset_says_where_it_comes_from(name):
    """Each value of [search], [init], [mutation], [protocol] and [elimination] carries a comment:
    on its line, on the line above it, or on its section's header."""
    section, header_commented, previous, missing = None, False, "", []
    for line in (CONFIG_DIR / f"{name}.toml").read_text().splitlines():
        stripped = line.strip()
        m = re.match(r"^\[+([a-z.]+)\]+", stripped)
        if m:
            section, header_commented, previous = m.group(1), "#" in stripped, stripped
            continue
        value = stripped and not stripped.startswith("#") and "=" in stripped and not stripped.startswith('"')
        if value and section in ("search", "init", "mutation", "protocol", "elimination") \
                and "#" not in stripped and not header_commented and not previous.startswith("#"):
            missing.append(f"[{section}] {stripped}")
        previous = stripped
    assert not missing, missing


def test_presets_disagreements_are_stated():
    paper = (CONFIG_DIR / "paper.toml").read_text()
    code = (CONFIG_DIR / "authors-code.toml").read_text()
    for text in (paper, code):
        assert "(comments and README: m = 7)" in text and "(comments and README: k = 5)" in text


def _walk(space_option: str, chains: int = 60, steps: int = 35) -> list[int]:
    """Op counts of every mutant of ``chains`` random walks of ``steps`` mutations (no selection)."""
    import random
    from deapnos import plugins
    from deapnos.search import mutation as M
    cfg = load_config("paper")
    mcfg = dataclasses.replace(cfg.mutation, space=space_option)
    ctx = M.MutationContext(plugins.build_space(plugins.get_plugin_manager()), random.Random(0), mcfg, cfg.init)
    counts = []
    for _ in range(chains):
        g = M.random_genome(ctx)
        counts.append(M.op_count(g.update))
        for _ in range(steps):
            g, _, _ = M.make_mutant(g, ctx)
            counts.append(M.op_count(g.update))
    return counts


def test_the_paper_space_caps_every_mutant_at_six_ops():
    capped = _walk("paper")
    assert max(capped) <= 6                           # 5 hidden nodes + the root
    assert max(_walk("open")) > 6                     # the same walks leave the graph without the cap


# -- torch: baselines --------------------------------------------------------------------------

def test_torch_specs_are_accepted_as_baselines():
    from deapnos import plugins
    from deapnos.run import check_against_plugins
    from deapnos.search.elimination import baseline_problem
    assert baseline_problem("torch:Adam") is None and baseline_problem("qhm") is None
    assert baseline_problem("torch:SGD(momentum=0.9, nesterov=True)") is None
    assert "torch.optim has no optimizer" in baseline_problem("torch:Nope")
    assert "neither a zoo optimizer" in baseline_problem("no-such-optimizer")
    assert baseline_problem("opt3") is None and "EMA of g^2" in baseline_problem("opt3", compat=True)
    from deapnos.context import Context
    ctx = Context.from_manager(plugins.get_plugin_manager())
    base = {"search": {"task": "digits", "init_task": "digits"}, "validation": {"enabled": False},
            "elimination": {"rungs": [{"task": "digits", "seeds": [1, 2]}]}}
    check_against_plugins(config_from_dict(base, ['elimination.baselines=["torch:Adam", "torch:SGD(momentum=0.9)", '
                                                  '"powersign"]']), ctx)
    with pytest.raises(ConfigError, match="torch:Nope"):
        check_against_plugins(config_from_dict(base, ['elimination.baselines=["torch:Nope"]']), ctx)


def test_a_worker_runs_a_torch_spec():
    from deapnos.distributed import evaluate_payload, make_payload
    out = evaluate_payload(make_payload("torch:SGD(momentum=0.9, nesterov=True)", "digits", 0,
                                        protocol={"lr": 0.1, "epochs": 2}))
    assert out["status"] == "ok" and out["fitness"] is not None
    assert out["genome"] == "torch:SGD(momentum=0.9, nesterov=True)"


def test_the_ladder_runs_torch_and_zoo_baselines_by_the_candidates_procedure(tmp_path):
    from deapnos.context import build_context
    from deapnos.search.runner import SearchRun
    from deapnos.search.store import RunStore
    ctx = build_context(["sphere"], autoload=False)
    seen = []

    def fake_map(fn, items, on_result=None):
        out = []
        for i, item in enumerate(items):
            seen.append(item)
            score = 0.9 if item["genome"] == "torch:Adam" else 0.5 + 0.01 * (hash(item["genome"]) % 7)
            res = {"genome": item["genome"], "task": item["task"], "seed": item["seed"], "status": "ok",
                   "fitness": score, "seconds": 0.0, "worker": "fake"}
            if on_result:
                on_result(i, res)
            out.append(res)
        return out

    cfg = config_from_dict({"search": {"particles": 2, "timesteps": 1, "mutants": 2, "init_factor": 2,
                                       "init_task": "digits", "task": "digits"},
                            "fitness": {"relative": False}, "validation": {"enabled": False},
                            "elimination": {"candidates": 2, "baselines": ["torch:Adam", "torch:SGD(momentum=0.9)",
                                                                             "qhm"],
                                            "rungs": [{"task": "digits", "seeds": [1, 2], "keep": 1.0}]}})
    s = SearchRun(cfg, RunStore(tmp_path / "run", create=True), None, ctx, map_fn=fake_map)
    s.run()
    st = s.state.elimination
    # labels are plain names (they may name files in the run folder); the spec is the genome and key
    assert [b["label"] for b in st["baselines"]] == ["torch_Adam", "torch_SGD_momentum_0_9", "qhm"]
    assert [b["genome"] for b in st["baselines"]][:2] == ["torch:Adam", "torch:SGD(momentum=0.9)"]
    assert st["baselines"][0]["rep"] == "torch:Adam"
    rung = [it for it in seen if it["seed"] in (1, 2)]
    # every baseline and candidate is evaluated with the same seeds and the same [protocol] payload
    by_genome = {}
    for it in rung:
        by_genome.setdefault(it["genome"], set()).add(it["seed"])
    assert by_genome["torch:Adam"] == by_genome["torch:SGD(momentum=0.9)"] == {1, 2}
    assert len({str(it["protocol"]) for it in rung}) == 1
    board = {row["label"]: row for row in st["leaderboard"]}
    assert board["torch_Adam"]["verdict"] == "reference" and board["torch_Adam"]["rank"] == 1
