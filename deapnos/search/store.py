"""The run folder: config snapshot, evaluation log, checkpoint, hall of fame, status.

Layout of ``RUN_DIR``::

    config.toml          the resolved config (TOML; what ``--resume`` reads back)
    evaluations.jsonl    one JSON object per attempt, appended and flushed at once: every
                         evaluation, cached hit and integrity rejection (status, reason, worker,
                         seconds, genome text, canonical key, task, seed, particle, timestep, ...)
    particles.jsonl      one line per particle and timestep (genome, fitness, best, age, restart)
    checkpoint.pkl       the search state after the last finished phase/timestep, written
                         atomically (tmp + os.replace).  Pickle is used for this file only: it is the
                         run's own state, never an artefact to share.
    hall_of_fame.json    best genomes, ranked by mean fitness over seeds
    elimination.json     the elimination ladder's results
    status.json          written by the root at the end: {"status": "ok" | "failed", "error": ...}
    report.md, plots/, winners/   written by ``deapnos report``

``--resume RUN_DIR`` reloads the checkpoint and treats the log as a result cache keyed by
(genome key, task, seed), so evaluations finished after the checkpoint are not run again.
"""
from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

CONFIG = "config.toml"
LOG = "evaluations.jsonl"
PARTICLES = "particles.jsonl"
CHECKPOINT = "checkpoint.pkl"
HALL_OF_FAME = "hall_of_fame.json"
ELIMINATION = "elimination.json"
STATUS = "status.json"
CHECKPOINT_VERSION = 1


class StoreError(RuntimeError):
    pass


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines file; a torn last line (a killed writer) is skipped."""
    out = []
    path = Path(path)
    if not path.exists():
        return out
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """A fresh folder ``<output_dir>/<name>-<YYYYmmdd-HHMMSS>[-k]``."""
    base = Path(output_dir)
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        path = base / (f"{name}-{stamp}" + (f"-{k}" if k else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise StoreError(f"cannot create a run folder under {base}")


class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, run_dir: str | Path, create: bool = False):
        self.dir = Path(run_dir)
        if create:
            self.dir.mkdir(parents=True, exist_ok=True)
        elif not self.dir.is_dir():
            raise StoreError(f"run folder {self.dir} does not exist")
        self._log = None
        self._particles = None
        self._logged_seqs: set[int] | None = None
        self._particle_keys: set | None = None

    def path(self, name: str) -> Path:
        return self.dir / name

    # -- config ---------------------------------------------------------------------------------

    def write_config(self, toml_text: str) -> None:
        atomic_write_text(self.path(CONFIG), toml_text)

    def has_config(self) -> bool:
        return self.path(CONFIG).exists()

    # -- the evaluation log -----------------------------------------------------------------------

    def _open(self, name):
        return open(self.path(name), "a", encoding="utf-8")

    def append(self, record: dict) -> bool:
        """Append one record and flush at once.  A record whose ``seq`` is already in the log (a
        resumed run replaying its last timestep) is not written again; returns whether it was."""
        seq = record.get("seq")
        if seq is not None:
            seqs = self.logged_seqs()
            if seq in seqs:
                return False
            seqs.add(seq)
        if self._log is None:
            self._log = self._open(LOG)
        self._log.write(json.dumps(record, separators=(",", ":"), default=_json_default) + "\n")
        self._log.flush()
        return True

    def logged_seqs(self) -> set[int]:
        if self._logged_seqs is None:
            self._logged_seqs = {r["seq"] for r in self.read_log() if "seq" in r}
        return self._logged_seqs

    def read_log(self) -> list[dict]:
        return read_jsonl(self.path(LOG))

    def result_cache(self) -> dict[tuple, dict]:
        """The log as a result cache: (representative key, task, seed) -> record of a finished evaluation."""
        out = {}
        for r in self.read_log():
            rep = r.get("rep") or r.get("key")
            if r.get("event") != "evaluation" or rep is None:
                continue
            out.setdefault((rep, r["task"], int(r["seed"])), r)
        return out

    def append_particles(self, rows: list[dict]) -> None:
        """Append particle rows; a (timestep, particle) already there (a replayed timestep) is skipped."""
        if self._particle_keys is None:
            self._particle_keys = {(r.get("timestep"), r.get("particle")) for r in self.read_particles()}
        if self._particles is None:
            self._particles = self._open(PARTICLES)
        for row in rows:
            k = (row.get("timestep"), row.get("particle"))
            if k in self._particle_keys:
                continue
            self._particle_keys.add(k)
            self._particles.write(json.dumps(row, separators=(",", ":"), default=_json_default) + "\n")
        self._particles.flush()

    def read_particles(self) -> list[dict]:
        return read_jsonl(self.path(PARTICLES))

    # -- checkpoint -------------------------------------------------------------------------------

    def save_checkpoint(self, state) -> None:
        data = pickle.dumps({"version": CHECKPOINT_VERSION, "state": state}, protocol=pickle.HIGHEST_PROTOCOL)
        atomic_write_bytes(self.path(CHECKPOINT), data)

    def load_checkpoint(self):
        """The saved search state, or None when the run has no checkpoint yet."""
        path = self.path(CHECKPOINT)
        if not path.exists():
            return None
        with open(path, "rb") as fh:
            data = pickle.load(fh)   # noqa: S301 - the run's own checkpoint, written by this code
        if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
            raise StoreError(f"{path}: checkpoint version {data.get('version') if isinstance(data, dict) else '?'}"
                             f" is not {CHECKPOINT_VERSION}")
        return data["state"]

    # -- JSON artefacts ---------------------------------------------------------------------------

    def write_json(self, name: str, data) -> None:
        atomic_write_text(self.path(name), json.dumps(data, indent=2, default=_json_default) + "\n")

    def read_json(self, name: str, default=None):
        path = self.path(name)
        if not path.exists():
            return default
        return json.loads(path.read_text(encoding="utf-8"))

    def write_status(self, status: str, error: str = "", **extra) -> None:
        self.write_json(STATUS, {"status": status, "error": error, "time": time.time(), **extra})

    def read_status(self) -> dict | None:
        return self.read_json(STATUS)

    def close(self) -> None:
        for fh in (self._log, self._particles):
            if fh is not None:
                fh.close()
        self._log = self._particles = None


def _json_default(obj):
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
