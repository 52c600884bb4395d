"""The seeds' five factors' cost in quality at equal training budget, beside their cost in
speed: a base shape and, for each factor, the shapes one step below and above it (a
halving and a doubling; a layer less and more; the vocabulary, which cannot halve to 256
tokens of BPE, from 288 to 1,024), all trained with the search's budget (`tinylm
search`'s defaults: 600 steps of 16 x 128 tokens, lr 3e-3) on the TinyStories head, written
as int8 .bin files, scored by the C runtime on the search's validation text (bits per byte)
and measured in the RP2040 emulator (two cores).

    python benchmarks/bench_factor_quality.py [--seeds 0 1] [--jobs 2] [--esp32c3] [--json]

Each shape is trained once per seed (the seed sets the initialization and the batches). A
factor's cost in quality is the change in bits per byte per doubling (per layer), the mean of
its two steps, each divided by its size in doublings (bits per byte: mean over the seeds;
negative is better); its cost in speed likewise, the slowdown per doubling. With --esp32c3
every .bin is measured on the ESP32-C3 too. Everything is kept in --work: a rerun trains
only what is new.
"""
from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import statistics
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinylm.atomic import write_json  # noqa: E402
from tinylm.core.config import hidden_width  # noqa: E402
from tinylm.search import costs  # noqa: E402
from tinylm.search.candidate import Candidate  # noqa: E402
from tinylm.search.measure import TARGETS, measure  # noqa: E402
from tinylm.search.settings import Settings  # noqa: E402
from tinylm.search.space import Shape  # noqa: E402

TRAIN_TEXT = ROOT.parent / "shared" / "data" / "tinystories_train_head.txt"
# the base: the seeds' "balanced production" region (a few layers, vocabulary 256-512)
BASE = {"vocab_size": 512, "dim": 16, "n_layers": 2, "n_heads": 2, "ffn_ratio": 4}
STEPS = {"vocab_size": (288, 1024), "dim": (8, 32), "n_layers": (1, 3), "n_heads": (1, 4),
         "ffn_ratio": (2, 8)}
STEP_NAME = {"n_layers": "layer"}


def shape(point: dict) -> Shape:
    return Shape(point["vocab_size"], point["dim"], point["n_layers"], point["n_heads"],
                 point["n_heads"], hidden_width(point["dim"], point["ffn_ratio"]), 8)


def points() -> list[tuple[str, dict]]:
    """("base", BASE), then ("dim-", {...}), ("dim+", {...}), ... for every factor."""
    found = [("base", BASE)]
    for factor, (below, above) in STEPS.items():
        found += [(f"{factor}-", dict(BASE, **{factor: below})),
                  (f"{factor}+", dict(BASE, **{factor: above}))]
    return found


def settings(work: Path, seed: int) -> Settings:
    return Settings(target="rp2040", data=[str(TRAIN_TEXT)], out=str(work), seed=seed)


def run(job) -> dict:
    """One shape and seed: trained, scored and measured once (kept in its folder)."""
    name, point, seed, work, esp32c3 = job
    s = settings(work, seed)
    target = TARGETS["rp2040"]
    directory = work / f"seed{seed}" / name
    kept = directory / "figures.json"
    found = json.loads(kept.read_text()) if kept.exists() else {}
    if "bpb" not in found:
        candidate = Candidate(shape(point), s, directory, target, costs.load("rp2040"))
        check = candidate.check()
        if check.problem:
            raise SystemExit(f"{name}: {check.problem}")
        summary = candidate.train()
        found.update(name=name, seed=seed, **point, n_params=check.facts["n_params"],
                     float_bpb=summary["val_bpb"], **candidate.score())
        found["rp2040"] = measure(found["bin"], target)["tok_s"]
        write_json(kept, found)
    if esp32c3 and "esp32c3" not in found:
        found["esp32c3"] = measure(found["bin"], TARGETS["esp32c3"])["tok_s"]
        write_json(kept, found)
    return found


def summary(rows: list[dict], boards: list[str]) -> list[dict]:
    """Per shape: bits per byte (mean and spread over the seeds) and tok/s on each board (mean
    over the seeds: a trained model's sampler work depends on its weights)."""
    table = []
    for name, point in points():
        mine = [r for r in rows if r["name"] == name]
        bpbs = [r["bpb"] for r in mine]
        table.append(dict(point, name=name, label=shape(point).label(),
                          n_params=mine[0]["n_params"],
                          bpb=statistics.mean(bpbs), spread=max(bpbs) - min(bpbs),
                          **{b: statistics.mean(r[b] for r in mine) for b in boards}))
    return table


def factor_costs(table: list[dict], boards: list[str]) -> list[dict]:
    """For each factor, the step from below to base and from base to above, each per doubling
    (per layer): the change in bits per byte, and the slowdown on each board (%); the mean of
    the two steps."""
    by_name = {r["name"]: r for r in table}
    base, found = by_name["base"], []
    for factor in STEPS:
        pairs = [(by_name[f"{factor}-"], base), (base, by_name[f"{factor}+"])]
        sizes = [size(factor, b) - size(factor, a) for a, b in pairs]
        found.append(dict(factor=factor, bpb=statistics.mean(
            (b["bpb"] - a["bpb"]) / n for (a, b), n in zip(pairs, sizes)),
            **{board: statistics.mean(100 * (1 - (y[board] / x[board]) ** (1 / n))
                                      for (x, y), n in zip(pairs, sizes)) for board in boards}))
    return found


def size(factor: str, row: dict) -> float:
    """A row's value of the factor in steps: layers as they are, the others in doublings."""
    return row[factor] if factor == "n_layers" else math.log2(row[factor])


@click.command()
@click.option("--seeds", multiple=True, type=int, default=(0, 1), show_default=True)
@click.option("--jobs", default=2, show_default=True, help="Shapes trained at once.")
@click.option("--esp32c3", is_flag=True, help="Measure every model on the ESP32-C3 too.")
@click.option("--work", default="/tmp/tinylm-factor-quality", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def main(seeds, jobs, esp32c3, work, as_json):
    if not TRAIN_TEXT.exists():
        sys.exit(f"skipped: {TRAIN_TEXT} is absent (the benchmark needs ../shared)")
    work = Path(work)
    for name, point in points():            # the corpora, once, before the workers
        problem = Candidate(shape(point), settings(work, 0), work / "checks" / name,
                            TARGETS["rp2040"], None).check().problem
        if problem:
            sys.exit(f"{name} ({shape(point).label()}): {problem}")
    jobs_list = [(name, point, seed, work, esp32c3) for seed in seeds for name, point in points()]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        rows = pool.map(run, jobs_list, chunksize=1)
    boards = ["rp2040"] + (["esp32c3"] if esp32c3 else [])
    table = summary(rows, boards)
    factors = factor_costs(table, boards)
    if as_json:
        print(json.dumps({"rows": rows, "table": table, "factors": factors,
                          "settings": dataclasses.asdict(settings(work, seeds[0]))}))
        return
    print(f"{len(table)} shapes x {len(seeds)} seeds, int8, search budget (600 steps of 16 x "
          "128 tokens); bits/byte by the C runtime, tok/s emulated (RP2040: two cores)")
    print("| shape | parameters | bits/byte (seed spread) | " + " | ".join(
        f"{b} tok/s" for b in boards) + " |")
    print("|---|---:|---:|" + "---:|" * len(boards))
    for r in table:
        print(f"| {r['name']}: {r['label']} | {r['n_params']:,} | {r['bpb']:.3f} "
              f"({r['spread']:.3f}) | " + " | ".join(f"{r[b]:,.1f}" for b in boards) + " |")
    print("\n| factor | bits/byte | " + " | ".join(
        f"{b} slowdown" for b in boards) + " |")
    print("|---|---:|" + "---:|" * len(boards))
    for f in factors:
        print(f"| {f['factor']} (per {STEP_NAME.get(f['factor'], 'doubling')}) | "
              f"{f['bpb']:+.3f} | " + " | ".join(
            f"{f[b]:+.1f}%" for b in boards) + " |")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
