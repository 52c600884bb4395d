"""The Optuna study behind a search: where it is stored, how trials are sampled, pruned and
run, and how a killed worker's trial comes back.

Storage. By default an SQLite file, OUT/study.db; --storage takes any URL of Optuna's
relational storage (postgresql://, mysql://, sqlite:///) or redis:// (Optuna's journal on
Redis), which processes on other machines can reach: each process that runs `tinylm search`
with the same --storage and --study works on the same study, trial by trial. A relational
storage carries heartbeats: a trial whose process died (killed, or its machine lost) is
failed after GRACE seconds of silence and run again from the start by the next process that
looks (Optuna's RetryHeartbeatStaleTrialCallback); a trial whose process on this machine is
gone is queued again as soon as a worker starts here, and one stopped by Ctrl-C at once. So
a search that was killed resumes by running the same command.

Sampling. Two objectives: bits per byte (down) and tok/s (up). TPE (default) or NSGA-II, both
with Optuna's constraint handling: a shape refused before training (candidate.py) ends as a
pruned trial with a constraint violated by how far it is out, which the sampler learns to
avoid.

Pruning. Optuna prunes single-objective studies only, but here a trial's speed is known
before it trains (the cost model), so a trial is hopeless when a trial at least as fast was
better at the same validation step: from PRUNE_FROM of the steps on, a trial more than
PRUNE_MARGIN bits per byte behind a finished trial that is at least as fast stops there.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
import warnings
from pathlib import Path

from ..atomic import running
from ..optional import SEARCH_EXTRA, require
from . import costs
from .candidate import Candidate, Check
from .corpus import characters
from .measure import TARGETS
from .settings import Settings, differences, with_lrs
from .space import problem, suggest, suggest_lr, vocab_choices

HEARTBEAT, GRACE = 20, 120           # seconds
PRUNE_FROM, PRUNE_MARGIN = 0.5, 0.03
N_STARTUP = 10                       # trials sampled at random before TPE models them
DIRECTIONS = ["minimize", "maximize"]
WORKER = f"{socket.gethostname()}:{os.getpid()}"     # which process runs a trial


def optuna():
    return require("optuna", "optuna", "tinylm search", SEARCH_EXTRA)


def storage(settings: Settings, heartbeat: tuple[int, int] = (HEARTBEAT, GRACE)):
    o = optuna()
    url = settings.storage_url
    if url.startswith(("redis://", "rediss://")):
        return o.storages.JournalStorage(o.storages.journal.JournalRedisBackend(url))
    interval, grace = heartbeat
    with warnings.catch_warnings():     # heartbeats are "experimental" in Optuna 5
        warnings.simplefilter("ignore", o.exceptions.ExperimentalWarning)
        return o.storages.RDBStorage(
            url, heartbeat_interval=interval, grace_period=grace,
            heartbeat_stale_trial_callback=o.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=3))


def sampler(settings: Settings, worker: int):
    """Each worker seeds its sampler differently, so that workers do not draw the same
    shapes while the study is still sampling at random."""
    o = optuna()
    seed = settings.seed * 1000 + worker
    if settings.sampler == "nsga2":
        return o.samplers.NSGAIISampler(seed=seed)
    return o.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=N_STARTUP)


def open_study(settings: Settings, worker: int = 0, heartbeat=(HEARTBEAT, GRACE)):
    """The study (made if new). Refuses to join one made with other FIXED settings."""
    o = optuna()
    o.logging.set_verbosity(logging.WARNING)
    study = o.create_study(storage=storage(settings, heartbeat), study_name=settings.study,
                           directions=DIRECTIONS, sampler=sampler(settings, worker),
                           load_if_exists=True)
    mine, theirs = settings.fixed(), study.user_attrs.get("settings")
    theirs = theirs and with_lrs(theirs)
    if theirs is None:
        study.set_user_attr("settings", mine)
    elif differences(mine, theirs):
        raise ValueError(f"the study {settings.study} was made with other settings ("
                         + ", ".join(differences(mine, theirs)) + "): use the same ones, or "
                         "another --study (or --out)")
    return study


def load(settings: Settings, heartbeat=(HEARTBEAT, GRACE)):
    """The study as it is, to read (KeyError if the storage has no such study)."""
    optuna().logging.set_verbosity(logging.WARNING)
    return optuna().load_study(study_name=settings.study, storage=storage(settings, heartbeat))


def trained(study) -> int:
    """Trials that train or trained: those the --trials budget counts (refused shapes and
    failures do not)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("training")
               and t.state.name in ("RUNNING", "COMPLETE", "PRUNED"))


class Objective:
    """One trial: a shape and its learning rate sampled, checked, trained with pruning,
    scored."""

    def __init__(self, study, settings: Settings):
        self.study, self.settings = study, settings
        self.target = TARGETS[settings.target]
        self.cost_model = costs.load(settings.target)
        self.space = settings.space(vocab_choices(characters(settings)))

    def __call__(self, trial):
        o = optuna()
        trial.set_user_attr("worker", WORKER)
        shape, lr = suggest(trial, self.space), suggest_lr(trial, self.space)
        trial.set_user_attr("shape", dataclasses.asdict(shape))
        trial.set_user_attr("lr", lr)
        directory = Path(self.settings.out) / "trials" / f"{trial.number:05d}"
        candidate = Candidate(shape, self.settings, directory, self.target, self.cost_model,
                              lr=lr)
        earlier = self.trained_before(trial.number, trial.user_attrs["shape"], lr)
        if earlier is not None:        # samplers may draw a shape again: train it once
            trial.set_user_attr("refused", f"the same shape and learning rate as trial "
                                f"{earlier}, trained already")
            raise o.TrialPruned(trial.user_attrs["refused"])
        try:
            reason = problem(shape, self.space)
            check = Check(reason, 1.0) if reason else candidate.check()
            trial.set_user_attr("facts", check.facts)
            trial.set_user_attr("tok_s_at_most", check.predicted_tok_s)
            if check.problem:
                trial.set_user_attr("refused", check.problem)
                trial.set_constraint("fits", check.violation)
                raise o.TrialPruned(check.problem)
            trial.set_user_attr("training", True)
            curve = {}

            def on_validation(step, bpb):
                curve[str(step)] = bpb
                trial.set_user_attr("curve", curve)
                if self.hopeless(trial.number, check.predicted_tok_s, step, bpb):
                    trial.set_user_attr("pruned_at", step)
                    raise o.TrialPruned(f"behind a faster trial at step {step}")

            summary = candidate.train(on_validation)
            if summary["interrupted"]:
                raise KeyboardInterrupt
            scores = candidate.score()
        except KeyboardInterrupt:          # run again when the search resumes
            self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
        except (OSError, ValueError) as e:
            trial.set_user_attr("error", str(e))
            raise
        for name in ("bin", "candidates"):
            trial.set_user_attr(name, scores[name])
        trial.set_user_attr("float_bpb", summary["val_bpb"])
        trial.set_user_attr("predicted_tok_s", scores["tok_s"])
        if scores["tok_s"] < self.settings.min_tok_s:      # its sampler is slower than hoped
            trial.set_user_attr("refused", f"{scores['tok_s']:,.1f} tok/s by the cost model "
                                f"once trained, below --min-tok-s {self.settings.min_tok_s:g}")
            trial.set_constraint("fits", self.settings.min_tok_s / scores["tok_s"] - 1)
        return scores["bpb"], scores["tok_s"]

    def trained_before(self, number: int, shape: dict, lr: float) -> int | None:
        """The first other trial that trains or trained this shape at this learning rate
        (failed ones are not)."""
        states = [optuna().trial.TrialState.COMPLETE, optuna().trial.TrialState.PRUNED,
                  optuna().trial.TrialState.RUNNING]
        for other in self.study.get_trials(deepcopy=False, states=states):
            if other.number != number and other.user_attrs.get("training") \
                    and other.user_attrs.get("shape") == shape \
                    and other.user_attrs.get("lr") == lr:
                return other.number
        return None

    def hopeless(self, number: int, tok_s: float, step: int, bpb: float) -> bool:
        finished = self.study.get_trials(deepcopy=False,
                                         states=[optuna().trial.TrialState.COMPLETE])
        return hopeless(finished, number, tok_s, step, bpb, self.settings.steps)


def hopeless(finished, number: int, tok_s: float, step: int, bpb: float, steps: int) -> bool:
    """Whether a trial at this validation step is PRUNE_MARGIN bits per byte behind a finished
    trial at least as fast, at the same step (from PRUNE_FROM of the steps on; never at the
    last step, whose validation a finished trial will be scored after anyway)."""
    if step < PRUNE_FROM * steps or step >= steps:
        return False
    for other in finished:
        theirs = other.user_attrs.get("curve", {}).get(str(step))
        if other.number != number and other.values[1] >= tok_s and theirs is not None \
                and theirs < bpb - PRUNE_MARGIN:
            return True
    return False


def requeue_dead(study) -> None:
    """Trials left running by processes of this machine that are gone (killed): failed and
    queued again now, without waiting for their heartbeats to go stale."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=[optuna().trial.TrialState.RUNNING]):
        name, _, pid = trial.user_attrs.get("worker", "").rpartition(":")
        if name == host and pid.isdigit() and not running(int(pid)):
            study.tell(trial.number, state=optuna().trial.TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def work(settings: Settings, worker: int = 0, heartbeat=(HEARTBEAT, GRACE)) -> None:
    """Run trials until the study has settings.trials trained ones (each worker checks after
    each of its trials, so with several workers one or two more may finish)."""
    study = open_study(settings, worker, heartbeat)
    requeue_dead(study)

    def enough(study, trial):
        if trained(study) >= settings.trials:
            study.stop()
    if trained(study) < settings.trials:
        study.optimize(Objective(study, settings), callbacks=[enough],
                       catch=(OSError, ValueError))
