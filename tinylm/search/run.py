"""`tinylm search` from start to end, in this process and the workers it starts.

    1. the settings in OUT/search.json and the study opened (or made, or resumed)
    2. --jobs - 1 worker processes start on the study; this process trains and measures the
       reference models (REFERENCES) like any candidate (once per OUT), then works on the
       study too, until it has --trials trained trials; a line of progress every few
       seconds, with the time left
    3. the Pareto front confirmed: every model on it measured in the emulator (or on the
       host), the front taken again with those figures, until each model on it is measured
    4. the result files (results.py)
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import threading
import time
from pathlib import Path

from ..atomic import write_json
from ..training.progress import ProgressBar, duration
from . import costs, results, study
from .candidate import Candidate
from .measure import TARGETS, measure
from .settings import Settings
from .space import DEFAULT_LR, Shape

# The seeds' two templates, as near as RoPE allows (even head widths), and the project's
# hand-picked ~8K-parameter model (docs/benchmarks.md), all at int8, trained at DEFAULT_LR:
# tiny8k's recipe there.
REFERENCES = {
    "seed fastest": Shape(vocab_size=64, dim=2, n_layers=1, n_heads=1, n_kv_heads=1,
                          hidden_dim=144, bits=8),
    "seed balanced": Shape(vocab_size=300, dim=8, n_layers=3, n_heads=4, n_kv_heads=4,
                           hidden_dim=256, bits=8),
    "tiny8k": Shape(vocab_size=300, dim=16, n_layers=1, n_heads=2, n_kv_heads=2,
                    hidden_dim=40, bits=8),
}
PROGRESS_SECONDS = 10


def search(settings: Settings, echo=print, heartbeat=(study.HEARTBEAT, study.GRACE)) -> dict:
    """Run (or resume, or join) a search; returns {"front", "templates", "references"}."""
    settings.save()
    the_study = study.open_study(settings, 0, heartbeat)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(dataclasses.asdict(settings), i, heartbeat))
               for i in range(1, settings.jobs)]
    for worker in workers:
        worker.start()
    progress = Progress(settings, heartbeat)
    try:
        references = reference_rows(settings, echo)     # while the other workers search
        progress.start()
        study.work(settings, 0, heartbeat)
    finally:
        for worker in workers:
            worker.join()
        progress.stop()
    confirm(the_study, settings, echo)
    return show(the_study, settings, references)


def _worker(fields: dict, index: int, heartbeat) -> None:
    try:
        study.work(Settings(**fields), index, heartbeat)
    except KeyboardInterrupt:       # Ctrl-C reached every process: each ends its trial
        pass


def show(the_study, settings: Settings, references: list[dict] | None = None) -> dict:
    """The result files from the study as it is now."""
    if references is None:
        path = Path(settings.out) / "references.json"
        references = list(load_json(path).values())
    made = results.write(Path(settings.out), results.trial_rows(the_study), references,
                         settings)
    return dict(made, references=references)


def reference_rows(settings: Settings, echo) -> list[dict]:
    """The REFERENCES trained with the search's budget and measured on its target, once per
    OUT (kept in OUT/references.json)."""
    path = Path(settings.out) / "references.json"
    known = load_json(path)
    target, cost_model = TARGETS[settings.target], costs.load(settings.target)
    free = dataclasses.replace(settings, min_tok_s=0.0)     # measured whatever their speed
    for name, shape in REFERENCES.items():
        if name in known:
            continue
        directory = Path(settings.out) / "references" / name.replace(" ", "-")
        candidate = Candidate(shape, free, directory, target, cost_model)
        check = candidate.check()
        row = {"trial": name, "label": shape.label(), **dataclasses.asdict(shape),
               "lr": DEFAULT_LR,
               **check.facts, "bpb": None, "state": "reference", "why": check.problem or ""}
        if check.problem is None:
            echo(f"reference {name} ({shape.label()}): training")
            summary = candidate.train()
            if summary["interrupted"]:
                raise KeyboardInterrupt
            scores = candidate.score()
            measured = measure(scores["bin"], target)
            row.update(bpb=scores["bpb"], float_bpb=summary["val_bpb"],
                       predicted_tok_s=scores["tok_s"], emulated_tok_s=measured["tok_s"],
                       bin=scores["bin"])
        known[name] = results.with_speed(row)
        write_json(path, known)
    return list(known.values())


def confirm(the_study, settings: Settings, echo) -> None:
    """Measure every model on the front that has no measurement yet and whose .bin is here,
    and take the front again, until none is left. A front model trained by a process on
    another machine (its own OUT) is left to that process's confirmation."""
    target = TARGETS[settings.target]
    while True:
        todo = [r for r in results.pareto(results.trial_rows(the_study))
                if r["tok_s_from"] == "predicted" and r["bin"] and Path(r["bin"]).exists()]
        if not todo:
            return
        for row in todo:
            measured = measure(row["bin"], target)
            the_study.set_user_attr(f"emulated:{row['trial']}", measured)
            echo(f"confirmed trial {row['trial']} ({row['label']}): {measured['tok_s']:,.1f} "
                 f"tok/s measured, {row['predicted_tok_s']:,.1f} predicted")


def load_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


class Progress:
    """A line every PROGRESS_SECONDS: trials trained (of --trials), pruned and refused, the
    front's two ends, the time spent and left. It reads the study through a storage of its
    own, in a thread."""

    def __init__(self, settings: Settings, heartbeat):
        self.settings, self.heartbeat = settings, heartbeat
        self.stopped = threading.Event()
        self.bar = ProgressBar(settings.trials, interval=0)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started, self.first, self.view = time.perf_counter(), None, None

    def start(self):
        self.thread.start()

    def stop(self):
        if self.thread.is_alive():
            self.stopped.set()
            self.thread.join()
            self.bar.print(self.line())

    def _run(self):
        self.view = study.load(self.settings, self.heartbeat)
        while not self.stopped.wait(PROGRESS_SECONDS):
            self.bar.show(self.line())

    def line(self) -> str:
        rows = results.trial_rows(self.view) if self.view else []
        done = [r for r in rows if r["state"] in ("complete", "pruned")]
        refused = sum(r["state"] == "refused" for r in rows)
        pruned = sum(r["state"] == "pruned" for r in rows)
        if self.first is None:
            self.first = len(done)          # trials done before this run (a resumed search)
        front = results.pareto(rows)
        elapsed = time.perf_counter() - self.started
        rate = (len(done) - self.first) / elapsed
        left = (self.settings.trials - len(done)) / rate if rate else float("inf")
        ends = (f" | front {len(front)}: {min(r['bpb'] for r in front):.3f} bits/byte to "
                f"{max(r['tok_s'] for r in front):,.0f} tok/s" if front else "")
        return (f"trials {len(done)}/{self.settings.trials} trained ({pruned} pruned), "
                f"{refused} refused{ends} | {duration(elapsed)} | ETA {duration(max(left, 0))}")
