"""`tinylm search`: the search space, the checks before training, the cost model's fit, pruning,
a study shared by two processes, resuming after a kill, and a tiny search end to end with
the front confirmed in the emulator."""
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tinylm.boards import emulate_rp2040, memplan
from tinylm.boards.targets import flash_room
from tinylm.cli import main
from tinylm.core.config import ModelConfig
from tinylm.core.model import Transformer
from tinylm.export.binformat import read_bin, write_bin
from tinylm.export.quantize import quantize_model
from tinylm.runtime.engine import Engine
from tinylm.search import costs, counts, results, study
from tinylm.search.candidate import Candidate, bin_nats
from tinylm.search.corpus import characters, corpus
from tinylm.search.settings import Settings
from tinylm.search.space import (
    DEFAULT_LR,
    DIMS,
    LEARNING_RATES,
    Shape,
    Space,
    problem,
    suggest,
    suggest_lr,
    vocab_choices,
)
from tinylm.text.corpus import make_stories
from tinylm.text.data import token_documents
from tinylm.training.checkpoint import load_checkpoint
from tinylm.training.evaluate import document_nats

optuna = pytest.importorskip("optuna", reason="Optuna is not installed: search tests skipped")
HEARTBEAT = (1, 2)     # seconds: a killed worker's trial is stale after 2 s


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "stories.txt"
    path.write_text("\n\n".join(make_stories(400, seed=0)) + "\n", encoding="utf-8")
    return path


def tiny(stories, out, **changes) -> Settings:
    """A search of tiny models on the built-in stories: a few steps each."""
    fields = dict(target="rp2040", data=[stories], out=out, steps=8, batch_size=4, seq_len=32,
                  eval_every=4, val_bytes=3000, min_params=1_000, max_params=20_000, trials=3)
    return Settings(**{**fields, **changes})


class Draw:
    """An Optuna trial's suggest_* drawing uniformly (as the sampler's first trials do)."""

    def __init__(self, seed):
        self.rng = random.Random(seed)

    def suggest_categorical(self, name, choices):
        return self.rng.choice(list(choices))

    def suggest_int(self, name, low, high):
        return self.rng.randint(low, high)


def test_the_space_draws_valid_shapes_of_every_factor():
    space = Space(vocab_choices(44))
    shapes = [suggest(Draw(seed), space) for seed in range(400)]
    for shape in shapes:
        assert shape.n_kv_heads <= shape.n_heads and shape.n_heads % shape.n_kv_heads == 0
        assert shape.hidden_dim % 4 == 0 and shape.hidden_dim >= shape.dim
        assert shape.tokenizer == ("char" if shape.vocab_size < 260 else "bpe")
        if problem(shape, space) is None:
            assert shape.head_dim % 2 == 0 and 1_000 <= shape.n_params() <= 300_000
            shape.config(64)                     # a valid ModelConfig
    assert {s.dim for s in shapes} == set(DIMS) and {s.bits for s in shapes} == {8, 4}
    assert {s.n_layers for s in shapes} == set(range(1, 7))
    fixed = suggest(optuna.trial.FixedTrial({"dim": 16, "n_heads": 4, "kv_sharing": 2,
                                             "ffn_ratio": 3, "vocab_size": 48, "n_layers": 2,
                                             "bits": 4}), space)
    assert fixed == Shape(48, 16, 2, 4, 2, 48, 4) and fixed.label() == "v48 d16 L2 h4/2 f48 q4"
    assert {suggest_lr(Draw(seed), space) for seed in range(100)} == set(LEARNING_RATES)
    assert suggest_lr(Draw(0), Space(vocab_choices(44), lrs=(0.01,))) == 0.01


def test_vocabulary_choices_follow_the_text():
    assert vocab_choices(44)[:4] == (32, 48, 49, 288)    # 44 characters: at most 49 tokens
    assert vocab_choices(90)[:5] == (32, 48, 64, 95, 288)
    assert vocab_choices(300)[:8] == (32, 48, 64, 96, 128, 192, 256, 288)
    assert vocab_choices(44)[-1] == 4096


def test_shapes_refused_without_data_say_why():
    space = Space(vocab_choices(44), min_params=1_000, max_params=20_000)
    assert "RoPE" in problem(Shape(64, 12, 1, 4, 4, 48, 8), space)       # heads of 3
    assert "RoPE" in problem(Shape(64, 8, 1, 8, 8, 32, 8), space)        # heads of 1
    assert "outside --params 1,000-20,000" in problem(Shape(4096, 64, 2, 4, 4, 256, 8), space)
    assert problem(Shape(64, 16, 1, 2, 2, 48, 8), space) is None


def random_configs(n, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        n_heads = int(rng.choice([1, 2, 4]))
        yield ModelConfig(vocab_size=int(rng.choice([48, 512, 2048])),
                          dim=int(rng.choice([8, 16, 32, 64])), n_layers=int(rng.integers(1, 6)),
                          n_heads=n_heads, n_kv_heads=max(1, n_heads // int(rng.choice([1, 2]))),
                          head_dim=int(rng.choice([2, 4, 16])),
                          hidden_dim=int(rng.choice([32, 128]))), int(rng.choice([8, 4]))


def test_the_cost_model_fit_recovers_known_costs_part_by_part():
    """Synthetic measurements on two cores (prompts of 4-19 tokens): each part's cost in the
    profile a known sum of its terms over both cores' counts (within 0.2%), the time per token
    those costs on the critical path's counts plus a known cost per task; the fit finds them,
    and predicts a token it was not fitted on."""
    true = {"pair kernel": {"pairs macs": 3.0, "pairs rows": 20.0},
            "other rows": {"nibbles macs": 10.0, "calls": 400.0},
            "sampler": {"vocab": 40.0, "candidates": 110.0, "token": 1000.0},
            "exps": {"exps": 30.0},
            "attention": {"attention": 14.0, "positions": 23.0},
            "rest": {"token": 5000.0, "layers": 900.0}}
    handover = 250.0
    rng = np.random.default_rng(1)
    measurements = []
    for config, bits in random_configs(40):
        prompt, candidates = int(rng.integers(4, 20)), float(rng.integers(1, 99))
        total, critical = counts.counts(config, bits, prompt, candidates=candidates, cores=2)
        noise = 1 + 0.002 * rng.standard_normal(len(true))
        profile = {costs.PARTS[part][0][0] if costs.PARTS[part][0] else "divide":
                   sum(v * total[t] for t, v in terms.items()) * noise[i]
                   for i, (part, terms) in enumerate(true.items())}
        time = sum(v * critical[t] for terms in true.values() for t, v in terms.items())
        measurements.append({"total": total, "critical": critical, "profile": profile,
                             "cost": time + handover * critical["tasks"]})
    fitted = costs.fit(measurements)
    for part, terms in true.items():
        for term, value in terms.items():
            assert fitted[part][term] == pytest.approx(value, rel=0.05), (part, term)
    assert fitted["handover"]["tasks"] == pytest.approx(handover, rel=0.05)
    model = costs.CostModel("rp2040", "cycles", 2, fitted)
    config = ModelConfig(vocab_size=300, dim=24, n_layers=3, n_heads=2, n_kv_heads=1,
                         head_dim=4, hidden_dim=64)
    _, critical = counts.counts(config, 4, 12, candidates=30, cores=2)
    expected = sum(v * critical[t] for terms in true.values() for t, v in terms.items()) + \
        handover * critical["tasks"]
    assert model.cost(config, 4, 12, candidates=30) == pytest.approx(expected, rel=0.01)
    # a term the measurements cannot tell from another does not come out negative
    # a profile's functions go to their parts, inlined ones (qemu's "a > b") by the innermost
    assert costs.part_of("tlm_forward > matvec") == "inputs"
    assert costs.part_of("tlm_forward") == "layer" and costs.part_of("__aeabi_idiv") == "rest"
    twins = [dict(m["total"], exps=m["total"]["vocab"]) for m in measurements]
    assert min(costs.fit_terms(twins, [m["cost"] for m in measurements],
                               ("vocab", "exps", "token", "layers")).values()) >= 0


def test_two_cores_share_the_rows_heads_and_exps_by_the_runtimes_split():
    """The critical path has the larger half of each shared task (product_half's split at a
    multiple of 4, attention_heads' n // 2 heads, exp_half's), the serial work whole."""
    assert counts.row_halves(10) == (4, 6) and counts.row_halves(12) == (8, 4)
    assert counts.row_halves(2) == (0, 2) and counts.row_halves(64) == (32, 32)
    config = ModelConfig(vocab_size=101, dim=16, n_layers=2, n_heads=3, n_kv_heads=1,
                         head_dim=4, hidden_dim=40, max_seq_len=128)
    one_total, one = counts.counts(config, 8, 10, cores=1)
    total, two = counts.counts(config, 8, 10, cores=2)
    assert one == one_total == total                        # the same work either way
    assert two["exps"] == 51 and one["exps"] == 101
    assert two["attention heads"] == 2 * 2 and one["attention heads"] == 2 * 3
    assert two["rope"] == 2 * (2 + 1) * 2                    # the larger half's queries, the key
    rows = {cols: sum(max(counts.row_halves(r)) for r, c, _ in counts.matrices(config, 8)
                      if c == cols) for cols in (12, 16, 40)}
    assert two["pairs rows"] + two["quads rows"] + two["wide rows"] + two["plain8 rows"] == \
        sum(rows.values())
    for term in ("vocab", "candidates", "width", "hidden", "inputs", "token", "tasks"):
        assert two[term] == one[term]
    assert total["calls"] == 2 * 15 and two["calls"] == 15      # a call per core


def test_each_matrix_is_counted_on_the_path_the_runtime_takes():
    assert counts.path(16, 8, 32, 128, "rp2040") == "pairs"
    assert counts.path(96, 8, 32, 128, "rp2040") == "wide"      # several groups of 32
    assert counts.path(64, 8, 32, 128, "rp2040") == "quads"     # four rows of 64 at a time
    assert counts.path(96, 8, 32, 128, "esp32c3") == "pairs"    # ARM assembly only
    assert counts.path(64, 8, 16, 128, "rp2040") == "pairs"     # an int4 file's groups of 16
    assert counts.path(2, 8, 32, 128, "rp2040") == "plain8"     # half a word
    assert counts.path(64, 8, 32, 128, "host") == "plain8"      # SIMD: no pair kernel
    assert counts.path(384, 8, 32, 128, "rp2040") == "plain8"   # packed, too big for scratch
    assert counts.path(384, 8, 32, 256, "rp2040") == "wide"
    assert counts.path(24, 4, 16, 128, "rp2040") == "nibbles"
    assert counts.path(12, 4, 16, 128, "rp2040") == "plain4"
    config = ModelConfig(vocab_size=64, dim=16, n_layers=2, n_heads=2, n_kv_heads=1,
                         head_dim=8, hidden_dim=48, max_seq_len=128)
    total = counts.counts(config, 4, 10)[0]
    assert total["pairs macs"] == 64 * 16                    # the int8 LM head alone
    assert total["nibbles macs"] + total["plain4 macs"] == config.n_params() - 64 * 16 - 5 * 16
    assert total["matrices"] == 15 and total["vocab"] == 64


class Finished:
    def __init__(self, number, tok_s, curve):
        self.number, self.values = number, (1.0, tok_s)
        self.user_attrs = {"curve": {str(k): v for k, v in curve.items()}}


def test_a_trial_behind_a_faster_one_is_pruned_from_half_way():
    finished = [Finished(0, 500.0, {100: 3.0, 300: 2.5, 400: 2.4})]
    assert study.hopeless(finished, 1, 400.0, 300, 2.6, steps=600)       # slower and behind
    assert not study.hopeless(finished, 1, 600.0, 300, 2.6, steps=600)   # faster: no
    assert not study.hopeless(finished, 1, 400.0, 300, 2.52, steps=600)  # within the margin
    assert not study.hopeless(finished, 1, 400.0, 100, 3.5, steps=600)   # too early
    assert not study.hopeless(finished, 1, 400.0, 600, 3.5, steps=600)   # the last step
    assert not study.hopeless(finished, 0, 400.0, 300, 2.6, steps=600)   # itself


def test_the_front_and_its_templates():
    rows = [results.with_speed({"trial": n, "bpb": bpb, "predicted_tok_s": tok_s,
                                "state": "complete"})
            for n, (bpb, tok_s) in enumerate([(2.0, 1000.0), (1.5, 400.0), (1.6, 300.0),
                                              (1.2, 50.0), (2.5, 900.0), (1.5, 400.0)])]
    rows.append({"trial": 9, "bpb": None, "tok_s": 5000.0, "state": "pruned"})
    rows.append({"trial": 10, "bpb": 1.0, "tok_s": 5000.0, "state": "refused"})  # too slow
    front = results.pareto(rows)
    assert [r["trial"] for r in front] == [0, 1, 5, 3]     # fastest first; ties both kept
    chosen = results.templates(front)
    assert chosen["fastest"]["trial"] == 0 and chosen["best-that-fits"]["trial"] == 3
    assert chosen["balanced"]["trial"] == 1
    rows[0]["emulated_tok_s"] = 200.0                      # measured: slower than predicted
    assert [r["trial"] for r in results.pareto([results.with_speed(r) for r in rows])] == \
        [4, 1, 5, 3]


def test_every_vocabulary_is_scored_on_the_same_text(stories, tmp_path):
    settings = tiny(stories, tmp_path)
    largest = characters(settings) + 5          # every character of the training text
    texts = []
    for size, kind in ((32, "char"), (largest, "char"), (320, "bpe")):
        c = corpus(settings, size, kind)
        val = np.fromfile(c.directory / "val.uint16", np.uint16)
        assert len(val) == c.val_tokens and 3000 <= c.val_bytes < 5000
        texts.append(c.tokenizer.decode_bytes(val.tolist()))
        assert len(texts[-1]) == c.val_bytes
    assert texts[1] == texts[2] and len(texts[0]) == len(texts[2])   # 32: some fallbacks
    with pytest.raises(ValueError, match=f"from 6 to {largest} tokens"):
        corpus(settings, largest + 1, "char")


def test_bin_nats_in_c_are_the_numpy_engines(stories, tmp_path):
    c = corpus(tiny(stories, tmp_path), 40, "char")
    config = ModelConfig(vocab_size=40, dim=16, n_layers=1, n_heads=2, n_kv_heads=1,
                         head_dim=8, hidden_dim=32, max_seq_len=32)
    write_bin(tmp_path / "m.bin", config, c.tokenizer,
              quantize_model(Transformer.initialize(config, seed=1), 8, 32), 8, 32)
    val = np.fromfile(c.directory / "val.uint16", np.uint16).astype(np.int64)
    documents = token_documents(val, c.tokenizer.bos_id)
    expected, _ = document_nats(Engine(read_bin(tmp_path / "m.bin")), documents)
    assert bin_nats(tmp_path / "m.bin", val) == pytest.approx(expected, rel=1e-9)


def test_nothing_that_fails_the_memory_plan_is_trained(stories, tmp_path, monkeypatch):
    """A long context makes many shapes' arenas too big for the RP2040: they are refused,
    and every shape that reaches training fits the board by memplan."""
    settings = tiny(stories, tmp_path, seq_len=3072, max_params=200_000, bits=(8,), trials=6)
    trained = []

    def train(self, on_validation=None):
        plan = memplan.plan(self.directory / "untrained.bin", "rp2040", flash_room("rp2040"),
                            context=settings.seq_len)
        trained.append((self.shape, plan.fits))
        return {"interrupted": False, "val_bpb": 2.0}
    monkeypatch.setattr(Candidate, "train", train)
    monkeypatch.setattr(Candidate, "score", lambda self: {"bpb": 2.0, "bin": "", "bin_bytes": 0,
                                                          "candidates": 0.0, "tok_s": 100.0})
    study.work(settings, 0, HEARTBEAT)
    the_study = study.load(settings)
    refused = [t.user_attrs["refused"] for t in the_study.trials if "refused" in t.user_attrs]
    assert len(trained) == 6 and all(fits for _, fits in trained)
    assert any("does not fit on the rp2040" in why for why in refused)
    # a shape drawn again is refused too, but it is no violation: it has no constraint
    assert all(t.constraints["fits"] > 0 for t in the_study.trials if "refused" in t.user_attrs
               and not t.user_attrs["refused"].startswith("the same shape and learning rate"))


def test_a_shape_drawn_again_is_not_trained_again(stories, tmp_path, monkeypatch):
    """...unless at another learning rate."""
    settings = tiny(stories, tmp_path, trials=1)
    trained = []

    def train(self, on_validation=None):
        trained.append((self.shape, self.lr))
        return {"interrupted": False, "val_bpb": 2.0}
    monkeypatch.setattr(Candidate, "train", train)
    monkeypatch.setattr(Candidate, "score", lambda self: {"bpb": 2.0, "bin": "", "bin_bytes": 0,
                                                          "candidates": 0.0, "tok_s": 100.0})
    study.work(settings, 0, HEARTBEAT)
    first = study.load(settings).trials[-1]
    study.load(settings).enqueue_trial(first.params)        # as a sampler drawing it again
    settings.trials = 2
    study.work(settings, 0, HEARTBEAT)
    the_study = study.load(settings)
    again = the_study.trials[first.number + 1]
    assert again.params == first.params and again.state.name == "PRUNED"
    assert again.user_attrs["refused"] == f"the same shape and learning rate as trial " \
                                          f"{first.number}, trained already"
    assert len(trained) == 2 and trained[0] != trained[1] and study.trained(the_study) == 2
    other_lr = next(lr for lr in settings.lrs if lr != first.params["lr"])
    study.load(settings).enqueue_trial(dict(first.params, lr=other_lr))
    settings.trials = 3
    study.work(settings, 0, HEARTBEAT)
    assert trained[-1] == (trained[0][0], other_lr) and len(trained) == 3


def test_a_search_made_before_the_learning_rate_was_searched(stories, tmp_path, monkeypatch):
    """Its settings had one "lr" and its trials no rate of their own: it still resumes, and
    its rows carry that rate."""
    monkeypatch.setattr(Candidate, "train", lambda self, on_validation=None: {
        "interrupted": False, "val_bpb": 2.0})
    monkeypatch.setattr(Candidate, "score", lambda self: {"bpb": 2.0, "bin": "", "bin_bytes": 0,
                                                          "candidates": 0.0, "tok_s": 100.0})
    settings = tiny(stories, tmp_path, trials=1, lrs=(0.005,))
    settings.save()
    old = {**settings.fixed(), "lr": 0.005}
    del old["lrs"]
    the_study = study.open_study(settings)
    the_study.set_user_attr("settings", old)
    saved = json.loads((tmp_path / "search.json").read_text())
    saved["lr"] = saved.pop("lrs")[0]
    (tmp_path / "search.json").write_text(json.dumps(saved))
    shape = dataclasses.asdict(Shape(64, 16, 1, 2, 2, 48, 8))
    the_study.add_trial(optuna.trial.create_trial(values=[2.5, 90.0], user_attrs={
        "shape": shape, "training": True}))
    loaded = Settings.load(tmp_path)
    assert loaded.lrs == (0.005,)
    loaded.trials = 2
    study.work(loaded, 0, HEARTBEAT)
    rows = results.trial_rows(study.load(loaded))
    assert sum(r["state"] == "complete" for r in rows) == 2
    assert all(r["lr"] == 0.005 for r in rows)


def test_a_study_refuses_a_worker_with_other_settings(stories, tmp_path):
    study.open_study(tiny(stories, tmp_path))
    with pytest.raises(ValueError, match=r"other settings \(steps: 8\)"):
        study.open_study(tiny(stories, tmp_path, steps=9))
    study.open_study(tiny(stories, tmp_path, jobs=2, trials=9))    # not results: may differ


def start_worker(settings: Settings, index: int) -> subprocess.Popen:
    code = ("import sys; from tinylm.search.settings import Settings; "
            "from tinylm.search.study import work; "
            f"work(Settings.load(sys.argv[1]), {index}, {HEARTBEAT})")
    return subprocess.Popen([sys.executable, "-c", code, settings.out],
                            env=dict(os.environ, PYTHONPATH=os.getcwd()))


def assert_every_trial_done_once(the_study, trials: int, workers: int):
    states = [t.state.name for t in the_study.trials]
    assert "RUNNING" not in states and "WAITING" not in states
    assert trials <= study.trained(the_study) <= trials + workers - 1
    for t in the_study.trials:
        if t.state.name == "COMPLETE":
            assert os.path.exists(t.user_attrs["bin"]) and t.values[0] > 0


def test_two_workers_share_one_study(stories, tmp_path):
    settings = tiny(stories, tmp_path, trials=6, steps=20, eval_every=10)
    settings.save()
    study.open_study(settings)
    workers = [start_worker(settings, i) for i in (1, 2)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0]
    the_study = study.load(settings)
    assert_every_trial_done_once(the_study, 6, 2)
    ran = [t.user_attrs["worker"] for t in the_study.trials if "worker" in t.user_attrs]
    assert len(set(ran)) == 2                    # both worked, each trial once


def test_a_killed_search_resumes_and_runs_the_lost_trial_again(stories, tmp_path):
    settings = tiny(stories, tmp_path, trials=3, steps=200, eval_every=100)
    settings.save()
    worker = start_worker(settings, 0)
    the_study = study.open_study(settings, heartbeat=HEARTBEAT)
    deadline = time.time() + 120
    while not any(t.state.name == "RUNNING" and t.user_attrs.get("training")
                  for t in the_study.get_trials()):
        assert time.time() < deadline and worker.poll() is None
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    killed = next(t for t in the_study.get_trials() if t.state.name == "RUNNING")
    study.work(settings, 0, HEARTBEAT)     # at once: its process is gone
    the_study = study.load(settings)
    assert the_study.trials[killed.number].state.name == "FAIL"
    again = [t for t in the_study.trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(again) == 1 and again[0].params == killed.params
    assert again[0].state.name in ("COMPLETE", "PRUNED")
    assert_every_trial_done_once(the_study, 3, 1)


def test_command_line_mistakes(stories, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["search", "--data", str(stories)])
    assert result.exit_code == 2 and "needs --target and --data" in result.output
    result = runner.invoke(main, ["search", "--target", "rp2040", "--data", str(stories),
                                  "--params", "lots"])
    assert result.exit_code == 2 and "is not MIN-MAX, e.g. 1K-300K" in result.output
    result = runner.invoke(main, ["search", "show", str(tmp_path)])
    assert result.exit_code == 1 and "holds no search" in result.stderr


def test_tinylm_works_without_optuna_and_search_says_how_to_get_it(stories, tmp_path):
    blocker = tmp_path / "blocker" / "optuna"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('hidden for the test')\n")
    path = os.pathsep.join([str(blocker.parent), os.getcwd()])
    code = ("import sys, tinylm, tinylm.cli, tinylm.search.run; "
            "from tinylm.cli import main; "
            "main(['search', '--target', 'rp2040', '--data', sys.argv[1], '--out', sys.argv[2]])")
    result = subprocess.run([sys.executable, "-c", code, str(stories), str(tmp_path / "s")],
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=path))
    assert result.returncode == 1, result.stderr
    assert "pip install 'tinylm[search]'" in result.stderr


@pytest.mark.slow
def test_a_tiny_search_end_to_end(stories, tmp_path):
    reason = emulate_rp2040.missing_tools()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "search"
    result = CliRunner().invoke(main, [
        "search", "--target", "rp2040", "--data", str(stories), "--trials", 4, "--steps", 8,
        "--batch-size", 4, "--seq-len", 32, "--val-bytes", 3000, "--params", "1K-20K",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Pareto front" in result.stdout and "tinylm train" in result.stdout
    front = json.loads((out / "front.json").read_text())
    assert front and all(r["tok_s_from"] == "emulated" for r in front)
    rows = json.loads((out / "trials.json").read_text())
    assert sum(r["state"] in ("complete", "pruned") for r in rows) >= 4
    assert {r["trial"] for r in rows if r["state"] == "reference"} == {
        "seed fastest", "seed balanced", "tiny8k"}
    assert (out / "front.png").stat().st_size > 0 and (out / "trials.csv").exists()
    templates = json.loads((out / "templates.json").read_text())
    assert set(templates) == {"fastest", "balanced", "best-that-fits"}
    assert templates["best-that-fits"]["commands"]["train"][:2] == ["tinylm", "train"]
    for template in templates.values():     # trained at the learning rate its trial drew
        assert template["lr"] in LEARNING_RATES
        assert f"--lr={template['lr']:g}" in template["commands"]["train"]
    assert all(r["lr"] == DEFAULT_LR for r in rows if r["state"] == "reference")
    assert all(load_checkpoint(Path(r["bin"]).parent).train_args["lr"] == r["lr"]
               for r in rows if r["state"] == "complete")
    # a template's commands run as they are written (here with 2 steps, in tmp_path)
    again, commands = tmp_path / "again", templates["fastest"]["commands"]
    train = [a for a in commands["train"][1:] if not a.startswith(("--steps=", "--out="))]
    assert CliRunner().invoke(main, [*train, "--steps=2", f"--out={again}"]).exit_code == 0
    quantize = [{"runs/fastest": str(again), "fastest.bin": str(tmp_path / "f.bin")}.get(a, a)
                for a in commands["quantize"][1:]]
    assert CliRunner().invoke(main, quantize).exit_code == 0 and (tmp_path / "f.bin").exists()
    shown = CliRunner().invoke(main, ["search", "show", str(out)])
    assert shown.exit_code == 0 and "Pareto front" in shown.stdout
