"""The run folder: config snapshot, evaluation log, checkpoint, hall of fame, status.

Provides :class:`RunStore` (every file of ``RUN_DIR``, written atomically or appended and flushed).
The pieces below it, re-exported here: :mod:`.files` (names, errors, atomic writes, bounded reads),
:mod:`.logfile` (the JSON-lines logs checked end to end, :func:`repair_tail`, :func:`read_jsonl`)
and :mod:`.locks` (:class:`FolderLock`: ``run.lock`` / ``writer.lock``).  Nothing in a run folder
is ever unpickled.  Layout, resume and safety:
docs/search.md, "The run folder and resume" and "What a run folder is safe for".
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .files import (CHECKPOINT, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CONFIG, ELIMINATION,  # noqa: F401
                    HALL_OF_FAME, LEGACY_CHECKPOINT, LOG, MAX_JSON_BYTES, MIN_FREE_BYTES, PARTICLES, QUARANTINE,
                    REPORT, RUN_FILES, RUN_FOLDERS, RUN_LOCK, SEARCH_LOG, STATUS, SUMMARY, WRITER_LOCK, DiskError,
                    RunLockError, StoreError, _check_regular, _json_default, _no_follow, _read_json_file, _write_all,
                    atomic_write_bytes, atomic_write_text, check_free_space, is_plain_name, write_error)
from .locks import FolderLock, lock_message  # noqa: F401
from .logfile import (_is_int, check_log_record, check_log_sequence, check_particle_row, config_id,  # noqa: F401
                      read_jsonl, read_jsonl_lines, repair_tail)

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)


def check_run_dir_path(run_dir: Path, create: bool) -> Path:
    """A usable run folder path: an existing folder, or (``create``) one that can be made.  Raises
    :class:`StoreError` naming the path and what to do."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(f"run folder {run_dir} is a file, not a folder: give a folder path (a new or an "
                         f"existing run folder)")
    if not run_dir.exists():
        if not create:
            raise StoreError(f"run folder {run_dir} does not exist")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the run folder {run_dir}: {exc.strerror or exc}; choose a folder "
                             f"you can write to") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise StoreError(f"run folder {run_dir} is not writable; choose a folder you can write to")
    return run_dir


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """A fresh folder ``<output_dir>/<name>-<YYYYmmdd-HHMMSS>[-k]``; ``name`` must be a plain name
    (``run.name`` is checked when the config is read), so the folder stays inside ``output_dir``."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}", name):
        raise StoreError(f"run name {name!r} is not a plain name (letters, digits, '_' and '-'); set run.name "
                         f"to one")
    base = Path(output_dir)
    if base.exists() and not base.is_dir():
        raise StoreError(f"output folder {base} (run.output_dir) is a file, not a folder; set run.output_dir "
                         f"to a folder")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the output folder {base} (run.output_dir): {exc.strerror or exc}; set "
                         f"run.output_dir to a folder you can write to") from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        path = base / (f"{name}-{stamp}" + (f"-{k}" if k else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise StoreError(f"cannot create a run folder under {base}: {exc.strerror or exc}") from None
    raise StoreError(f"cannot create a run folder under {base}")


# ----------------------------------------------------------------------------------------------
# one writer per run folder
# ----------------------------------------------------------------------------------------------

class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, run_dir: str | Path, create: bool = False):
        self.dir = Path(run_dir)
        if create:
            check_run_dir_path(self.dir, create=True)
            check_free_space(self.dir)          # a writer: refuse to start on a (nearly) full disk
        elif not self.dir.is_dir():
            raise StoreError(f"run folder {self.dir} does not exist" if not self.dir.exists() else
                             f"{self.dir} is not a folder; give a run folder")
        self._log: int | None = None               # the open evaluation log (a descriptor), from the first append
        self._particles: int | None = None
        self._logged_seqs: set[int] | None = None
        self._particle_keys: set | None = None
        # the id of the run's config (:func:`config_id`), stamped on every record appended; known from
        # the checkpoint read or written
        self.config_id: str | None = None
        self._log_ids: dict[str, int] | None = None     # config id -> first line of the log carrying it

    def path(self, name: str) -> Path:
        return self.dir / name

    def check_files(self) -> None:
        """Every file deapnos reads or writes here is a regular file and every folder a real one
        (a link could make a read or a write land outside the run folder)."""
        for name in RUN_FILES:
            _check_regular(self.path(name))
        for name in RUN_FOLDERS:
            p = self.path(name)
            if p.is_symlink() or (p.exists() and not p.is_dir()):
                raise StoreError(f"{p} must be a folder of the run, not a link or a file: remove it (deapnos "
                                 f"writes it anew)")

    def read_config(self) -> dict:
        """The run's ``config.toml`` as a TOML document (checked files first); one-line
        :class:`StoreError` when it cannot be read."""
        from .config_file import read_config_file      # below the config: no cycle through it
        self.check_files()
        try:
            return read_config_file(self.path(CONFIG))
        except UnicodeDecodeError as exc:
            raise StoreError(f"{self.path(CONFIG)}: not valid TOML (not UTF-8 text at byte {exc.start}); restore "
                             f"it from a copy of the run folder") from None

    def remove_temporary(self) -> None:
        """Remove what a killed atomic write left (``.NAME.tmpPID``); only the writer calls this."""
        for p in self.dir.glob(".*.tmp*"):
            if re.fullmatch(r"\..+\.tmp\d+", p.name) and not p.is_symlink() and p.is_file():
                try:
                    p.unlink()
                except OSError:
                    pass

    # -- config ---------------------------------------------------------------------------------

    def write_config(self, toml_text: str) -> None:
        atomic_write_text(self.path(CONFIG), toml_text)

    def has_config(self) -> bool:
        return self.path(CONFIG).exists()

    # -- the evaluation log -----------------------------------------------------------------------

    def _open(self, name: str) -> int:
        """Open a JSON-lines file for appending: never through a link; a torn tail is cut first."""
        path = self.path(name)
        _check_regular(path)
        try:
            repair_tail(path)
            return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _no_follow(), 0o644)
        except OSError as exc:
            raise write_error(path, exc) from None

    def append(self, record: dict) -> bool:
        """Append one record (stamped with the run's ``config_id``) and write it at once.  A record
        whose ``seq`` is already in the log (a resumed run replaying its last timestep) is not written
        again; returns whether it was.  A failed write (disk full) raises :class:`DiskError` and
        leaves no part of the line behind."""
        seq = record.get("seq")
        seqs = self.logged_seqs() if seq is not None else None
        if seqs is not None and seq in seqs:
            return False
        if self.config_id is not None and "config_id" not in record:
            record = {**record, "config_id": self.config_id}
        if self._log is None:
            self._log = self._open(LOG)
        data = (json.dumps(record, separators=(",", ":"), default=_json_default) + "\n").encode("utf-8")
        _write_all(self._log, data, self.path(LOG))
        if seqs is not None and seq is not None:
            seqs.add(seq)
        return True

    def logged_seqs(self) -> set[int]:
        if self._logged_seqs is None:
            self._logged_seqs = {r["seq"] for r in self.read_log() if "seq" in r}
        return self._logged_seqs

    def read_log_lines(self) -> list[tuple[int, dict]]:
        """``(line number, record)`` of the whole evaluation log, checked end to end (valid JSON, the
        record schema, one record per seq, one config: :func:`check_log_sequence`); only a torn last
        line is passed over.  Raises a one-line :class:`StoreError` naming the line and the way out."""
        path = self.path(LOG)
        items = read_jsonl_lines(path, check_log_record)
        check_log_sequence(path, items, self.config_id if self.config_id is not None else self._saved_config_id())
        ids: dict[str, int] = {}
        for n, rec in items:
            if isinstance(rec.get("config_id"), str):
                ids.setdefault(rec["config_id"], n)
        self._log_ids = ids
        return items

    def read_log(self) -> list[dict]:
        return [rec for _, rec in self.read_log_lines()]

    def _saved_config_id(self) -> str | None:
        """The config id of the checkpoint's fingerprint, read plainly (None when unknown)."""
        try:
            doc = _read_json_file(self.path(CHECKPOINT), "a deapnos checkpoint", "") \
                if self.path(CHECKPOINT).is_file() else None
        except StoreError:
            return None
        return config_id(doc.get("config")) if isinstance(doc, dict) else None

    def bind_config(self, fingerprint: dict) -> None:
        """Make ``fingerprint``'s config the run's: the log must hold no record of another config
        (else a one-line :class:`StoreError` naming the line and the way out); records appended from
        now on carry its id."""
        cid = config_id(fingerprint)
        if cid is None or cid == self.config_id:
            return
        if self._log_ids is None:
            self.config_id = None                 # read the log as it is, then compare
            self.read_log_lines()
        other = {k: n for k, n in (self._log_ids or {}).items() if k != cid}
        if other:
            line = min(other.values())
            raise StoreError(f"{self.path(LOG)} line {line}: written under another config than {self.path(CONFIG)} "
                             f"(config id {self._line_id(other, line)}, not {cid}); one run keeps one config: undo "
                             f"the edit of config.toml, or start a new run with it (deapnos run --config "
                             f"{self.path(CONFIG)})")
        self.config_id = cid

    @staticmethod
    def _line_id(ids: dict[str, int], line: int) -> str:
        return next(k for k, n in ids.items() if n == line)

    def result_cache(self) -> dict[tuple, dict]:
        """The log as a result cache: (representative key, task, seed) -> record of a finished evaluation."""
        from .evaluator import result_key
        out: dict[tuple, dict] = {}
        for r in self.read_log():
            rep = r.get("rep") or r.get("key")
            if r.get("event") != "evaluation" or rep is None:
                continue
            out.setdefault(result_key(rep, r["task"], int(r["seed"]), r.get("protocol")), r)
        return out

    def append_particles(self, rows: list[dict]) -> None:
        """Append particle rows; a (timestep, particle) already there (a replayed timestep) is skipped."""
        if self._particle_keys is None:
            self._particle_keys = {(r.get("timestep"), r.get("particle")) for r in self.read_particles()}
        if self._particles is None:
            self._particles = self._open(PARTICLES)
        new = []
        for row in rows:
            k = (row.get("timestep"), row.get("particle"))
            if k in self._particle_keys:
                continue
            new.append((k, json.dumps(row, separators=(",", ":"), default=_json_default) + "\n"))
        if new:
            _write_all(self._particles, "".join(line for _, line in new).encode("utf-8"), self.path(PARTICLES))
            self._particle_keys.update(k for k, _ in new)

    def read_particles(self) -> list[dict]:
        return read_jsonl(self.path(PARTICLES), check_particle_row)

    # -- checkpoint -------------------------------------------------------------------------------

    def save_checkpoint(self, state: dict | None, config: dict | None = None) -> None:
        """Write the search state (plain JSON data, or None before the search starts) and the
        config fingerprint atomically.  The log lines written so far reach the disk first, so a
        checkpoint never refers to records a crash could still lose."""
        if config is not None:
            self.bind_config(config)
        for fd, name in ((self._log, LOG), (self._particles, PARTICLES)):
            if fd is not None:
                try:
                    os.fsync(fd)
                except OSError as exc:
                    raise write_error(self.path(name), exc) from None
        doc = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config, "state": state}
        try:
            data = json.dumps(doc, separators=(",", ":"), allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"the search state cannot be written as JSON: {exc}") from None
        atomic_write_text(self.path(CHECKPOINT), data)

    def read_checkpoint(self) -> dict | None:
        """The checkpoint document ({format, version, config, state}), or None when there is none.
        Refuses an old pickled checkpoint and a damaged one, with what to do."""
        path = self.path(CHECKPOINT)
        legacy = self.path(LEGACY_CHECKPOINT)
        if not path.exists() and (legacy.exists() or legacy.is_symlink()):
            raise StoreError(
                f"{legacy} is a pickled checkpoint of an older deapnos; it is never loaded, because unpickling "
                f"a file can run code. To continue this run, move it away (mv {legacy} {legacy}.old) and run "
                f"`deapnos run --resume {self.dir}` again: the search replays from its start and takes every "
                f"evaluation already in {LOG} from there, so nothing is trained twice")
        if not path.exists() and not path.is_symlink():
            return None
        damaged = (f"; move it away (mv {path} {path}.damaged) and run `deapnos run --resume {self.dir}` again: "
                   f"the search replays from its start and takes every evaluation already in {LOG} from there")
        doc = _read_json_file(path, "a deapnos checkpoint", damaged)
        if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
            raise StoreError(f"{path} is not a deapnos checkpoint (field 'format' is not "
                             f"{CHECKPOINT_FORMAT!r}){damaged}")
        version = doc.get("version")
        if not _is_int(version) or version != CHECKPOINT_VERSION:
            raise StoreError(f"{path}: checkpoint version {version!r} is not {CHECKPOINT_VERSION} (written by "
                             f"another deapnos version){damaged}")
        from .run_files import check_checkpoint
        problem = check_checkpoint(doc)         # every field's type, as declared (CheckpointFile)
        if problem:
            raise StoreError(f"{path}: {problem}{damaged}")
        if self.config_id is None and doc.get("config") is not None:
            self.config_id = config_id(doc["config"])
        if isinstance(doc.get("state"), dict):
            from .state_data import state_problem
            fields_ = (doc.get("config") or {}).get("fields")
            timesteps = fields_.get("search.timesteps") if isinstance(fields_, dict) else None
            problem = state_problem(doc["state"], timesteps if _is_int(timesteps) else None, self.read_log())
            if problem:
                raise StoreError(f"{path}: {problem}{damaged}")
        doc["damaged_hint"] = damaged
        return doc

    def load_checkpoint(self) -> dict | None:
        """The saved search state (plain data), or None when the run has no checkpoint yet."""
        doc = self.read_checkpoint()
        return None if doc is None else doc.get("state")

    # -- JSON artefacts ---------------------------------------------------------------------------

    def write_json(self, name: str, data) -> None:
        atomic_write_text(self.path(name), json.dumps(data, indent=2, default=_json_default) + "\n")

    def read_json(self, name: str, default=None, kind=None):
        """A JSON file of the run folder, or ``default`` when absent; a damaged one, or one whose top
        level is not ``kind`` (dict or list), raises :class:`StoreError` naming it."""
        path = self.path(name)
        if not path.exists() and not path.is_symlink():
            return default
        data = _read_json_file(path, "a deapnos file", "; restore it from a copy or remove it",
                               too_large_hint="; remove it")
        if kind is not None and not isinstance(data, kind):
            raise StoreError(f"{path}: expected a JSON {'object' if kind is dict else 'array'}, found "
                             f"{type(data).__name__}; restore it from a copy or remove it")
        return data

    def write_status(self, status: str, error: str = "", **extra) -> None:
        """Write ``status.json``.  On a full disk a final status (failed, interrupted) still lands:
        a short form is written over the old file's own bytes, so the run never stays "running"."""
        from .run_files import status_fields
        doc = {"status": status, "error": error, "time": time.time(), **extra}
        unknown = sorted(set(doc) - set(status_fields()))
        if unknown:     # a field status.json does not declare (run_files.StatusFile): the reader would refuse it
            raise ValueError(f"{self.path(STATUS)}: unknown field {unknown[0]} (declare it in StatusFile)")
        try:
            self.write_json(STATUS, doc)
        except DiskError:
            if status == "running" or not self._overwrite_in_place(STATUS, {k: doc[k] for k in ("status", "error",
                                                                                                "time")}):
                raise

    def _overwrite_in_place(self, name: str, doc: dict) -> bool:
        """Write ``doc`` into the blocks the file ``name`` already has (padded with spaces, which JSON
        allows): needs no free space.  Returns whether it fit."""
        path = self.path(name)
        try:
            fd = os.open(path, os.O_WRONLY | _no_follow())
        except OSError:
            return False
        try:
            size = os.fstat(fd).st_size
            data = json.dumps(doc, separators=(",", ":"), default=_json_default).encode("utf-8")
            if len(data) > size:
                doc = {**doc, "error": str(doc.get("error", ""))[:max(0, size - len(data) + 100)]}
                data = json.dumps(doc, separators=(",", ":"), default=_json_default).encode("utf-8")
            if len(data) > size:
                return False
            os.pwrite(fd, data + b" " * (size - len(data)), 0)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def read_status(self) -> dict | None:
        """``status.json`` (None when absent), checked against its schema (:class:`~deapnos.search.
        run_files.StatusFile`); a one-line :class:`StoreError` naming the file and the field."""
        from .run_files import check_status
        doc = self.read_json(STATUS, kind=dict)
        problem = None if doc is None else check_status(doc)
        if problem:
            raise StoreError(f"{self.path(STATUS)}: {problem}; restore it from a copy or remove it")
        return doc

    def close(self) -> None:
        """Close the open logs; never raises (every line was written whole, or cut back off)."""
        for fd in (self._log, self._particles):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._log = self._particles = None


def load_run_config(run_dir, overrides=()) -> Config:
    """The :class:`~deapnos.search.config.Config` of a run folder's ``config.toml`` (the one loader of
    ``deapnos status``, ``deapnos report``, ``deapnos repair``): the folder's files checked, the TOML read, every field
    validated; ``overrides``: ``a.b=value`` texts applied first.  Raises a one-line
    :class:`StoreError` or :class:`~deapnos.errors.ConfigError` naming the file."""
    from .config import apply_overrides, parse_config
    store = run_dir if isinstance(run_dir, RunStore) else RunStore(run_dir)
    data = apply_overrides(store.read_config(), overrides)
    path = str(store.path(CONFIG))
    return parse_config(data, source=path, where=path + (" with the overrides" if overrides else ""))
