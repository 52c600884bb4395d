"""Watching training: a progress line on the terminal, a metrics log, and a loss plot."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path


class ProgressBar:
    """step/total, loss, tokens/s and time left, on one line.

    On a terminal the line is redrawn in place ("\\r") at most every `interval` seconds (default
    0.1); into a file or pipe, where "\\r" would pile up, a new line every `interval` (default
    10) seconds instead."""

    def __init__(self, total_steps: int, start_step: int = 0, tokens_per_step: int = 0,
                 stream=None, interval: float | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval if interval is not None else (0.1 if self.tty else 10.0)
        self.total_steps, self.start_step = total_steps, start_step
        self.tokens_per_step = tokens_per_step
        self.start_time = time.perf_counter()
        self.last_shown = -math.inf
        self.shown_width = 0  # of the line now on screen (tty), to blank it out

    def update(self, step: int, loss: float, force: bool = False) -> None:
        steps_per_s = (step - self.start_step) / max(time.perf_counter() - self.start_time, 1e-9)
        left = (self.total_steps - step) / steps_per_s if steps_per_s else math.inf
        self.show(f"step {step}/{self.total_steps} | loss {loss:.4f} | "
                  f"{steps_per_s * self.tokens_per_step:,.0f} tok/s | ETA {duration(left)}", force)

    def show(self, line: str, force: bool = False) -> None:
        """Draw `line` as the progress line, if `interval` has passed since the last one (or
        `force`). `update` draws training steps; other work draws lines of its own."""
        now = time.perf_counter()
        if not force and now - self.last_shown < self.interval:
            return
        self.last_shown = now
        if self.tty:
            self.stream.write("\r" + line.ljust(self.shown_width))
            self.shown_width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def print(self, message: str) -> None:
        """A message on a line of its own; the progress line comes back at the next update."""
        if self.shown_width:
            self.stream.write("\r" + " " * self.shown_width + "\r")
            self.shown_width = 0
        self.stream.write(message + "\n")
        self.stream.flush()


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s" if m else f"{s}s"


def plural(n: int, word: str) -> str:
    """"1 document", "2 documents": a count and its noun."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def append_metrics(path: str | Path, record: dict) -> None:
    """Add one JSON object as a line to a .jsonl file."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def plot_losses(metrics_path: str | Path, png_path: str | Path) -> bool:
    """Plot training and validation loss from a metrics.jsonl into a PNG. Returns False (and
    does nothing) when matplotlib is not installed: it is an optional dependency."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines()]
    # A run resumed from an older checkpoint logs some steps again: the later record wins.
    train = {r["step"]: r["loss"] for r in records if "loss" in r}
    val = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    # Figure + the Agg canvas rather than pyplot: no GUI backend, no global state.
    figure = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for label, losses, marker in (("train", train, None), ("validation", val, "o")):
        steps = sorted(losses)
        axes.plot(steps, [losses[s] for s in steps], label=label, marker=marker)
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats/token, log scale)")
    axes.set_yscale("log")     # the first steps' loss is many times the last's
    axes.legend()
    axes.grid(alpha=0.3)
    figure.savefig(png_path, dpi=100)
    return True
