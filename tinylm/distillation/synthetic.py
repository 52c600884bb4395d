"""Teacher-written chat data: from a topic or a few seed prompts, the teacher writes new prompts,
near-duplicates are dropped, the teacher answers them, and the pairs are saved as a `datasets`
dataset that `tinylm distill --dataset DIR` reads.

    tinylm synthesize --teacher ID_OR_PATH --topic TEXT (or --seeds FILE) --count N --out DIR

    1. seeds    the prompts of --seeds FILE (one a line), or prompts the teacher writes about
                --topic (--seed-count of them)
    2. rounds   every prompt kept in the round before becomes two requests to the teacher:
                the same kind of prompt about another subject (new subjects: more kinds of
                things asked about) and a harder, more detailed version of it (more complex
                ones); when those are fewer than the prompts still wanted, earlier prompts
                too, the latest first; rounds go on until --count prompts are kept
    3. answers  the teacher answers every prompt through its chat template
    4. dataset  DIR is a `datasets` dataset (save_to_disk) with columns prompt, reply, how
                ("seed", "topic", "new subject", "harder") and round: load_from_disk(DIR)
                reads it, push_to_hub publishes it, `tinylm distill --dataset DIR` uses it

A prompt the teacher writes is dropped when it is empty or a near-duplicate of one already
kept: the Jaccard similarity of their sets of words, estimated by MinHash (datasketch, whose
LSH index finds the candidates), at least --similarity.

The work goes in shards of --shard-size requests, each written at once to DIR/work, each
sampled with a seed of its own: a killed run loses at most the shards under way, and the
rerun writes what an uninterrupted run would have. --shard K/N gives every N-th shard of each
round and of the answers to one of N processes sharing DIR (N GPUs); a process that has done
its part of a round waits for the others' shards, as the next round is made from them, and
every process keeps the same prompts, since which ones are kept depends on the shards alone.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write, write_json
from ..optional import TEACHER_EXTRA, require
from ..text.data import read_text
from ..training.progress import ProgressBar, duration, plural
from .stages import DEFAULT_TEACHER, refuse_changes, teacher_package
from .targets import parse_shard

TOPIC_REQUEST = ("Write one request that a user could ask an assistant about {topic}. Reply "
                 "with the request only, on one line.")
REQUESTS = {   # how a kept prompt becomes a new one
    "new subject": "Here is a request a user asked an assistant:\n{prompt}\nWrite a new request "
                   "of the same kind about a different subject.{about} Reply with the new "
                   "request only, on one line.",
    "harder": "Here is a request a user asked an assistant:\n{prompt}\nWrite a harder, more "
              "detailed version of it.{about} Reply with the new request only, on one line.",
}
OVERSAMPLE = 1.5        # requests per prompt still wanted, for those dropped as duplicates
NUM_PERM = 128          # MinHash permutations: the similarity is estimated to about +-0.05
MOST_SIMILAR = 0.95     # the highest threshold whose LSH index 128 permutations can band
POLL_SECONDS = 5.0      # how often a process looks for the shards other processes make
MAY_CHANGE = ("shard", "device", "dtype", "batch_size", "out")


@dataclass
class SynthesisArgs:
    out: str
    teacher: str = DEFAULT_TEACHER
    topic: str | None = None        # what the prompts are about; the teacher writes the seeds
    seeds: str | None = None        # or a file of seed prompts, one a line
    count: int = 1000               # prompts in the dataset
    seed_count: int = 16            # seed prompts the teacher writes about the topic
    similarity: float = 0.8         # a new prompt this similar to a kept one is dropped
    prompt_tokens: int = 96         # longest prompt the teacher writes
    max_new_tokens: int = 256       # longest reply
    temperature: float = 1.0
    top_p: float = 0.95
    batch_size: int = 8             # texts the teacher writes at once
    shard_size: int = 64            # requests per shard file
    shard: str = "1/1"              # K/N: this process's share of the shards
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0

    def __post_init__(self):
        self.out = str(self.out)
        if (self.topic is None) == (self.seeds is None):
            raise ValueError("give a --topic for the teacher to write seed prompts about, or "
                             "--seeds FILE with a few prompts")
        if not 0 < self.similarity <= MOST_SIMILAR:
            raise ValueError(f"--similarity must be above 0 and at most {MOST_SIMILAR}")
        parse_shard(self.shard)


def run(args: SynthesisArgs, teacher=None, log=print) -> dict:
    """Every step not done yet. `teacher`: anything with Teacher.answer (teacher/load.py),
    loaded from args.teacher when first needed if None. Returns {"prompts", "rounds",
    "dropped", "dataset"}."""
    out, work = Path(args.out), Path(args.out) / "work"
    _check_settings(args, work)
    loaded = [teacher]

    def the_teacher():
        if loaded[0] is None:
            log(f"loading teacher {args.teacher}")
            loaded[0] = teacher_package().load.load_teacher(args.teacher, args.device,
                                                             args.dtype)
        return loaded[0]

    kept, dropped, rounds = _prompts(args, work, the_teacher, log)
    replies = _written(args, work / "answers", "answers", [p["prompt"] for p in kept],
                       args.max_new_tokens, the_teacher, log)
    _save_dataset(out, kept, replies)
    log(f"{plural(len(kept), 'prompt')} in {plural(rounds, 'round')} ({dropped:,} dropped as "
        f"empty or near-duplicates), answered: the dataset is {out}")
    return {"prompts": len(kept), "rounds": rounds, "dropped": dropped, "dataset": str(out)}


def _check_settings(args, work: Path) -> None:
    """Refuse settings other than those the work in `work` was begun with."""
    path, now = work / "settings.json", dataclasses.asdict(args)
    if path.exists() and any(work.glob("*/shard-*.jsonl")):
        refuse_changes(work, json.loads(path.read_text()), now,
                       [k for k in now if k not in MAY_CHANGE])
    work.mkdir(parents=True, exist_ok=True)
    write_json(path, now)


# ---- prompts ---------------------------------------------------------------------------------

def _prompts(args, work: Path, teacher, log) -> tuple[list[dict], int, int]:
    """The prompts kept, round after round, until there are args.count; how many were
    dropped, and how many rounds it took."""
    index = NearDuplicates(args.similarity)
    kept, dropped, newest, number = [], 0, [], 0
    about = f" It must still be about {args.topic}." if args.topic else ""
    while len(kept) < args.count:
        if number == 0 and args.seeds:
            written = [(line.strip(), "seed") for line in read_text(args.seeds).splitlines()
                       if line.strip()]
        else:
            if number == 0:
                requests = [(TOPIC_REQUEST.format(topic=args.topic), "topic")] * args.seed_count
            else:
                requests = [(REQUESTS[how].format(prompt=p["prompt"], about=about), how)
                            for p in newest + kept[-len(newest) - 1::-1] for how in REQUESTS]
                requests = requests[:math.ceil((args.count - len(kept)) * OVERSAMPLE)]
            texts = _written(args, work / f"round-{number:02d}", f"prompts, round {number}",
                             [request for request, _ in requests], args.prompt_tokens,
                             teacher, log)
            written = [(clean_prompt(text), how) for text, (_, how) in zip(texts, requests)]
        newest = [{"prompt": prompt, "how": how, "round": number}
                  for prompt, how in written if index.add(prompt)]
        dropped += len(written) - len(newest)
        if not newest:
            raise ValueError(f"round {number} kept no prompt: every one was empty or a "
                             f"near-duplicate of one kept before (--similarity "
                             f"{args.similarity}); give more or other seeds, or a topic")
        kept += newest
        number += 1
    return kept[:args.count], dropped, number


def clean_prompt(text: str) -> str:
    """The request in what the teacher wrote: the first line that is not a lead-in ending in a
    colon, without a label ("Request:"), markdown emphasis or quotes around it."""
    for line in text.splitlines():
        line = re.sub(r"^(new |harder )?(request|prompt)\s*:\s*", "",
                      line.strip().strip("*_\"'` "), flags=re.IGNORECASE).strip("*_\"'` ")
        if line and not line.endswith(":"):
            return line
    return ""


class NearDuplicates:
    """The prompts kept so far, to tell whether a new one is a near-duplicate of one of them."""

    def __init__(self, threshold: float):
        self.datasketch = require("datasketch", "datasketch", "dropping near-duplicate prompts",
                                  TEACHER_EXTRA)
        self.threshold = threshold
        self.lsh = self.datasketch.MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self.hashes = []

    def add(self, text: str) -> bool:
        """Keep `text` unless it is empty or a near-duplicate; whether it was kept."""
        words = set(re.findall(r"\w+", text.lower()))
        if not words:
            return False
        minhash = self.datasketch.MinHash(num_perm=NUM_PERM)
        minhash.update_batch([word.encode() for word in sorted(words)])
        if any(self.hashes[int(key)].jaccard(minhash) >= self.threshold
               for key in self.lsh.query(minhash)):
            return False
        self.lsh.insert(str(len(self.hashes)), minhash)
        self.hashes.append(minhash)
        return True


# ---- the teacher's writing, in shards --------------------------------------------------------

def _written(args, directory: Path, label: str, requests: list[str], max_new_tokens: int,
             teacher, log) -> list[str]:
    """The teacher's reply to every request: this process's missing shards first, then,
    once the other processes have written theirs, all of them in order."""
    size = args.shard_size
    n_shards = math.ceil(len(requests) / size)
    k, n = parse_shard(args.shard)
    directory.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(n_shards) if i % n == k - 1 and not _shard(directory, i).exists()]
    bar, started = ProgressBar(len(todo)), time.perf_counter()
    for done, i in enumerate(todo):
        chunk = requests[i * size:(i + 1) * size]
        seed = zlib.crc32(f"{args.seed}/{label}/{i}".encode())   # the same on every rerun
        replies = teacher().answer(chunk, max_new_tokens, args.temperature, args.top_p,
                                   args.batch_size, seed)
        atomic_write(_shard(directory, i), lambda f: f.write("".join(
            json.dumps({"request": r, "reply": t}) + "\n" for r, t in zip(chunk, replies))
            .encode()))
        left = (time.perf_counter() - started) / (done + 1) * (len(todo) - done - 1)
        bar.show(f"{label}: shard {done + 1}/{len(todo)} | ETA {duration(left)}",
                 force=done + 1 == len(todo))
    waiting = [i for i in range(n_shards) if not _shard(directory, i).exists()]
    if waiting:
        log(f"{label}: waiting for {plural(len(waiting), 'shard')} that other processes "
            f"write (--shard {args.shard})")
    while waiting:
        time.sleep(POLL_SECONDS)
        waiting = [i for i in waiting if not _shard(directory, i).exists()]
    replies = []
    for i in range(n_shards):
        records = [json.loads(line) for line in _shard(directory, i).read_text().splitlines()]
        if [r["request"] for r in records] != requests[i * size:(i + 1) * size]:
            raise ValueError(f"{_shard(directory, i)} was written for other requests: remove "
                             f"{directory} to write it again")
        replies += [r["reply"] for r in records]
    return replies


def _shard(directory: Path, index: int) -> Path:
    return directory / f"shard-{index:05d}.jsonl"


def _save_dataset(out: Path, kept: list[dict], replies: list[str]) -> None:
    """The pairs as a `datasets` dataset in `out`: saved beside it, then moved in, file by
    file, its state.json (which makes it a dataset) last."""
    datasets = require("datasets", "datasets", "saving the dataset", TEACHER_EXTRA)
    columns = {"prompt": [p["prompt"] for p in kept], "reply": replies,
               "how": [p["how"] for p in kept], "round": [p["round"] for p in kept]}
    staging = out / "work" / f".dataset-{os.getpid()}"
    datasets.disable_progress_bars()     # a second's work: the summary line says it is done
    datasets.Dataset.from_dict(columns).save_to_disk(str(staging))
    for path in sorted(staging.iterdir(), key=lambda p: p.name == "state.json"):
        os.replace(path, out / path.name)
    shutil.rmtree(staging)
