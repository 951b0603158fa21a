"""Multi-task fitness relative to a tuned reference, and held-out validation, with a fake evaluator
(scores from a hash of the genome text; no training) so every number can be checked by hand."""
from __future__ import annotations

import statistics

import pytest

from deapnos.context import Context
from deapnos.evaluate.stats import interval, paired_difference, t95
from deapnos.search.config import ConfigError, config_from_dict
from deapnos.search.fitness import aggregate, combine, validation_tasks
from deapnos.search.runner import SearchRun
from deapnos.search.store import RunStore
from deapnos.search.validation import compare, overall
from test_search_particles import FakeMap, _h


@pytest.fixture(scope="module")
def env():
    from deapnos import plugins
    pm = plugins.get_plugin_manager(["sphere"], autoload=False)
    space = plugins.build_space(pm)
    return pm, space, plugins.integrity_checks(pm)


class SuiteTask:
    """Stands in for an installed Task: ``suite`` is read when resolving held-out tasks, the step
    counts by the horizon check (which asks for a longer version of a held-out task)."""
    def __init__(self, suite=True):
        self.suite = suite
        self.steps_per_epoch, self.horizon, self.warmup_steps, self.screen_steps = 10, 50, 5, 4

    def replace(self, **changes):
        raise AssertionError("the fake tasks carry no [tasks.NAME] overrides")


INSTALLED = {"a": SuiteTask(), "b": SuiteTask(), "held1": SuiteTask(), "held2": SuiteTask(),
             "digits": SuiteTask(suite=False)}


def make_search(env, tmp_path, fake, **sections):
    pm, space, checks = env
    data = {"search": {"particles": 2, "timesteps": 2, "mutants": 2, "init_factor": 2, "init_task": ["a", "b"],
                       "task": ["a", "b"]},
            "elimination": {"enabled": False}, "validation": {"seeds": [0, 1, 2]}}
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    cfg = config_from_dict(data)
    store = RunStore(tmp_path / "run", create=True)
    store.write_config(cfg.to_toml())
    ctx = Context.from_manager(pm, space=space, checks=checks, tasks=INSTALLED)
    return SearchRun(cfg, store, None, ctx, map_fn=fake), store


def fake_score(genome: str, seed: int) -> float:
    return _h(genome + f"/{seed}")


def test_candidate_fitness_is_the_mean_score_relative_to_the_reference(env, tmp_path):
    s, store = make_search(env, tmp_path, FakeMap())
    s.run()
    log = store.read_log()
    refs = [r for r in log if r.get("kind") == "reference"]
    # the reference is evaluated once per (task, seed) and reused: here 2 tasks x seed 0, then the
    # held-out validation's own runs of it
    assert sorted((r["task"], r["seed"]) for r in refs) == [("a", 0), ("b", 0)]
    ref_text = refs[0]["genome"]
    particles = store.read_particles()
    init = [r for r in log if r.get("kind") == "init" and r["event"] == "evaluation"]
    by_genome = {}
    for r in init:
        by_genome.setdefault(r["genome"], {})[r["task"]] = r
    assert all(set(v) == {"a", "b"} for v in by_genome.values())
    # particle 0 is the best of the initial population by mean(score_t - reference_t)
    expected = {g: statistics.fmean(max(fake_score(g, 0) - fake_score(ref_text, 0), -0.9) for _ in "ab")
                for g in by_genome}
    best = max(expected, key=expected.get)
    first = [r for r in particles if r["timestep"] == 0][0]
    assert first["genome"] == best
    hof = store.read_json("hall_of_fame.json")
    assert hof[0]["mean"] == pytest.approx(max(expected.values()) if hof[0]["genome"] == best else hof[0]["mean"])
    assert all(-0.9 <= row["mean"] <= 1 for row in hof)


def test_a_failure_on_any_task_fails_the_candidate_and_aggregates_follow_the_config():
    class Cfg:
        class fitness:
            floor, aggregate = -0.9, "mean"
    recs = [{"genome": "g", "rep": "k", "seed": 0, "task": "a", "status": "ok", "fitness": 0.7},
            {"genome": "g", "rep": "k", "seed": 0, "task": "b", "status": "ok", "fitness": 0.2}]
    refs = [{"fitness": 0.5}, {"fitness": 0.4}]
    out = combine(recs, refs, Cfg)
    assert out["status"] == "ok" and out["fitness"] == pytest.approx((0.2 - 0.2) / 2)
    assert out["tasks"]["a"]["score"] == pytest.approx(0.2) and out["tasks"]["b"]["reference"] == 0.4
    Cfg.fitness.aggregate = "worst"
    assert combine(recs, refs, Cfg)["fitness"] == pytest.approx(-0.2)
    Cfg.fitness.floor = -0.1
    assert combine(recs, refs, Cfg)["fitness"] == pytest.approx(-0.1)
    failed = [recs[0], {**recs[1], "status": "diverged", "fitness": None, "message": "nan"}]
    out = combine(failed, refs, Cfg)
    assert out["status"] == "diverged" and out["fitness"] is None and out["message"].startswith("b:")
    assert combine(recs, [None, None], Cfg)["fitness"] == pytest.approx(0.2)    # raw scores: worst of 0.7, 0.2
    assert aggregate([1.0, 5.0, 2.0], "median") == 2.0
    with pytest.raises(ValueError):
        aggregate([1.0], "best")


def test_held_out_tasks_default_to_unused_suite_tasks_and_reach_the_report(env, tmp_path):
    s, store = make_search(env, tmp_path, FakeMap(seed_noise=0.05), validation={"candidates": 2})
    assert validation_tasks(s.cfg, INSTALLED) == ["held1", "held2"]
    s.run()
    val = store.read_json("validation.json")
    assert val["tasks"] == ["held1", "held2"] and val["reference"] == "adam" and len(val["rows"]) == 2
    log = store.read_log()
    runs = [r for r in log if r.get("kind") == "validation"]
    assert {(r["task"], r["seed"]) for r in runs} == {(t, s) for t in ("held1", "held2") for s in (0, 1, 2)}
    # no held-out task is ever used for selection
    assert not [r for r in log if r.get("task", "").startswith("held") and r.get("kind") not in ("validation",
                                                                                               "horizon")]
    row = val["rows"][0]
    cell = row["tasks"]["held1"]
    diffs = [cell["scores"][str(k)] - cell["reference_scores"][str(k)] for k in range(3)]
    iv = interval(diffs)
    assert cell["difference"]["mean"] == pytest.approx(iv.mean)
    assert cell["difference"]["ci95"] == pytest.approx(t95(2) * statistics.stdev(diffs) / 3 ** 0.5)
    assert cell["verdict"] == iv.verdict()
    from deapnos.report import write_report
    text = write_report(store.dir, plots=False).read_text()
    assert "## Held-out validation" in text and "`held1`" in text and row["label"] in text
    assert "### Horizon check: 4x the steps" in text and "`held1@x4`" in text


def test_verdicts_need_the_interval_to_exclude_zero():
    assert compare({"0": 0.6, "1": 0.7, "2": 0.8}, {"0": 0.5, "1": 0.6, "2": 0.7})["verdict"] == "better"
    assert compare({"0": 0.6, "1": 0.5, "2": 0.8}, {"0": 0.5, "1": 0.6, "2": 0.7})["verdict"] == "tie"
    assert compare({"0": 0.4, "1": 0.5, "2": 0.6}, {"0": 0.5, "1": 0.6, "2": 0.7})["verdict"] == "worse"
    one_failed = compare({"0": 0.9, "1": None, "2": 0.9}, {"0": 0.5, "1": 0.6, "2": 0.7})
    assert one_failed["verdict"] == "worse" and one_failed["failed_seeds"] == ["1"]
    assert compare({"0": 0.9}, {"0": 0.5})["verdict"] == "tie"          # one seed: never a claimed win
    both = {"x": compare({"0": 0.6, "1": 0.7}, {"0": 0.5, "1": 0.6}),
            "y": compare({"0": 0.5, "1": 0.9}, {"0": 0.5, "1": 0.6})}
    ov = overall(both)
    assert ov["difference"]["mean"] == pytest.approx(statistics.fmean([0.05, 0.2]))
    assert paired_difference({"0": 1.0}, {"1": 1.0}) is None
    assert t95(1) == pytest.approx(12.706) and t95(100) == 1.96


def test_fitness_config_is_validated():
    with pytest.raises(ConfigError, match="fitness.aggregate"):
        config_from_dict({"fitness": {"aggregate": "best"}})
    with pytest.raises(ConfigError, match="search.task"):
        config_from_dict({"search": {"task": ["a", "a"]}})
    with pytest.raises(ConfigError, match="validation.seeds"):
        config_from_dict({"validation": {"seeds": []}})
    cfg = config_from_dict({"search": {"task": "x", "init_task": ["x", "y"]}})
    assert cfg.search.tasks == ["x"] and cfg.search.init_tasks == ["x", "y"]


def test_the_worked_example_of_docs_evaluation_md():
    import math

    class Cfg:
        class fitness:
            floor, aggregate = -0.9, "mean"
    recs = [{"genome": "g", "rep": "k", "seed": 0, "task": t, "status": "ok", "fitness": -math.log(loss)}
            for t, loss in (("digits-hard", 0.700), ("ill-conditioned", 1.500))]
    refs = [{"fitness": -math.log(0.776)}, {"fitness": -math.log(1.377)}]
    out = combine(recs, refs, Cfg)
    assert out["tasks"]["digits-hard"]["score"] == pytest.approx(0.103, abs=5e-4)
    assert out["tasks"]["ill-conditioned"]["score"] == pytest.approx(-0.086, abs=5e-4)
    assert out["fitness"] == pytest.approx(0.009, abs=5e-4)
    Cfg.fitness.aggregate = "worst"
    assert combine(recs, refs, Cfg)["fitness"] == pytest.approx(-0.086, abs=5e-4)


REAL = """
[run]
name = "suite"
seed = 0
backend = "serial"
plugins = ["sphere", "tabular", "ill_conditioned"]
report = true

[search]
particles = 2
timesteps = 1
mutants = 2
init_factor = 4
attempts = 1
init_task = ["tabular", "ill-conditioned"]
task = ["tabular", "ill-conditioned"]

[protocol]
screen_lrs_a = [1e-1, 1e-2, 1e-3]
screen_lrs_b = []

[elimination]
enabled = false

[validation]
tasks = ["ill-conditioned"]
seeds = [0, 1]
candidates = 1
"""


def test_a_real_search_scores_relative_to_adam_and_validates_on_held_out_tasks(tmp_path):
    """Real training on two suite tasks; held-out task given explicitly.  Checks the fitness of a
    candidate against its logged per-task scores and the reference's, and that validation is run."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    cfg = tmp_path / "suite.toml"
    # validation on a search task is allowed when named explicitly; the default never does that
    cfg.write_text(REAL, encoding="utf-8")
    env = dict(os.environ, DEAPNOS_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = subprocess.run([sys.executable, "-m", "deapnos.cli", "run", "--config", str(cfg), "--run-dir",
                           str(tmp_path / "run")], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = tmp_path / "run"
    log = [json.loads(x) for x in (run / "evaluations.jsonl").read_text().splitlines() if x.strip()]
    ref = {(r["task"], r["seed"]): r["fitness"] for r in log if r.get("kind") == "reference"}
    assert set(ref) == {("tabular", 0), ("ill-conditioned", 0)} and all(v is not None for v in ref.values())
    hof = json.loads((run / "hall_of_fame.json").read_text())
    best = hof[0]
    raw = {r["task"]: r["fitness"] for r in log if r.get("event") == "evaluation" and r.get("rep") == best["key"]
           and r.get("seed") == 0 and r.get("kind") in ("init", "mutant", "particle")}
    assert set(raw) == {"tabular", "ill-conditioned"}
    expected = sum(max(raw[t] - ref[(t, 0)], -0.9) for t in raw) / 2
    assert best["scores"]["0"] == pytest.approx(expected, abs=1e-9)
    val = json.loads((run / "validation.json").read_text())
    assert val["tasks"] == ["ill-conditioned"] and len(val["rows"]) == 1
    assert {(r["task"], r["seed"]) for r in log if r.get("kind") == "validation"} == \
        {("ill-conditioned", 0), ("ill-conditioned", 1)}
    report = (run / "report.md").read_text()
    assert "## Held-out validation" in report and val["rows"][0]["overall"]["verdict"] in report
    assert "held-out validation on ill-conditioned" in proc.stdout


# -- several references: the best of them per task and seed (issue 15) ---------------------------

def test_a_candidate_is_scored_against_the_best_reference_on_each_task_and_seed(env, tmp_path):
    s, store = make_search(env, tmp_path, FakeMap(), fitness={"reference": ["adam", "momentum"]})
    s.run()
    log = store.read_log()
    refs = [r for r in log if r.get("kind") == "reference"]
    # every reference tuned exactly once per (task, seed)
    assert sorted((r["label"], r["task"], r["seed"]) for r in refs) == \
        [(n, t, 0) for n in ("adam", "momentum") for t in ("a", "b")]
    ref_fit = {(r["label"], r["task"]): r["fitness"] for r in refs}
    best = {t: max(ref_fit[("adam", t)], ref_fit[("momentum", t)]) for t in "ab"}
    # an oracle from the logged raw scores: mean over tasks of (own - best reference), floored
    raw: dict = {}
    for r in log:
        if r.get("event") == "evaluation" and r.get("kind") in ("init", "mutant", "particle") and r["seed"] == 0:
            raw.setdefault(r["rep"], {})[r["task"]] = r["fitness"]
    hof = store.read_json("hall_of_fame.json")
    for row in hof[:3]:
        own = raw[row["key"]]
        assert row["scores"]["0"] == pytest.approx(statistics.fmean(max(own[t] - best[t], -0.9) for t in "ab"))
    # the held-out validation compares with the best reference per seed, too
    val = store.read_json("validation.json")
    assert val["references"] == ["adam", "momentum"]
    cell = val["rows"][0]["tasks"]["held1"]
    for seed in ("0", "1", "2"):
        both = [val["references_scores"][n]["held1"][seed] for n in ("adam", "momentum")]
        assert cell["reference_scores"][seed] == pytest.approx(max(both))


def test_references_are_reused_after_a_resume(env, tmp_path):
    s, store = make_search(env, tmp_path, FakeMap(), fitness={"reference": ["adam", "momentum"]},
                           validation={"enabled": False})
    s.algorithm.start()
    s.state.phase = "evolve"
    s.checkpoint()
    before = [r for r in store.read_log() if r.get("kind") == "reference"]
    assert len(before) == 4
    fake = FakeMap()
    resumed = SearchRun(s.cfg, store, None, s.context, map_fn=fake)
    assert resumed.resumed and resumed.reference("a", 0)["name"] in ("adam", "momentum")
    resumed.run()
    after = [r for r in store.read_log() if r.get("kind") == "reference"]
    assert len(after) == 4      # no reference was tuned again


def test_reference_config_errors_are_one_line():
    from deapnos import zoo
    from deapnos.search.fitness import reference_problem
    with pytest.raises(ConfigError, match=r"fitness.reference = \[\]: expected a zoo name or a non-empty list"):
        config_from_dict({"fitness": {"reference": []}})
    msg = reference_problem(["adam", "momentun"], zoo.OPTIMIZERS)
    assert msg is not None and "\n" not in msg
    assert "'momentun' is not a zoo optimizer; did you mean 'momentum'?" in msg
    assert reference_problem(["adam", "momentum"], zoo.OPTIMIZERS) is None
    assert reference_problem("adam", zoo.OPTIMIZERS) is None
    assert config_from_dict({"fitness": {"reference": "adam"}}).fitness.references == ["adam"]


# -- the horizon check ---------------------------------------------------------------------------

class RecordingMap(FakeMap):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.payloads: list[dict] = []

    def __call__(self, fn, items, on_result=None):
        self.payloads += list(items)
        return super().__call__(fn, items, on_result)


def test_the_horizon_check_runs_the_held_out_tasks_at_four_times_the_steps(env, tmp_path):
    fake = RecordingMap(seed_noise=0.05)
    s, store = make_search(env, tmp_path, fake, validation={"candidates": 2})
    s.run()
    val = store.read_json("validation.json")
    h = val["horizon"]
    assert h["factor"] == 4 and h["tasks"] == ["held1@x4", "held2@x4"] and len(h["rows"]) == 2
    long = [p for p in fake.payloads if p["task"].endswith("@x4")]
    # 2 winners + 1 reference, 2 tasks, 3 seeds; the worker builds the base task with 4x the steps
    assert len(long) == 3 * 2 * 3
    assert all(p["task_overrides"] == {"base_task": p["task"][:-3], "steps_per_epoch": 40, "total_steps": 200,
                                       "warmup_steps": 20, "screen_steps_per_epoch": 4} for p in long)
    from deapnos.search.validation import ranking_holds
    assert h["ranking_holds"] == ranking_holds(val["rows"], h["rows"])
    assert s.cfg.tasks == {}         # the config (and so the checkpoint's fingerprint) is untouched


@pytest.mark.parametrize("verdict", ["grid", "halving"])
def test_verdicts_screen_the_whole_grid_and_are_not_the_searchs_results(env, tmp_path, verdict):
    """Elimination rungs, held-out validation and the horizon check use protocol.verdict_schedule
    (default grid), the search's candidates and references the halving screen; a verdict on a (genome,
    task, seed) the search already evaluated is evaluated again, not taken from the cache."""
    fake = RecordingMap(seed_noise=0.05)
    s, store = make_search(env, tmp_path, fake, protocol={"verdict_schedule": verdict},
                           elimination={"enabled": True, "candidates": 1, "baselines": ["sgd"],
                                        "rungs": [{"task": "a", "seeds": [0, 1], "keep": 1.0}]})
    s.run()
    log = [r for r in store.read_log() if r.get("event") == "evaluation"]
    kinds = {r["kind"] for r in log}
    assert {"rung", "validation", "horizon", "init", "reference"} <= kinds
    for rec, payload in _records_with_payloads(log, fake.payloads):
        verdict_kind = rec["kind"] in ("rung", "validation", "horizon")
        want = verdict if verdict_kind else "halving"
        assert payload["protocol"]["screen_schedule"] == want, rec["kind"]
        assert rec.get("protocol") == ({"screen_schedule": "grid"} if verdict_kind and verdict == "grid" else None)
    # the rung's seed-0 runs of the winner were run again (the search had them with halving)
    winner = s.store.read_json("elimination.json")["candidates"][0]["rep"]
    rung0 = [r for r in log if r["kind"] == "rung" and r["rep"] == winner and r["seed"] == 0]
    assert len(rung0) == 1 and rung0[0]["cached"] is (verdict == "halving")
    # resume knows both results of (winner, a, 0) apart: the search's and the verdict's
    known = store.result_cache()
    assert (winner, "a", 0) in known and known[(winner, "a", 0)]["kind"] != "rung"
    assert ((winner, "a|screen_schedule=grid", 0) in known) is (verdict == "grid")


def _records_with_payloads(log, payloads):
    """(record, the payload it was evaluated from) for every evaluation that ran (not a cache hit)."""
    ran = [r for r in log if not r.get("cached")]
    assert len(ran) == len(payloads)
    return zip(ran, payloads)


def test_ranking_holds_needs_the_same_order_and_side_of_zero():
    from deapnos.search.validation import ranking_holds

    def rows(*means):
        return [{"overall": {"difference": {"mean": m}}} for m in means]
    assert ranking_holds(rows(0.2, 0.1), rows(0.3, 0.05)) is True
    assert ranking_holds(rows(0.2, 0.1), rows(0.05, 0.3)) is False
    assert ranking_holds(rows(0.2, 0.1), rows(0.3, -0.05)) is False
    assert ranking_holds(rows(0.2), [{"overall": {"difference": None}}]) is None


# -- warm start ----------------------------------------------------------------------------------

def test_seed_genomes_and_their_mutants_enter_the_initial_population(env, tmp_path):
    from deapnos import zoo
    s, store = make_search(env, tmp_path, FakeMap(), search={"seed_genomes": ["adam", "momentum"],
                                                             "seed_mutants": 1, "init_factor": 3},
                           validation={"enabled": False})
    s.algorithm.start()
    init = [r for r in store.read_log() if r.get("kind") == "init" and r["event"] == "evaluation"]
    labels = list(dict.fromkeys(r.get("label") for r in init if r.get("label")))
    assert labels == ["adam", "adam~", "momentum", "momentum~"]
    adam = zoo.get("adam", space=s.space)
    seeded = [r for r in init if r.get("label") == "adam"]
    assert {r["rep"] for r in seeded} == {s.representative(adam)}
    # the population size is unchanged: 3 x 2 = 6, four seeded and two random
    assert len({r["rep"] for r in init}) == 6


def test_a_seed_genome_that_fails_the_integrity_check_is_a_one_line_error(env, tmp_path):
    from deapnos.search.runner import SearchError
    s, _ = make_search(env, tmp_path, FakeMap(), search={"seed_genomes": ["none ~ sub(g, g)"]})
    with pytest.raises(SearchError) as err:
        s.run()
    msg = str(err.value)
    assert "'none ~ sub(g, g)' fails the integrity check 'sphere'" in msg and "\n" not in msg
    s2, _ = make_search(env, tmp_path / "x", FakeMap(), search={"seed_genomes": ["no-such-optimizer"]})
    with pytest.raises(SearchError, match="search.seed_genomes: 'no-such-optimizer'"):
        s2.run()


def test_the_leaderboard_compares_with_the_best_reference_on_each_seed(env, tmp_path):
    s, store = make_search(env, tmp_path, FakeMap(), fitness={"reference": ["adam", "momentum"]},
                           elimination={"enabled": True, "candidates": 2, "baselines": ["sgd"],
                                        "rungs": [{"task": "a", "seeds": [0, 1, 2], "keep": 1.0}]},
                           validation={"enabled": False})
    s.run()
    elim = store.read_json("elimination.json")
    rows = {r["label"]: r for r in elim["rungs"][-1]["entries"]}
    assert {"sgd", "adam", "momentum"} <= set(rows)       # the references join the baselines
    best = {k: max(rows["adam"]["scores"][k], rows["momentum"]["scores"][k]) for k in ("0", "1", "2")}
    assert elim["reference"]["scores"] == pytest.approx(best)
    board = {r["label"]: r for r in elim["leaderboard"]}
    assert board["c1"]["reference"] == "best of adam/momentum"
    diffs = [rows["c1"]["scores"][k] - best[k] for k in ("0", "1", "2")]
    assert board["c1"]["vs_reference_ci"]["mean"] == pytest.approx(statistics.fmean(diffs))
    assert board["c1"]["verdict"] == interval(diffs).verdict()


def test_verdict_protocol_sets_only_what_differs_from_the_search():
    from deapnos.evaluate.protocol import ProtocolConfig
    from deapnos.search.evaluator import result_key, verdict_protocol
    assert verdict_protocol(ProtocolConfig()) == {"screen_schedule": "grid"}
    assert verdict_protocol(ProtocolConfig(screen_schedule="grid")) is None
    assert verdict_protocol(ProtocolConfig(verdict_schedule="halving")) is None
    assert verdict_protocol(ProtocolConfig(screen="paper")) is None      # the paper's screen has no halving
    assert result_key("k", "t", 1) == ("k", "t", 1)
    assert result_key("k", "t", 1, {"screen_schedule": "grid"}) == ("k", "t|screen_schedule=grid", 1)
    with pytest.raises(ValueError, match="verdict_schedule"):
        ProtocolConfig.from_dict({"verdict_schedule": "sometimes"})
