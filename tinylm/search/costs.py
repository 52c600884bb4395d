"""How long a generated token takes on a target, predicted from the model's shape: the work the
C runtime does for one token, counted (counts.py), times each kind of work's cost, fitted to
what the emulator measured in each of the runtime's kernels.

    time per token = sum over PARTS of (sum over the part's terms of cost x critical count)
                     + the hand-over's cost x tasks

A part is a kernel or a few functions that do one kind of work (PARTS: the matrix kernels by
the path a matrix takes, the sampler's exps and its selection, attention, inputs, norms, the
rest of a layer, RoPE, and the rest); its cost is what `tinylm bench --profile` attributes to
those functions (both cores' cycles together), and its terms are the counts that drive it,
fitted on the counts of both cores together. A token's time takes the same costs with the
counts of the path that decides it (counts.py: the larger half of the work the two cores
share, and the serial work). What the profile cannot see, a core handing a task to the other
and waiting for it asleep, is one more cost per task, fitted on the measured time per token
against the parts' prediction ("handover").

The sampler's work depends on how sure the model is: top-p's selection sorts out the tokens
its filter lets through, counted on the trained model's own logits
(measure.top_p_candidates); before training there are none to count, which gives a speed the
model can only fall short of.

Costs are in the target's unit: cycles on the RP2040 (two cores, as `tinylm bench` runs it),
instructions on the ESP32-C3, ns on the host (which has no profile: one part, fitted on the
whole token). They are kept in costmodel.json next to this file; `python
benchmarks/bench_costmodel.py --target T --write` measures shapes, fits them and prints how
well they predict shapes they were not fitted on.

Fitting: least squares on relative errors, part by part; a term whose cost comes out negative
(the measurements cannot tell it from another) is dropped and the rest refitted, so every
cost is one the CPU really pays.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_json
from .counts import TERMS, TOKENS, counts

COSTS_FILE = Path(__file__).with_name("costmodel.json")
HANDOVER = "handover"
# part: (the functions whose cost it is, as the profile names them; its terms)
PARTS = {
    "pair kernel": (("tlm_pair_sums",), ("pairs macs", "pairs rows", "pairs groups",
                                         "pairs calls", "pairs short macs")),
    "pair rows": (("pair_rows", "packed_rows"), ("pairs rows", "pairs multigroup rows",
                                                 "pairs multigroup groups", "pairs calls")),
    "wide rows": (("tlm_rows_wide", "tlm_quads64"),
                  ("wide macs", "wide rows", "wide groups", "wide calls", "quads macs",
                   "quads rows", "quads calls")),
    "other rows": (("tlm_product_rows", "product_half", "nibble_rows", "int8_rows",
                    "int4_rows"),
                   ("nibbles macs", "nibbles rows", "nibbles groups", "plain8 macs",
                    "plain8 rows", "plain4 macs", "plain4 rows", "plain4 groups", "calls")),
    "exps": (("tlm_exp_weights", "exp_weights", "exp_half"), ("exps",)),
    "sampler": (("sample", "tlm_sample", "select_top"), ("vocab", "candidates", "token")),
    "attention": (("attention_heads", "attention_head", "tlm_key_dots", "tlm_value_sums"),
                  ("attention", "positions", "attention heads")),
    "inputs": (("prepare_input", "find_scale", "matvec", "get_entry"), ("inputs", "matrices")),
    "norms": (("rmsnorm", "q16_from_f32"), ("width", "layers")),
    "layer": (("tlm_forward", "quantize_code", "swiglu", "add"),
              ("hidden", "width", "heads", "layers")),
    "rope": (("rope",), ("rope", "layers")),
    "rest": ((), ("token", "layers", "heads")),      # what the other parts' functions are not
}


@dataclass
class CostModel:
    target: str
    unit: str
    cores: int                             # that share a token's work
    parts: dict[str, dict[str, float]]     # part -> term -> cost of one

    def cost(self, config, bits: int, prompt_tokens: int, generated: int = TOKENS,
             candidates: float = 0.0) -> float:
        return sum(self.by_part(config, bits, prompt_tokens, generated, candidates).values())

    def by_part(self, config, bits: int, prompt_tokens: int, generated: int = TOKENS,
                candidates: float = 0.0) -> dict[str, float]:
        """Where a token's time goes, part by part."""
        critical = counts(config, bits, prompt_tokens, generated, candidates, self.target,
                          self.cores)[1]
        return time_by_part(self.parts, critical)


def time_by_part(parts: dict, critical: dict) -> dict[str, float]:
    return {part: sum(cost * critical[term] for term, cost in terms.items())
            for part, terms in parts.items()}


def part_of(function: str) -> str:
    """The part a profiled function's cost belongs to: that of the innermost function of an
    inlined chain ("a > b": b inlined in a) that a part names, else "rest"."""
    for name in reversed(function.split(" > ")):
        for part, (functions, _) in PARTS.items():
            if name in functions:
                return part
    return "rest"


def fit(measurements: list[dict]) -> dict[str, dict[str, float]]:
    """Costs from measurements {"total", "critical": counts.counts(...), "cost": measured time
    per token, "profile": {function: cost per token, both cores'} or None}: part by part on
    the profiles, then the hand-over per task on the time; without profiles, one part "all"
    with every term, fitted on the time."""
    if not all(m.get("profile") for m in measurements):
        return {"all": fit_terms([m["critical"] for m in measurements],
                                 [m["cost"] for m in measurements], tuple(TERMS))}
    parts = {}
    for part, (_, terms) in PARTS.items():
        costs = [sum(v for f, v in m["profile"].items() if part_of(f) == part)
                 for m in measurements]
        parts[part] = fit_terms([m["total"] for m in measurements], costs, terms)
    predicted = [sum(time_by_part(parts, m["critical"]).values()) for m in measurements]
    parts[HANDOVER] = {"tasks": handover([m["critical"]["tasks"] for m in measurements],
                                         [m["cost"] for m in measurements], predicted)}
    return parts


def handover(tasks: list[float], times: list[float], predicted: list[float]) -> float:
    """The cost per task that brings the predicted times nearest to the measured ones, in
    relative terms (least squares), and not below 0: sum a (1 - p / t) / sum a^2, a = tasks/t."""
    a, t, p = (np.array(v, np.float64) for v in (tasks, times, predicted))
    return max(float(np.sum(a / t * (1 - p / t)) / np.sum((a / t) ** 2)), 0.0)


def fit_terms(counts: list[dict], costs: list[float], terms) -> dict[str, float]:
    """Least squares on relative errors (measurements with no cost in this part left out),
    dropping terms that come out negative and those that no measurement has."""
    y = np.array(costs, np.float64)
    A = np.array([[c[t] for t in terms] for c in counts], np.float64)
    A, y = A[y > 0] / y[y > 0, None], y[y > 0]
    kept = [t for i, t in enumerate(terms) if A[:, i].any()]
    while kept:
        columns = A[:, [terms.index(t) for t in kept]]
        scale = np.linalg.norm(columns, axis=0)          # for the conditioning only
        solution = np.linalg.lstsq(columns / scale, np.ones(len(y)), rcond=None)[0] / scale
        if solution.min() >= 0:
            return {t: float(v) for t, v in zip(kept, solution)}
        del kept[int(np.argmin(solution))]
    return {}


def load(target: str, path: Path = COSTS_FILE) -> CostModel:
    models = json.loads(path.read_text()) if path.exists() else {}
    if target not in models:
        raise ValueError(f"no cost model for {target} in {path}: fit one with python "
                         f"benchmarks/bench_costmodel.py --target {target} --write")
    entry = models[target]
    return CostModel(target, entry["unit"], entry["cores"], entry["parts"])


def save(model: CostModel, fitted_on: list[str], command: str, path: Path = COSTS_FILE) -> None:
    models = json.loads(path.read_text()) if path.exists() else {}
    models[model.target] = {"unit": model.unit, "cores": model.cores, "parts": model.parts,
                            "fitted_on": fitted_on, "command": command}
    write_json(path, models)
