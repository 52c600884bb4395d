"""The seeds' architecture study, re-done for speed: every shape of a grid over their five factors
(vocabulary, width, layers, heads, FFN ratio) at 1K-10K parameters, int8, its tok/s on the
target (the RP2040's two cores, or the ESP32-C3) predicted by the search's cost model and,
with --emulate, measured in the emulator;
then each factor's cost in speed: the median slowdown from one step of it (a doubling; a layer
more), over the pairs of shapes that differ in it alone.

    python benchmarks/bench_architecture.py [--target rp2040|esp32c3] [--emulate] [--jobs 2]

The weights are untrained (Transformer.initialize): a token's work does not depend on them,
but for the sampler's, which is counted on each model's own logits (measure.top_p_candidates)
for the prediction as for the emulator. Tokenizers learn from the TinyStories head (the
benchmark skips without ../shared). Measurements are kept in --work: a rerun measures only new
shapes. With --emulate (now or in an earlier run) the tables also give the emulated figures
and the cost model's error on these shapes, none of which it was fitted on.
"""
from __future__ import annotations

import functools
import itertools
import json
import multiprocessing
import os
import statistics
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinylm.atomic import write_json  # noqa: E402
from tinylm.boards import memplan  # noqa: E402
from tinylm.boards.targets import flash_room  # noqa: E402
from tinylm.core.config import hidden_width  # noqa: E402
from tinylm.core.model import Transformer  # noqa: E402
from tinylm.export.binformat import read_bin, write_bin  # noqa: E402
from tinylm.export.quantize import quantize_model  # noqa: E402
from tinylm.search import costs  # noqa: E402
from tinylm.search.measure import (  # noqa: E402
    PROMPT,
    TARGETS,
    headline,
    measure,
    top_p_candidates,
)
from tinylm.search.space import Shape  # noqa: E402
from tinylm.text.data import read_documents  # noqa: E402
from tinylm.text.tokenizer import train_tokenizer  # noqa: E402

TRAIN_TEXT = ROOT.parent / "shared" / "data" / "tinystories_train_head.txt"
TOKENIZER_DOCUMENTS = 2000
CONTEXT = 128
# the grid: a step of each factor is a doubling (but vocabulary 64 to 512), or a layer more
FACTORS = {"vocab_size": (32, 64, 512, 1024), "dim": (4, 8, 16, 32), "n_layers": (1, 2, 3, 4),
           "n_heads": (1, 2, 4), "ffn_ratio": (1, 2, 4)}
PARAMS = (1_000, 10_000)
BOARD_NAMES = {"rp2040": "RP2040 (two cores)", "esp32c3": "ESP32-C3"}
SEEDS_COST = {"dim": "40-50% per doubling", "n_layers": "25-40% per layer",
              "n_heads": "20-25% per doubling", "ffn_ratio": "15-20%",
              "vocab_size": "8-12%"}


def grid() -> list[dict]:
    """The grid's points whose heads have an even width (RoPE) and whose parameters are in
    PARAMS, as their factors."""
    points = []
    for values in itertools.product(*FACTORS.values()):
        point = dict(zip(FACTORS, values))
        if point["dim"] % point["n_heads"] or point["dim"] // point["n_heads"] % 2:
            continue
        if PARAMS[0] <= shape(point).n_params() <= PARAMS[1]:
            points.append(point)
    return points


def shape(point: dict) -> Shape:
    return Shape(point["vocab_size"], point["dim"], point["n_layers"], point["n_heads"],
                 point["n_heads"], hidden_width(point["dim"], point["ffn_ratio"]), 8)


def model_file(point: dict, work: Path) -> Path:
    """The point's untrained int8 .bin (written once)."""
    s = shape(point)
    path = work / "models" / f"{s.slug()}.bin"
    if not path.exists():
        tokenizer = trained_tokenizer(s.vocab_size, s.tokenizer)
        config = s.config(CONTEXT)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bin(path, config, tokenizer,
                  quantize_model(Transformer.initialize(config, seed=0), 8, 32), 8, 32)
    return path


@functools.cache
def trained_tokenizer(vocab_size: int, kind: str):
    return train_tokenizer(read_documents([TRAIN_TEXT])[:TOKENIZER_DOCUMENTS], vocab_size, kind)


def figures(job) -> dict:
    """A point's predicted tok/s on the target (and measured, with emulate), kept in
    work/figures/ (work/figures-esp32c3/ for the ESP32-C3)."""
    point, work, target_name, emulate = job
    path = model_file(point, work)
    kept = work / ("figures" + ("" if target_name == "rp2040" else f"-{target_name}")) / (
        path.stem + ".json")
    kept.parent.mkdir(exist_ok=True)
    found = json.loads(kept.read_text()) if kept.exists() else {}
    target = TARGETS[target_name]
    if "predicted" not in found:
        model = read_bin(path)
        plan = memplan.plan(path, target.board, flash_room(target.board), context=CONTEXT)
        candidates = top_p_candidates(path)
        cost = costs.load(target.name).cost(model.config, 8, len(model.tokenizer.encode(
            PROMPT, bos=True)), candidates=candidates)
        found.update(point, n_params=shape(point).n_params(), candidates=candidates,
                     predicted=headline(target, target.hz / cost, model,
                                        plan.flash_weight_bytes))
    if emulate and "emulated" not in found:
        found["emulated"] = measure(path, target)["tok_s"]
    write_json(kept, found)
    return found


def factor_costs(rows: list[dict], key: str) -> dict[str, float]:
    """For each factor, the median slowdown (1 - tok/s after / tok/s before, in %) from one
    step of it, over the pairs of rows that differ in that factor alone."""
    index = {tuple(r[f] for f in FACTORS): r for r in rows if r.get(key)}
    result = {}
    for i, factor in enumerate(FACTORS):
        steps = FACTORS[factor]
        slowdowns = []
        for values, row in index.items():
            if values[i] == steps[-1]:
                continue
            step = steps[steps.index(values[i]) + 1]
            if factor != "n_layers" and step != 2 * values[i]:
                continue                  # vocabulary 64 to 512: characters to BPE, not a step
            bigger = index.get(values[:i] + (step,) + values[i + 1:])
            if bigger:
                slowdowns.append(100 * (1 - bigger[key] / row[key]))
        result[factor] = (statistics.median(slowdowns), len(slowdowns)) if slowdowns else None
    return result


@click.command()
@click.option("--target", "target_name", type=click.Choice(["rp2040", "esp32c3"]),
              default="rp2040", show_default=True)
@click.option("--emulate", is_flag=True, help="Measure every shape in the emulator too.")
@click.option("--jobs", default=1, show_default=True, help="Shapes measured at once.")
@click.option("--work", default="/tmp/tinylm-architecture", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def main(target_name, emulate, jobs, work, as_json):
    if not TRAIN_TEXT.exists():
        sys.exit(f"skipped: {TRAIN_TEXT} is absent (the benchmark needs ../shared)")
    points, work = grid(), Path(work)
    for point in points:                    # the tokenizers, once, before the workers
        model_file(point, work)
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        rows = pool.map(figures, [(p, work, target_name, emulate) for p in points], chunksize=1)
    emulated = [r for r in rows if "emulated" in r]        # now, or by an earlier run
    keys = ["predicted", "emulated"] if emulated else ["predicted"]
    by_key = {key: factor_costs(rows, key) for key in keys}
    errors = sorted(abs(r["predicted"] / r["emulated"] - 1) for r in emulated)
    if as_json:
        print(json.dumps({"rows": rows, "factors": by_key, "errors": errors}))
        return
    print(f"{len(rows)} architectures ({len(emulated)} emulated), {PARAMS[0]:,}-{PARAMS[1]:,} "
          f"parameters, int8, {BOARD_NAMES[target_name]}, untrained weights")
    print("| factor | seeds (CircuitPython) | " + " | ".join(
        f"{key}: median slowdown per step (pairs)" for key in keys) + " |")
    print("|---|---|" + "---:|" * len(keys))
    for factor in FACTORS:
        cells = [f"{v[0]:+.1f}% ({v[1]})" if (v := by_key[key][factor]) else "-" for key in keys]
        print(f"| {factor} | {SEEDS_COST[factor]} | " + " | ".join(cells) + " |")
    speeds = sorted(r[keys[-1]] for r in rows)
    print(f"tok/s ({keys[-1]}): slowest {speeds[0]:,.1f}, median "
          f"{speeds[len(speeds) // 2]:,.1f}, fastest {speeds[-1]:,.1f}")
    if errors:
        print(f"cost model vs emulator on these {len(errors)} shapes (none fitted on): "
              f"median error {100 * errors[len(errors) // 2]:.1f}%, largest "
              f"{100 * errors[-1]:.1f}%, within 10%: {sum(e <= 0.10 for e in errors)}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
