"""A search's settings: what `tinylm search` was asked, kept in OUT/search.json and in the
Optuna study, so that a resumed search, another worker and `tinylm search show` all use the
same ones. The settings that decide a trial's result (FIXED) must agree between every
process that works on one study; the others (where files go, how many processes, how many
trials to reach) may differ."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_json
from .measure import TARGETS
from .space import BITS, LEARNING_RATES, Space

SAMPLERS = ("tpe", "nsga2")
DEFAULT_STUDY = "tinylm-search"
SETTINGS_FILE = "search.json"


@dataclass
class Settings:
    target: str
    data: list[str]
    out: str
    val_data: list[str] = field(default_factory=list)
    teacher: str | None = None        # a `tinylm distill` folder with the teacher's targets
    min_tok_s: float = 0.0
    min_params: int = 1_000
    max_params: int = 300_000
    bits: tuple[int, ...] = BITS
    trials: int = 100                 # trials to train (refused shapes are not counted)
    storage: str | None = None        # an Optuna storage URL; None: OUT/study.db (SQLite)
    study: str = DEFAULT_STUDY
    # the training budget of every trial
    steps: int = 600
    batch_size: int = 16
    seq_len: int = 128
    lrs: tuple[float, ...] = LEARNING_RATES   # the peak learning rates a trial may draw
    eval_every: int = 100
    kd_weight: float = 0.5            # with a teacher
    split: str = "auto"
    val_fraction: float = 0.05        # held out without --val-data (of the documents' bytes)
    val_bytes: int = 50_000           # validation text every trial is scored on
    seed: int = 0
    # how the work is done
    sampler: str = "tpe"
    jobs: int = 1
    threads: int = 1

    def __post_init__(self):   # plain types, so the settings survive a round trip through JSON
        self.data, self.val_data = [str(p) for p in self.data], [str(p) for p in self.val_data]
        self.out, self.bits = str(self.out), tuple(int(b) for b in self.bits)
        self.lrs = tuple(float(lr) for lr in self.lrs)
        if self.target not in TARGETS:
            raise ValueError(f"--target must be one of {', '.join(TARGETS)}, not {self.target}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"--sampler must be one of {', '.join(SAMPLERS)}")
        if not self.bits or set(self.bits) - set(BITS):
            raise ValueError(f"--bits must be 8 or 4, not {self.bits}")
        if not 0 < self.min_params <= self.max_params:
            raise ValueError(f"--params {self.min_params}-{self.max_params} is not a range")
        if not self.lrs or min(self.lrs) <= 0:
            raise ValueError(f"--lr must be positive learning rates, not {self.lrs}")

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out).resolve() / 'study.db'}"

    def space(self, vocabs: tuple[int, ...]) -> Space:
        return Space(vocabs, self.bits, self.min_params, self.max_params, self.lrs)

    def fixed(self) -> dict:
        """The settings that decide trials' results, with the data's fingerprint for its
        file names (which may differ from machine to machine)."""
        kept = {k: v for k, v in dataclasses.asdict(self).items() if k not in MAY_DIFFER}
        kept["data"], kept["val_data"] = fingerprint(self.data), fingerprint(self.val_data)
        kept["teacher"] = self.teacher and fingerprint(
            [Path(self.teacher) / "targets" / "manifest.json"])
        kept["bits"], kept["lrs"] = list(self.bits), list(self.lrs)
        return kept

    def save(self) -> None:
        Path(self.out).mkdir(parents=True, exist_ok=True)
        write_json(Path(self.out) / SETTINGS_FILE, dataclasses.asdict(self))

    @classmethod
    def load(cls, out: str | Path) -> Settings:
        path = Path(out) / SETTINGS_FILE
        if not path.exists():
            raise FileNotFoundError(f"{out} holds no search ({SETTINGS_FILE} is missing)")
        return cls(**dict(with_lrs(json.loads(path.read_text())), out=str(out)))


def with_lrs(fields: dict) -> dict:
    """Settings saved before the learning rate was searched had one, "lr": as "lrs"."""
    if "lr" not in fields:
        return fields
    fields = dict(fields, lrs=[fields["lr"]])
    del fields["lr"]
    return fields


MAY_DIFFER = ("out", "storage", "trials", "sampler", "jobs", "threads")


def fingerprint(paths: list[str]) -> list[str]:
    """The SHA-256 of each file's bytes, so that a study knows its text wherever it lies."""
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16] for p in paths]


def differences(mine: dict, theirs: dict) -> list[str]:
    """The fixed settings two processes disagree on, as "name: theirs"."""
    return [f"{name}: {theirs.get(name)!r}" for name in sorted(set(mine) | set(theirs))
            if mine.get(name) != theirs.get(name)]
