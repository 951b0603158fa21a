"""Search configuration: TOML files, documented defaults, validation, ``a.b=value`` overrides.

Provides :class:`Config` (one dataclass per section), :func:`load_config`, :func:`apply_overrides` and
:func:`config_fingerprint`.  Every number of docs/paper.md §5 is a field with the paper's value as its
default; files are read with :mod:`tomllib` (no eval) and a bad field gets an error naming it.
Sections, presets and the paper's symbols: docs/search.md, "Configs"; every field: ``deapnos/configs/paper.toml``.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypedDict

from ..errors import ConfigError     # defined low (config_file raises it too); importable from here
from ..evaluate.protocol_config import ProtocolConfig, protocol_config, protocol_table
from ..schema import SchemaError, parse, setting
# the TOML and fingerprint halves of the config, importable from here as before
from .config_file import _toml_value, apply_overrides, dump_toml, merge, parse_override, toml_value  # noqa: F401
from .fingerprint import (FINGERPRINT_IGNORES, RESUME_OVERRIDABLE, _flatten, config_fingerprint,  # noqa: F401
                          fingerprint_differences)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
BUILTIN_CONFIGS = ("quickstart", "paper", "authors-code")
DEFAULT_CONFIG = "quickstart"



# The backend of a config that names no run.backend but asks for several workers: the local process
# pool, which needs no SCOOP launch (no broker, no entry file) and reports every error in the same
# process.  SCOOP stays the quickstart's choice and the one for several hosts (--backend scoop).
DEFAULT_PARALLEL_BACKEND = "pool"


def default_backend(workers: int) -> str:
    """The backend of a config that names none: serial for one worker, the parallel default for more."""
    return DEFAULT_PARALLEL_BACKEND if workers > 1 else "serial"


def _f(default, doc: str, **constraints):
    """A config field: :func:`deapnos.schema.setting` (documentation and constraints in the metadata;
    ``names="a task name"``: a name or a non-empty list of distinct names)."""
    return setting(default, doc, **constraints)


# deapnos.space.psets.MOMENTUM_KINDS, written out here so that reading a config imports no torch
# (`deapnos status` and `report` stay fast); tests/test_schema.py keeps the two equal
MOMENTUM_KINDS = ("none", "mom", "nest", "nesterov")
SEED_MAX = 2 ** 32 - 1      # numpy's and torch's seeds stay below 2**32


@dataclass
class RunConfig:
    name: str = _f("search", "name of the run; run folders are <output_dir>/<name>-<time>")
    seed: int = _f(0, "seed of every random choice of the search (same seed, same run)", minimum=0,
                   maximum=SEED_MAX)
    algorithm: str = _f("particles", "particles: the paper's particle algorithm with aging; random: random "
                        "search with the same budget and evaluator; regularized: aging evolution (Real et al. "
                        "2019), for comparison; or one a plugin adds (checked when the run starts)")
    backend: str = _f("serial", "map backend: serial (in-process), pool (local process pool), scoop, or one a "
                      "plugin adds (checked when the run starts); a config that names none runs serial with "
                      "1 worker and pool with more")
    workers: int = _f(1, "worker processes of the pool/scoop backends (serial runs in one process)", minimum=1,
                      maximum=4096)
    output_dir: str = _f("runs", "folder under which run folders are created")
    plugins: list[str] = _f([], "extra plugin modules to load (like -p), besides the entry points")
    compat: bool = _f(False, "reproduce the authors' released code, bugs included (the authors-code preset; "
                      "docs/search.md, 'Compat mode', lists every change)")
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "auto: one GPU per worker when GPUs exist, else CPU; cpu; "
                                                "cuda")
    torch_threads: int = _f(1, "torch threads per worker process", minimum=1, maximum=1024)
    stall_timeout: float = _f(1800.0, "scoop backend: seconds without any result (or 3x the slowest evaluation, "
                              "if longer) after which the run stops with a resume command, as when a host "
                              "dies; 0 waits forever", minimum=0, maximum=1e7)
    report: bool = _f(True, "write report.md (plots, leaderboard, exported winners) at the end of the run")
    data_dir: str = _f("", "root of the datasets ($DEAPNOS_DATA) for tasks that need data, e.g. CIFAR-10; "
                       "'' keeps the environment's")


@dataclass
class SearchConfig:
    particles: int = _f(50, "n: number of particles (paper 50)", minimum=1, maximum=10000)
    timesteps: int = _f(5, "timesteps per particle (the authors' code and log: 5, 'Depth 1/5..5/5'; the "
                        "paper's m = 7)", minimum=0, maximum=100000)
    mutants: int = _f(7, "mutant slots per particle and timestep (the authors' code and log: 7; the paper's "
                      "k = 5)", minimum=1, maximum=10000)
    init_factor: int = _f(10, "initial population = init_factor x particles random genomes (paper 10 -> 500)",
                          minimum=1, maximum=10000)
    attempts: int = _f(4, "evaluation attempts per mutant slot: a failed mutant is redrawn (paper 4)", minimum=1,
                       maximum=1000)
    init_task: str | list[str] = _f("cifar10-convnet", "surrogate task(s) of the initial population (paper: "
                                    "ConvNet base 32, 8000 steps); a name or a list of names", names="a task name")
    task: str | list[str] = _f("cifar10-convnet48", "surrogate task(s) of the evolution (paper: ConvNet base 48, "
                               "augmented, 16000 steps); a name or a list: a candidate's fitness aggregates its "
                               "scores on every one ([fitness])", names="a task name")
    eval_seed: int = _f(0, "seed of every search evaluation (common random numbers: model init, data order)",
                        minimum=0, maximum=SEED_MAX)
    reevaluate_particles: bool = _f(True, "re-evaluate each particle on the search task before its first "
                                    "timestep (paper: 'INIT PARTICLE')")
    max_age: int = _f(3, "aging: a particle whose best fitness has not improved for more than max_age "
                      "timesteps restarts; 0 turns aging off (the paper has no aging)", minimum=0, maximum=100000)
    restart: Literal["fresh", "hof"] = _f("fresh", "how an aged-out particle restarts: fresh (a new random "
                                          "genome) or hof (a mutant of a random hall-of-fame member)")
    acceptance: Literal["always", "improve"] = _f("always", "always: the particle moves to its best child even "
                                                  "when it is worse (paper); improve: only when the child beats "
                                                  "the particle")
    hall_of_fame: int = _f(10, "genomes kept in hall_of_fame.json, ranked by mean fitness over seeds", minimum=1,
                           maximum=1000000)
    momentum_kinds: list[str] = _f(["none", "mom", "nest"], "momentum kinds drawn at initialisation and by the "
                                   "momentum mutation (paper: None, Mom, Nest)",
                                   item_choices=MOMENTUM_KINDS, nonempty=True)
    integrity_checks: list[str] = _f(["sphere"], "integrity checks a genome must pass (docs/paper.md §5.3); [] "
                                     "runs none")
    reeval_top: int = _f(0, "after each timestep re-evaluate the top reeval_top of the hall of fame with the "
                         "extra seeds (docs/paper.md §8.1.3); 0 = off", minimum=0, maximum=100000)
    reeval_seeds: list[int] = _f([1, 2], "extra evaluation seeds of the re-evaluation", minimum=0,
                                 maximum=SEED_MAX)
    max_tries: int = _f(200, "mutation/sampling draws per candidate before giving up (integrity failures, "
                        "duplicates and no-op mutations are redrawn)", minimum=1, maximum=1000000)
    population: int = _f(0, "run.algorithm = regularized: P, the population (the last P children); 0 = "
                         "particles x mutants, one timestep's children", minimum=0, maximum=1000000)
    sample: int = _f(5, "run.algorithm = regularized: S, members sampled per cycle; the best of them is "
                     "mutated (at most the population)", minimum=1, maximum=1000000)
    seed_genomes: list[str] = _f([], "warm start: zoo names or genome files that enter the initial population, "
                                 "each with search.seed_mutants mutants of it (the rest stays random); [] = a "
                                 "cold start")
    seed_mutants: int = _f(2, "mutants of each seed genome added to the initial population", minimum=0,
                           maximum=10000)

    @property
    def tasks(self) -> list[str]:
        """``task`` as a list of names."""
        return as_names(self.task)

    @property
    def init_tasks(self) -> list[str]:
        """``init_task`` as a list of names."""
        return as_names(self.init_task)


def as_names(value: str | list[str]) -> list[str]:
    """A name or a list of names, as a list."""
    return [value] if isinstance(value, str) else list(value)


@dataclass
class FitnessConfig:
    """What a candidate's fitness is (docs/evaluation.md, "How a fitness is computed")."""

    @property
    def references(self) -> list[str]:
        """``reference`` as a list of names."""
        return as_names(self.reference)

    relative: bool = _f(True, "score each task relative to the reference optimizer tuned by the same protocol "
                        "on the same task and seed (true), or use the task's raw score (false: the paper)")
    reference: str | list[str] = _f("adam", "the reference optimizer(s): a zoo name or a non-empty list of zoo "
                                    "names. Each is tuned once per task and seed (cached in the run folder, reused "
                                    "after a resume); a candidate's score on a task and seed is its own minus the "
                                    "BEST reference's there", names="a zoo name")
    aggregate: Literal["mean", "median", "worst"] = _f("mean", "how the per-task scores of a candidate combine: "
                                                       "mean, median or worst (the minimum)")
    floor: float = _f(-0.9, "relative scores below this are raised to it, so that every trained candidate "
                      "ranks above a failed one (-1)", minimum=-1.0, maximum=0.0)


@dataclass
class ValidationConfig:
    """Held-out validation of the winners on tasks never used for selection."""
    enabled: bool = _f(True, "validate the winners on held-out tasks after the search")
    tasks: list[str] = _f([], "held-out tasks; [] = every installed suite task that the search and the "
                          "elimination did not use")
    seeds: list[int] = _f([0, 1, 2], "seeds of every held-out evaluation (at least 3 for a 95% interval)",
                          minimum=0, maximum=SEED_MAX, nonempty=True, unique=True)
    candidates: int = _f(2, "winners validated: the top of the leaderboard (or of the hall of fame)",
                         minimum=1, maximum=10000)
    horizon_factor: int = _f(4, "the horizon check: the held-out tasks are run once more with this many times "
                             "the steps (same epochs, longer schedule); 0 or 1 = off", minimum=0, maximum=1000)
    horizon_seeds: list[int] = _f([0, 1, 2], "seeds of the horizon check", minimum=0, maximum=SEED_MAX,
                                  unique=True)


@dataclass
class InitConfig:
    """Random genomes, resembling the original's graph initialisation (docs/paper.md §1.6)."""
    hidden_nodes: int = _f(5, "budget of op nodes below the root (the original's 5 hidden nodes)", minimum=1,
                           maximum=1000)
    p_identity: float = _f(0.2, "probability that a unary op is the identity", minimum=0.0, maximum=1.0)
    p_operand: float = _f(0.8, "probability that an argument is an operand rather than another op node",
                          minimum=0.0, maximum=1.0)
    p_hidden_binary: float = _f(0.25, "probability that a hidden node is binary", minimum=0.0, maximum=1.0)
    p_root_binary: float = _f(0.75, "probability that the root is binary", minimum=0.0, maximum=1.0)
    p_decay: float = _f(0.15, "probability of a decay on each edge", minimum=0.0, maximum=1.0)
    p_root_unary_decay: float = _f(0.15, "decay probability on a unary root's edge (the original's test is "
                                   "inverted: 0.85 in compat mode)", minimum=0.0, maximum=1.0)
    p_schedule: float = _f(0.0, "probability that a random genome starts with a random LR-schedule tree "
                           "(the original has none)", minimum=0.0, maximum=1.0)


SHARE_MAX = 1e6     # operator shares are normalised: only their ratios matter


@dataclass
class MutationConfig:
    """Shares of the mutation operators (normalised) and the limits every mutant respects."""
    op: float = _f(0.40, "change an op to another of the same type and arity (paper 40%)", minimum=0.0,
                   maximum=SHARE_MAX)
    branch: float = _f(0.30, "change a connection: replace an argument by an operand or a branch (paper 30%)",
                       minimum=0.0, maximum=SHARE_MAX)
    toggle: float = _f(0.10, "unary <-> binary toggle (insert / shrink an argument) (paper 10%)", minimum=0.0,
                       maximum=SHARE_MAX)
    momentum: float = _f(0.10, "change the momentum kind (paper 10%)", minimum=0.0, maximum=SHARE_MAX)
    decay: float = _f(0.10, "add / remove / mutate a decay on an edge (paper 10%)", minimum=0.0, maximum=SHARE_MAX)
    schedule: float = _f(0.05, "mutate the LR-schedule tree (not in the paper; 0 in compat mode). Shares are "
                         "normalised: with the defaults the paper's five shares are scaled by 1/1.05",
                         minimum=0.0, maximum=SHARE_MAX)
    space: Literal["open", "paper"] = _f("open", "paper: every mutant fits the original's graph, at most "
                                         "init.hidden_nodes + 1 distinct ops (5 hidden nodes and the root: 6); "
                                         "open: only the height and size limits below bound a mutant (compat "
                                         "mode implies paper)")
    max_height: int = _f(12, "height limit of the update tree (DEAP height: a leaf is 0)", minimum=1, maximum=1000)
    max_size: int = _f(80, "node limit of the update tree", minimum=3, maximum=100000)
    decay_max_height: int = _f(2, "height limit of a decay expression (the original's 2-node decay graph)",
                               minimum=0, maximum=1000)
    schedule_max_height: int = _f(3, "height limit of the LR-schedule tree", minimum=0, maximum=1000)
    schedule_max_value: float = _f(20.0, "a schedule multiplier must stay in [0, schedule_max_value] and be finite",
                                   minimum=0.0, maximum=1e12)
    branch_p_operand: float = _f(0.8, "a new argument is an operand with this probability, else a branch",
                                 minimum=0.0, maximum=1.0)
    branch_p_copy: float = _f(0.5, "a new branch copies an existing subtree (the original reconnects to another "
                              "hidden node) with this probability, else it is freshly generated",
                              minimum=0.0, maximum=1.0)
    branch_nodes: int = _f(2, "op-node budget of a freshly generated branch", minimum=1, maximum=1000)
    decay_tries: int = _f(50, "draws of a decay/schedule expression until one is valid (docs/paper.md §2.3)",
                          minimum=1, maximum=1000000)


@dataclass
class CacheConfig:
    """The global dedup cache (docs/paper.md §8.1.7)."""
    fingerprint: bool = _f(True, "also dedup by behaviour: the first updates on a fixed probe problem, rounded")
    probe_steps: int = _f(24, "steps of the probe problem", minimum=1, maximum=100000)
    digits: int = _f(6, "significant digits the probe trajectory is rounded to", minimum=1, maximum=15)


@dataclass
class RungConfig:
    task: str = _f("digits", "task of this rung")
    seeds: list[int] = _f([0, 1, 2], "seeds: every survivor and baseline is evaluated with each", minimum=0,
                          maximum=SEED_MAX, nonempty=True)
    keep: float = _f(0.5, "fraction of the candidates that climbs to the next rung", minimum=0.0, maximum=1.0)


@dataclass
class EliminationConfig:
    enabled: bool = _f(True, "run the progressive elimination after the search")
    candidates: int = _f(5, "top of the hall of fame that enters the first rung", minimum=1, maximum=10000)
    baselines: list[str] = _f(["adam"], "zoo optimizers evaluated at every rung with the same seeds")
    min_keep: int = _f(1, "at least this many candidates climb each rung", minimum=1, maximum=10000)
    rungs: list[RungConfig] = _f([], "the ladder: a list of [[elimination.rungs]] tables (task, seeds, keep)")


@dataclass
class ReportConfig:
    top: int = _f(3, "winners shown with equation, LaTeX, schedule and exported .py", minimum=1, maximum=1000)
    plots: bool = _f(True, "draw the plots (matplotlib, Agg)")


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    init: InitConfig = field(default_factory=InitConfig)
    mutation: MutationConfig = field(default_factory=MutationConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)   # with run.compat's defaults applied
    tasks: dict = field(default_factory=dict)
    plugin: dict = field(default_factory=dict)      # [plugin.NAME] tables, checked by the plugins' dataclasses
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    elimination: EliminationConfig = field(default_factory=EliminationConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    source: str = ""    # where it was read from (not a TOML field)

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            if f.name == "source" or (f.name == "plugin" and not self.plugin):
                continue
            value = getattr(self, f.name)
            if f.name == "protocol":        # the fields set by the config, as it was written
                value = protocol_table(self.protocol, self.run.compat)
            elif dataclasses.is_dataclass(value) and not isinstance(value, type):   # an instance, never a class
                value = dataclasses.asdict(value)
            out[f.name] = copy.deepcopy(value)
        return out

    def to_toml(self) -> str:
        return dump_toml(self.to_dict())


SECTIONS = {"run": RunConfig, "search": SearchConfig, "init": InitConfig, "mutation": MutationConfig,
            "cache": CacheConfig, "fitness": FitnessConfig, "elimination": EliminationConfig,
            "validation": ValidationConfig, "report": ReportConfig}
# not a fixed dataclass section: [protocol] is read into a ProtocolConfig (compat-aware, checked here);
# [tasks.NAME] is checked against Task fields and [plugin.NAME] against the dataclass of the plugin
# that reads it (deapnos_config_sections) when the run starts
FREE_SECTIONS = ("protocol", "tasks", "plugin")


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------

class TaskOverrides(TypedDict, total=False):
    """A ``[tasks.NAME]`` table: the :class:`~deapnos.evaluate.tasks.Task` fields a config may change."""
    data_path: str
    epochs: int
    steps_per_epoch: int
    screen_steps_per_epoch: int
    batch_size: int
    total_steps: int
    warmup_steps: int
    options: dict[str, Any]
    protocol_overrides: dict[str, Any]


TASK_OVERRIDE_FIELDS = tuple(TaskOverrides.__annotations__)


def _default(f: dataclasses.Field) -> Any:
    """The field's default: its value, or a fresh one from its factory (every config field has one)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    assert callable(f.default_factory), f"config field {f.name} has no default"
    return f.default_factory()


def _config_error(exc: SchemaError) -> ConfigError:
    """The one-line ConfigError of a schema error: ``config field PATH = VALUE: PROBLEM``."""
    return ConfigError(exc.describe("config field"))


def parse_section(tp, data, path: str):
    """``data`` (a table, or any value) checked against the declared type ``tp`` (a section's
    dataclass, a ``dict[str, X]``...) at ``path``; raises :class:`ConfigError` naming the field."""
    try:
        return parse(tp, data, path)
    except SchemaError as exc:
        raise _config_error(exc) from None


def build_section(cls, data: dict, path: str):
    """An instance of dataclass ``cls`` from the table ``data`` at ``path``; raises ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section [{path}] must be a table, found {type(data).__name__}")
    return parse_section(cls, data, path)


def parse_config(data: dict, source: str = "", where: str | None = None) -> Config:
    """A :class:`Config` from a (merged) TOML document; raises :class:`ConfigError` (one line: where
    the document came from, the field and the value).  ``where``: what the error names (default:
    ``source`` when it is a file).  Every section is checked against its declaration
    (:mod:`deapnos.schema`), then what relates fields to each other."""
    where = where if where is not None else ("" if source.startswith("<") else source)
    try:
        return _parse_config(data, source)
    except ConfigError as exc:
        if where and not str(exc).startswith(where):
            raise ConfigError(f"{where}: {exc}") from None
        raise


def validate(data: dict, source: str = "") -> Config:
    """Deprecated name of :func:`parse_config` (``validate`` reads as held-out scoring,
    :mod:`deapnos.search.validation`)."""
    import warnings
    warnings.warn("deapnos.search.config.validate is deprecated: use parse_config", DeprecationWarning,
                  stacklevel=2)
    return parse_config(data, source)


def _parse_config(data: dict, source: str) -> Config:
    if not isinstance(data, dict):
        raise ConfigError("a config is a TOML table")
    allowed = set(SECTIONS) | set(FREE_SECTIONS)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"unknown config section [{unknown[0]}] (allowed: {', '.join(sorted(allowed))})")
    cfg = Config(source=source)
    for name, cls in SECTIONS.items():
        if name in data:
            setattr(cfg, name, build_section(cls, data[name], name))
    try:            # every field checked here, by name; compat's defaults under what the table sets
        cfg.protocol = protocol_config(data.get("protocol", {}), cfg.run.compat)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if "tasks" in data:
        if not isinstance(data["tasks"], dict) or not all(isinstance(v, dict) for v in data["tasks"].values()):
            raise ConfigError("config section [tasks] holds one table per task: [tasks.NAME] with fields "
                              + ", ".join(TASK_OVERRIDE_FIELDS))
        cfg.tasks = copy.deepcopy(parse_section(dict[str, TaskOverrides], data["tasks"], "tasks"))
    if "plugin" in data:
        if not isinstance(data["plugin"], dict) or not all(isinstance(v, dict) for v in data["plugin"].values()):
            raise ConfigError("config section [plugin] holds one table per plugin section: [plugin.NAME]")
        cfg.plugin = copy.deepcopy(data["plugin"])      # checked by the plugins' dataclasses (Context)
    if "backend" not in (data.get("run") or {}):
        cfg.run.backend = default_backend(cfg.run.workers)
    _check_meaning(cfg)
    _check_run_name(cfg)
    return cfg


def _check_meaning(cfg: Config):
    """What the types and bounds cannot say: names that must not be empty, fields that relate."""
    s, v = cfg.search, cfg.validation
    if not all(x for x in s.seed_genomes):
        raise ConfigError(f"config field search.seed_genomes = {s.seed_genomes!r}: a list of zoo names or "
                          "genome files")
    if not all(x for x in v.tasks):
        raise ConfigError(f"config field validation.tasks = {v.tasks!r}: a list of task names")
    if s.reeval_top and s.eval_seed in s.reeval_seeds:
        raise ConfigError(f"config field search.reeval_seeds: must not contain search.eval_seed={s.eval_seed}")
    m = cfg.mutation
    if sum((m.op, m.branch, m.toggle, m.momentum, m.decay, m.schedule)) <= 0:
        raise ConfigError("config section [mutation]: the operator shares op, branch, toggle, momentum, "
                          "decay, schedule must not all be 0")


# ----------------------------------------------------------------------------------------------
# reading, merging, overrides
# ----------------------------------------------------------------------------------------------

def config_path(name_or_path: str | Path) -> Path:
    """A built-in config name (``quickstart``, ``paper``, ``authors-code``) or a TOML file path."""
    text = str(name_or_path)
    if text in BUILTIN_CONFIGS:
        return CONFIG_DIR / f"{text}.toml"
    path = Path(text)
    if not path.exists():
        raise ConfigError(f"config file {text!r} not found (built-in configs: {', '.join(BUILTIN_CONFIGS)})")
    return path


def read_toml(path: str | Path) -> dict:
    from .config_file import read_config_file       # a regular UTF-8 file, bounded in size and depth
    return read_config_file(path)


def load_config(name_or_path: str | Path | None = None, overrides=(), extra: dict | None = None) -> Config:
    """Read a config (default: quickstart), merge ``extra`` then the ``a.b=value`` overrides, validate."""
    path = config_path(name_or_path or DEFAULT_CONFIG)
    data = read_toml(path)
    if extra:
        data = merge(data, extra)
    data = apply_overrides(data, overrides)
    changed = [*(["extra settings"] if extra else []), *(["the overrides"] if overrides else [])]
    return parse_config(data, source=str(path), where=f"{path}{' with ' + ' and '.join(changed) if changed else ''}")


def config_from_dict(data: dict, overrides=()) -> Config:
    return parse_config(apply_overrides(data, overrides), source="<dict>")


def field_docs() -> dict[str, list[tuple[str, Any, str]]]:
    """``{section: [(field, default, doc)]}``, for docs and ``--help``."""
    out = {}
    for name, cls in list(SECTIONS.items()) + [("elimination.rungs", RungConfig)]:
        rows = []
        for f in fields(cls):
            default = _default(f)
            rows.append((f.name, default, f.metadata.get("doc", "")))
        out[name] = rows
    return out


# ----------------------------------------------------------------------------------------------
# run names and the config fingerprint of a checkpoint
# ----------------------------------------------------------------------------------------------

RUN_NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}"
def _check_run_name(cfg: Config) -> None:
    import re
    name = cfg.run.name
    if not re.fullmatch(RUN_NAME_PATTERN, name):
        raise ConfigError(f"config field run.name = {name!r}: a run name is a plain name (letters, digits, '_' "
                          f"and '-', at most 64, no '/' or '.'), so the run folder stays inside run.output_dir; "
                          f"e.g. run.name=\"my-search\"")
