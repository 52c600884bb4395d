"""The default search for the RP2040 on the TinyStories head, timed, and its Pareto front
against the reference models it trains beside (the seeds' two templates and tiny8k).

    python benchmarks/bench_search.py [--trials 100] [--jobs 2] [--out /tmp/bench-search]

Runs `tinylm search --target rp2040 --data ../shared/data/tinystories_train_head.txt` with
--trials and --jobs (resuming what --out holds), then prints the wall time, the trials, the
front and these checks:

- the front dominates each reference: a front model at least as good on both axes and better
  on one (bits per byte of its .bin, emulated tok/s);
- at the seeds' 8K budget: a front model of at most 8,000 parameters with 4x the seed
  balanced template's tok/s or more and lower bits per byte;
- against tiny8k: a front model 10% better on one axis (bits per byte 10% lower, or tok/s
  10% higher) and no worse on the other.

The references are trained as the project documents them (learning rate 3e-3), while every
trial draws its learning rate too. So that the front's margin over tiny8k is not mistaken for
the shape's alone, tiny8k is also trained at each learning rate the search draws from, after
the search (not in its time): its best is printed, and the same checks are made against it.

With --esp32c3, the references' and the front's .bin files (the same trained models) are
measured in the ESP32-C3 emulator too, after the search (not in its time).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinylm.search import costs  # noqa: E402
from tinylm.search.candidate import Candidate  # noqa: E402
from tinylm.search.measure import TARGETS, measure  # noqa: E402
from tinylm.search.results import with_speed  # noqa: E402
from tinylm.search.run import REFERENCES  # noqa: E402
from tinylm.search.settings import Settings  # noqa: E402

TRAIN_TEXT = ROOT.parent / "shared" / "data" / "tinystories_train_head.txt"
BUDGET = 8_000


def dominated(reference: dict, front: list[dict]) -> dict | None:
    """The first front model that beats the reference on one axis, and is as good on the other."""
    return next((r for r in front if r["bpb"] <= reference["bpb"] and r["tok_s"] >= reference[
        "tok_s"] and (r["bpb"] < reference["bpb"] or r["tok_s"] > reference["tok_s"])), None)


def checks(front: list[dict], references: dict) -> list[tuple[str, dict | None]]:
    found = [(f"dominates {name}", dominated(r, front)) for name, r in references.items()
             if r.get("bpb") is not None]
    balanced, tiny = references.get("seed balanced"), references.get("tiny8k")
    if balanced and balanced.get("bpb") is not None:
        found.append((f"<= {BUDGET:,} parameters, 4x seed balanced's tok/s, lower bits/byte",
                      next((r for r in front if r["n_params"] <= BUDGET and r["tok_s"] >= 4 *
                            balanced["tok_s"] and r["bpb"] < balanced["bpb"]), None)))
    if tiny and tiny.get("bpb") is not None:
        found.append(("10% better than tiny8k on one axis, no worse on the other", next((
            r for r in front if r["bpb"] <= tiny["bpb"] and r["tok_s"] >= tiny["tok_s"] and (
                r["bpb"] <= 0.9 * tiny["bpb"] or r["tok_s"] >= 1.1 * tiny["tok_s"])), None)))
    return found


def tiny8k_at_each_lr(out: str) -> list[dict]:
    """tiny8k trained with the search's budget at each of its learning rates: a row for each
    (bits per byte of its .bin; tok/s by the cost model, the best one's emulated)."""
    settings, shape = Settings.load(out), REFERENCES["tiny8k"]
    target, cost_model = TARGETS[settings.target], costs.load(settings.target)
    rows = []
    for lr in settings.lrs:
        directory = Path(out) / "tiny8k-by-lr" / f"{lr:g}"
        candidate = Candidate(shape, settings, directory, target, cost_model, lr=lr)
        if candidate.check().problem is None:
            if not (directory / "checkpoint.npz").exists():
                candidate.train()
            scores = candidate.score()
            rows.append({"trial": f"tiny8k lr {lr:g}", "label": shape.label(), "lr": lr,
                         "n_params": shape.n_params(), "bpb": scores["bpb"],
                         "predicted_tok_s": scores["tok_s"], "bin": scores["bin"]})
    best = min(rows, key=lambda r: r["bpb"])
    best["emulated_tok_s"] = measure(best["bin"], TARGETS[settings.target])["tok_s"]
    return [with_speed(r) for r in rows]


def on_esp32c3(rows: list[dict]) -> dict[str, float]:
    """Each row's .bin measured in the ESP32-C3 emulator: {trial: tok/s}."""
    return {str(r["trial"]): measure(r["bin"], TARGETS["esp32c3"])["tok_s"] for r in rows
            if r.get("bin") and Path(r["bin"]).exists()}


@click.command()
@click.option("--trials", default=100, show_default=True)
@click.option("--jobs", default=2, show_default=True)
@click.option("--out", default="/tmp/bench-search", show_default=True)
@click.option("--esp32c3", is_flag=True, help="Measure the references and the front on the "
              "ESP32-C3 too.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def main(trials, jobs, out, esp32c3, as_json):
    if not TRAIN_TEXT.exists():
        sys.exit(f"skipped: {TRAIN_TEXT} is absent (the benchmark needs ../shared)")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tinylm", "search", "--target", "rp2040", "--data",
                    str(TRAIN_TEXT), "--trials", str(trials), "--jobs", str(jobs), "--out", out],
                   check=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    front = json.loads((Path(out) / "front.json").read_text())
    rows = json.loads((Path(out) / "trials.json").read_text())
    references = {r["trial"]: r for r in rows if r["state"] == "reference"}
    states = {state: sum(r["state"] == state for r in rows) for state in
              ("complete", "pruned", "refused", "failed")}
    found = checks(front, references)
    by_lr = tiny8k_at_each_lr(out)
    tuned = min(by_lr, key=lambda r: r["bpb"])
    found += [(f"{name} (against tiny8k at lr {tuned['lr']:g})", row) for name, row in checks(
        front, {"tiny8k": tuned}) if "tiny8k" in name]
    esp32c3_tok_s = on_esp32c3([*references.values(), *front]) if esp32c3 else {}
    if as_json:
        print(json.dumps({"seconds": seconds, "states": states, "front": front,
                          "references": references, "esp32c3_tok_s": esp32c3_tok_s,
                          "tiny8k_by_lr": by_lr,
                          "checks": {name: r and r["trial"] for name, r in found}}))
        return
    if esp32c3_tok_s:
        print("| model | parameters | bits/byte | RP2040 tok/s | ESP32-C3 tok/s |\n"
              "|---|---:|---:|---:|---:|")
        for row in [*references.values(), *front]:
            if str(row["trial"]) in esp32c3_tok_s:
                print(f"| {row['trial']}: {row['label']} | {row['n_params']:,} | "
                      f"{row['bpb']:.3f} | {row['tok_s']:,.1f} | "
                      f"{esp32c3_tok_s[str(row['trial'])]:,.1f} |")
    print(f"{seconds / 60:.1f} minutes; trials: " + ", ".join(f"{n} {s}" for s, n in
                                                              states.items()))
    print("tiny8k at the search's learning rates (after the search): " + ", ".join(
        f"{r['lr']:g}: {r['bpb']:.3f} bits/byte" for r in by_lr) + f"; the best's tok/s "
        f"{tuned['tok_s']:,.1f} (emulated)")
    for name, row in found:
        print(f"{'yes' if row else 'NO ':4} {name}" + (
            f": trial {row['trial']} ({row['label']}, {row['n_params']:,} parameters, "
            f"{row['bpb']:.4f} bits/byte, {row['tok_s']:,.1f} tok/s)" if row else ""))


if __name__ == "__main__":
    main()
