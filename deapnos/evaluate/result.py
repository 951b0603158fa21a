"""The record of one evaluation: what crosses back from a worker."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

STATUSES = ("ok", "rejected", "screened_out", "diverged", "error", "timeout")


@dataclass
class EvalResult:
    """Outcome of evaluating one genome on one task with one seed.

    ``status``: ``ok`` (trained; ``fitness`` is the best validation accuracy), ``rejected`` (failed an
    integrity check), ``screened_out`` (failed the LR screen), ``diverged`` (NaN/inf), ``error`` (an
    exception, ``message`` names the plugin and the error) or ``timeout``.
    """
    genome: str                      # genome text form
    task: str
    seed: int
    status: str
    fitness: float | None = None     # best validation accuracy (None unless ok)
    final_accuracy: float | None = None
    final_train_loss: float | None = None
    lr: float | None = None          # peak LR chosen by the screen
    curve: list[dict] = field(default_factory=list)   # per epoch: step, train_loss, train_acc, val_acc
    screen: list[dict] = field(default_factory=list)  # per screened LR: lr, score
    seconds: float = 0.0
    device: str = "cpu"
    worker: str = ""
    message: str = ""
    flip: bool | None = None
    optimizer: str = ""              # display name: zoo name, genome file, torch:NAME (genome: its text)
    steps: int = 0                   # optimizer steps of the full run actually trained
    stopped_early: bool = False      # the full run's early stop fired (not a failure, paper §5.4.3)
    test_accuracy: float | None = None   # held-out test split, when asked for and available

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def score(self) -> float:
        """Fitness for selection: failures rank below every success (paper: FAILED scores -1)."""
        return _score(self.status, self.fitness)

    @staticmethod
    def score_of(record: dict | None) -> float:
        """:meth:`score` of a result's dict form (a log record); -1 for None."""
        return _score(record.get("status"), record.get("fitness")) if record else -1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EvalResult:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _score(status: str | None, fitness: float | None) -> float:
    return float(fitness) if status == "ok" and fitness is not None else -1.0
