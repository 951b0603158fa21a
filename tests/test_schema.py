"""One declarative schema per file format (deapnos/schema.py): config.toml, its [protocol] table,
checkpoint.json and status.json each refuse a wrong type, an unknown field and a missing required
field with one line naming the file, the field and the value; config.toml round-trips through tomli-w."""
from __future__ import annotations

import subprocess
import sys

import json
import math
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from deapnos.schema import CONFIG_RULES, JSON_RULES, SchemaError, parse, setting
from deapnos.search.store import load_run_config
from deapnos.search.config import (CONFIG_DIR, ConfigError, config_from_dict, dump_toml, load_config,
                                   parse_config)
from deapnos.search.store import CHECKPOINT, STATUS, RunStore, StoreError

PRESETS = sorted(CONFIG_DIR.glob("*.toml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_round_trips_through_the_toml_writer(preset):
    cfg = load_config(preset)
    again = parse_config(tomllib.loads(dump_toml(cfg.to_dict())), source=cfg.source)
    assert again == cfg


# -- the four file formats: a wrong type, an unknown field, a missing field --------------------------

def _config_file(tmp_path: Path, text: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(text)
    return run


def _config(tmp_path, text):
    load_run_config(_config_file(tmp_path, text))


def _checkpoint(tmp_path, state):
    store = RunStore(tmp_path / "run", create=True)
    doc = {"format": "deapnos.checkpoint", "version": 2, "config": None, "state": state}
    store.path(CHECKPOINT).write_text(json.dumps(doc))
    store.read_checkpoint()


def _status(tmp_path, doc):
    store = RunStore(tmp_path / "run", create=True)
    store.path(STATUS).write_text(json.dumps(doc))
    store.read_status()


PARTICLE = {"index": 0, "genome": "g", "rep": "k"}
CASES = {
    "config-type": (_config, '[search]\nparticles = "x"\n', "config.toml",
                    "search.particles = 'x': expected an integer"),
    "config-unknown": (_config, "[search]\nparticlez = 3\n", "config.toml", "unknown config field search.particlez"),
    "config-nested": (_config, "[[elimination.rungs]]\nseeds = [0]\nkeep = 0.5\ntask = 3\n", "config.toml",
                       "elimination.rungs[0].task = 3: expected a string"),
    "config-bound": (_config, "[search]\nparticles = 1000000000000\n", "config.toml",
                     "search.particles = 1000000000000: must be <= 10000"),
    "protocol-type": (_config, '[protocol]\nstep_scale = "x"\n', "config.toml",
                      "protocol.step_scale = 'x': expected a number"),
    "protocol-unknown": (_config, "[protocol]\nnope = 1\n", "config.toml", "unknown config field protocol.nope"),
    "protocol-missing": (_config, "[protocol]\nscreen_lrs_a = []\n", "config.toml",
                         "[protocol]: screen_lrs_a is empty and no fixed lr is given"),
    "protocol-nan": (_config, "[protocol]\nlr = nan\n", "config.toml", "protocol.lr = nan: expected a finite number"),
    "checkpoint-type": (_checkpoint, {"seq": "x"}, "checkpoint.json", "field state.seq = 'x': expected an integer"),
    "checkpoint-unknown": (_checkpoint, {"nope": 1}, "checkpoint.json", "unknown field state.nope"),
    "checkpoint-missing": (_checkpoint, {"particles": [{"index": 0, "rep": "k"}]}, "checkpoint.json",
                           "missing field state.particles[0].genome"),
    "checkpoint-nested": (_checkpoint, {"particles": [{**PARTICLE, "age": "old"}]}, "checkpoint.json",
                          "field state.particles[0].age = 'old': expected an integer"),
    "status-type": (_status, {"status": "running", "error": "", "time": "x"}, "status.json",
                    "field time = 'x': expected a number"),
    "status-unknown": (_status, {"status": "ok", "error": "", "time": 1.0, "nope": 1}, "status.json",
                       "unknown field nope"),
    "status-missing": (_status, {"status": "ok", "time": 1.0}, "status.json", "missing field error"),
    "status-choice": (_status, {"status": "fine", "error": "", "time": 1.0}, "status.json",
                      "field status = 'fine': allowed values: starting, running, ok, failed, interrupted"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_file_is_a_one_line_error_naming_the_file_and_the_field(tmp_path, case):
    read, content, file, words = CASES[case]
    with pytest.raises((ConfigError, StoreError)) as err:
        read(tmp_path, content)
    text = str(err.value)
    assert "\n" not in text and file in text and words in text, text


def test_a_config_field_left_out_takes_its_default(tmp_path):
    cfg = load_run_config(_config_file(tmp_path, "[search]\nparticles = 3\n[protocol]\nepochs = 2\n"))
    assert (cfg.search.particles, cfg.search.timesteps, cfg.protocol.epochs, cfg.protocol.step_scale) == (3, 5, 2, 1.0)


def test_a_checkpoint_and_a_status_written_by_deapnos_read_back(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    store.save_checkpoint({"timestep": 1, "particles": [{**PARTICLE, "best_fitness": -math.inf}]})
    assert store.load_checkpoint()["timestep"] == 1
    store.write_status("interrupted", "stopped by SIGINT", signal="SIGINT", resume="deapnos run --resume x")
    assert store.read_status()["signal"] == "SIGINT"


# -- numeric bounds, checked before any work ----------------------------------------------------------

@pytest.mark.parametrize("override, words", [
    ("search.particles=1000000000000", "search.particles = 1000000000000: must be <= 10000"),
    ("search.timesteps=1000001", "search.timesteps = 1000001: must be <= 100000"),
    ("search.mutants=-1", "search.mutants = -1: must be >= 1"),
    ('protocol.step_scale="x"', "protocol.step_scale = 'x': expected a number"),
    ("protocol.step_scale=0", "protocol.step_scale = 0: must be > 0"),
    ("protocol.lr=1e9", "protocol.lr = 1000000000.0: must be <= 1000000.0"),
    ("protocol.screen_lrs_a=[0.1, -1]", "protocol.screen_lrs_a[1] = -1: must be > 0"),
    ("mutation.op=inf", "mutation.op = inf: expected a finite number"),
    ("run.seed=-3", "run.seed = -3: must be >= 0"),
])
def test_numeric_fields_are_bounded(override, words):
    with pytest.raises(ConfigError) as err:
        config_from_dict({}, [override])
    assert words in str(err.value) and "\n" not in str(err.value)


def test_validate_is_a_deprecated_alias_of_parse_config():
    from deapnos.search.config import validate
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = validate({"search": {"particles": 3}})
    assert any(issubclass(w.category, DeprecationWarning) and "parse_config" in str(w.message) for w in caught)
    assert cfg == parse_config({"search": {"particles": 3}})


# -- the validator itself -----------------------------------------------------------------------------

@dataclass
class _Inner:
    k: int = setting(1, minimum=0)


@dataclass
class _Outer:
    name: str
    mode: Literal["a", "b"] = "a"
    limit: int | None = None
    names: str | list[str] = setting("x", names="a name")
    inner: list[_Inner] = setting([])
    share: float = setting(0.5, minimum=0, maximum=1)


def test_the_validator_reads_type_hints_and_field_metadata():
    out = parse(_Outer, {"name": "n", "limit": None, "names": ["p", "q"], "inner": [{"k": 2}], "share": 1})
    assert out == _Outer("n", "a", None, ["p", "q"], [_Inner(2)], 1.0) and isinstance(out.share, float)
    assert parse(float, 1, "x", JSON_RULES) == 1 and isinstance(parse(float, 1, "x", JSON_RULES), int)
    assert math.isinf(parse(float, math.inf, "x", JSON_RULES))
    for data, message in [
        ({}, "missing field name (required)"),
        ({"name": "n", "mode": "c"}, "field mode = 'c': allowed values: a, b"),
        ({"name": "n", "limit": "3"}, "field limit = '3': expected an integer"),
        ({"name": "n", "names": ["p", "p"]}, "field names = ['p', 'p']: expected a name or a non-empty list"),
        ({"name": "n", "inner": [{"k": -1}]}, "field inner[0].k = -1: must be >= 0"),
        ({"name": "n", "share": math.nan}, "field share = nan: expected a finite number"),
        ({"name": "n", "share": True}, "field share = True: expected a number"),
        ({"name": "n", "other": 1}, "unknown field other (allowed: name, mode"),
    ]:
        with pytest.raises(SchemaError) as err:
            parse(_Outer, data, "", CONFIG_RULES)
        assert str(err.value).startswith(message), (data, str(err.value))


def test_protocol_numbers_stay_as_written_so_old_fingerprints_still_match():
    # before the schema, [protocol] kept an integer in a float field as written: the config fingerprint
    # of a run folder hashes it, and that folder must still resume
    cfg = config_from_dict({}, ["protocol.step_scale=2", "protocol.timeout_s=60", "protocol.screen_lrs_a=[1, 0.1]"])
    table = cfg.to_dict()["protocol"]
    assert table == {"step_scale": 2, "timeout_s": 60, "screen_lrs_a": [1.0, 0.1]}
    assert isinstance(table["step_scale"], int) and isinstance(table["screen_lrs_a"][0], float)


def test_a_plugin_section_with_unresolvable_annotations_is_read_by_its_defaults():
    from deapnos.search.config import build_section

    @dataclass
    class Section:
        level: NotImportedHere = 1      # noqa: F821 - a name only a type checker would see  # type: ignore

    assert build_section(Section, {"level": 3}, "plugin.x").level == 3
    with pytest.raises(ConfigError, match=r"config field plugin\.x\.level = 'a': expected an integer"):
        build_section(Section, {"level": "a"}, "plugin.x")


def test_the_configs_momentum_kinds_are_the_spaces():
    from deapnos.search import config
    from deapnos.space import psets
    assert config.MOMENTUM_KINDS == psets.MOMENTUM_KINDS


def test_reading_a_config_imports_no_torch():
    """`deapnos status` and `deapnos report` read configs; torch would cost them seconds."""
    code = ("import sys\nfrom deapnos.search.config import load_config\nload_config('quickstart')\n"
            "print('torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
