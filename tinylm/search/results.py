"""What a search found, for people: a row per trial, the Pareto front, the templates, a plot.

In OUT: trials.json and trials.csv (every trial: its shape, state, scores, why it was refused
or pruned), front.json (the front), templates.json (the fastest model of the front, the best
one, and a balanced one between them, each with the `tinylm train` or `tinylm distill`,
`quantize` and `bench` commands that make it again), front.png (bits per byte against tok/s
on the target, the front highlighted, the reference models marked).

A row's tok/s is its emulated figure once the front's confirmation measured it (marked
"emulated"), else the cost model's prediction.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ..atomic import write_json
from .space import Shape

COLUMNS = ["trial", "state", "label", "n_params", "bits", "vocab_size", "dim", "n_layers",
           "n_heads", "n_kv_heads", "hidden_dim", "lr", "bpb", "tok_s", "tok_s_from",
           "predicted_tok_s", "emulated_tok_s", "model_bytes", "arena_bytes", "weights_in",
           "float_bpb", "pruned_at", "seconds", "why"]
STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
          "WAITING": "waiting"}


def trial_rows(study) -> list[dict]:
    confirmed = {int(key.split(":")[1]): value for key, value in study.user_attrs.items()
                 if key.startswith("emulated:")}
    # a study made before the learning rate was searched trained every trial at its one "lr"
    one_lr = study.user_attrs.get("settings", {}).get("lr")
    return [trial_row(t, confirmed.get(t.number), one_lr)
            for t in study.get_trials(deepcopy=False)]


def trial_row(trial, emulated: dict | None, one_lr: float | None = None) -> dict:
    attrs = trial.user_attrs
    state = STATES[trial.state.name]
    if state in ("pruned", "complete") and "refused" in attrs:
        state = "refused"             # before training, or too slow once trained
    shape = attrs.get("shape")
    row = {"trial": trial.number, "state": state, "label": Shape(**shape).label() if shape
           else "", **(shape or {}), "lr": attrs.get("lr", one_lr), **attrs.get("facts", {}),
           "bpb": trial.values[0] if trial.state.name == "COMPLETE" else None,
           "predicted_tok_s": attrs.get("predicted_tok_s"),
           "emulated_tok_s": emulated and emulated["tok_s"],
           "float_bpb": attrs.get("float_bpb"), "pruned_at": attrs.get("pruned_at"),
           "seconds": trial.duration.total_seconds() if trial.duration else None,
           "why": attrs.get("refused") or attrs.get("error") or "", "bin": attrs.get("bin")}
    return with_speed(row)


def with_speed(row: dict) -> dict:
    emulated = row.get("emulated_tok_s")
    row["tok_s"] = emulated if emulated is not None else row.get("predicted_tok_s")
    row["tok_s_from"] = "emulated" if emulated is not None else "predicted"
    return row


def pareto(rows: list[dict]) -> list[dict]:
    """The rows no other row beats on both axes (lower bits/byte, higher tok/s), fastest
    first; rows refused (too slow once trained) and references are left out."""
    done = [r for r in rows if r.get("bpb") is not None and r.get("tok_s") is not None
            and r.get("state") == "complete"]
    front = [r for r in done if not any(dominates(o, r) for o in done)]
    return sorted(front, key=lambda r: -r["tok_s"])


def dominates(a: dict, b: dict) -> bool:
    return (a["bpb"] <= b["bpb"] and a["tok_s"] >= b["tok_s"]
            and (a["bpb"] < b["bpb"] or a["tok_s"] > b["tok_s"]))


def templates(front: list[dict]) -> dict[str, dict]:
    """"fastest" and "best-that-fits" (the front's two ends: every model of the front fits the
    board) and "balanced": the point nearest to the ideal of both (each axis scaled to the
    front's range; tok/s on a log scale)."""
    if not front:
        return {}
    fastest = max(front, key=lambda r: r["tok_s"])
    best = min(front, key=lambda r: r["bpb"])
    low, high = math.log(best["tok_s"]), math.log(fastest["tok_s"])

    def distance(r):
        speed = (high - math.log(r["tok_s"])) / (high - low) if high > low else 0.0
        quality = (r["bpb"] - best["bpb"]) / (fastest["bpb"] - best["bpb"]) \
            if fastest["bpb"] > best["bpb"] else 0.0
        return math.hypot(speed, quality)
    return {"fastest": fastest, "balanced": min(front, key=distance), "best-that-fits": best}


def commands(row: dict, settings, name: str) -> dict[str, list[str]]:
    """The commands that make this model again, as argument lists."""
    shape = Shape(**{k: row[k] for k in Shape.__dataclass_fields__})
    out = f"runs/{name}"
    model = [f"--{k.replace('_', '-')}={v}" for k, v in shape.model_args().items()]
    budget = [f"--seq-len={settings.seq_len}", f"--batch-size={settings.batch_size}",
              f"--steps={settings.steps}", f"--lr={row['lr']:g}", f"--seed={settings.seed}"]
    if settings.teacher:
        made = ["tinylm", "distill", *teacher_options(Path(settings.teacher)),
                f"--kd-weight={settings.kd_weight:g}"]
    else:
        made = ["tinylm", "train", *(f"--data={p}" for p in settings.data)]
    made += [*(f"--val-data={p}" for p in settings.val_data), f"--out={out}", *model, *budget]
    calibrate = [f"--calib={p}" for p in settings.data] if shape.bits == 4 else []
    return {"train": made,
            "quantize": ["tinylm", "quantize", out, f"--bits={shape.bits}", *calibrate, "-o",
                         f"{name}.bin"],
            "bench": ["tinylm", "bench", f"--target={settings.target}", f"{name}.bin"]
            if settings.target != "host" else ["tinylm", "run", f"{name}.bin"]}


def teacher_options(teacher: Path) -> list[str]:
    """The options of the `tinylm distill` that made the teacher's targets in `teacher`."""
    saved = json.loads((teacher / "distill.json").read_text())
    options = [f"--teacher={saved['teacher']}", *(f"--data={p}" for p in saved["data"])]
    for key in ("dataset", "dataset_limit", "prompts", "synthetic", "free"):
        if saved.get(key):
            options.append(f"--{key.replace('_', '-')}={saved[key]}")
    return [*options, f"--top-k={saved['k']}"]


def write(out: Path, rows: list[dict], references: list[dict], settings) -> dict:
    """The result files; returns {"front", "templates"}."""
    front = pareto(rows)
    chosen = templates(front)
    write_json(out / "trials.json", rows + references)
    with open(out / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows + references)
    write_json(out / "front.json", front)
    made = {name: dict(row, commands=commands(row, settings, name))
            for name, row in chosen.items()}
    write_json(out / "templates.json", made)
    plot(rows, front, references, out / "front.png", settings.target)
    return {"front": front, "templates": made}


def plot(rows, front, references, path: Path, target: str) -> bool:
    """Bits per byte against tok/s (log scale). False when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    figure = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    done = [r for r in rows if r.get("bpb") is not None]
    axes.scatter([r["tok_s"] for r in done], [r["bpb"] for r in done], s=14, color="0.7",
                 label="trials")
    axes.plot([r["tok_s"] for r in front], [r["bpb"] for r in front], "o-", color="tab:red",
              label="Pareto front (filled: emulated)", markerfacecolor="none")
    emulated = [r for r in front if r["tok_s_from"] == "emulated"]
    axes.scatter([r["tok_s"] for r in emulated], [r["bpb"] for r in emulated], s=30,
                 color="tab:red", zorder=3)
    for marker, r in zip("s^Dv", [r for r in references if r.get("bpb") is not None]):
        axes.scatter([r["tok_s"]], [r["bpb"]], marker=marker, s=60, color="tab:blue",
                     zorder=4, label=f"{r['trial']} ({r['label']})")
    axes.set_xscale("log")
    axes.set_xlabel(f"tok/s on the {target}")
    axes.set_ylabel("validation bits/byte")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=100)
    return True


def table(rows: list[dict]) -> str:
    """A plain-text table of rows (the front, the references)."""
    lines = [f"{'':16} {'model':30} {'params':>8} {'lr':>6} {'bits/byte':>9} {'tok/s':>10}  "
             f"from"]
    for r in rows:
        lines.append(f"{str(r['trial']):16} {r['label']:30} {r.get('n_params') or 0:>8,} "
                     f"{r['lr']:6g} {r['bpb']:9.4f} {r['tok_s']:10,.1f}  {r['tok_s_from']}")
    return "\n".join(lines)
