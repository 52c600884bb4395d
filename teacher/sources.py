"""The corpus the teacher works on, as a list of records fixed before any work starts.

Three kinds of record, mixed freely:
    text   a document the teacher reads (scores with one forward pass): from text files, cut
           into documents as tinylm/text/data.py does, or from a `datasets` source (a hub id or
           local data files; the "text" column)
    chat   a prompt, from a file (one per line) or from the built-in prompt generator below,
           that the teacher answers through its chat template (sampling)
    free   a text the teacher writes from <bos> alone (sampling), for story-style teachers

The list depends only on the settings (files, counts, seed), so every run and every process
sees the same records in the same order, and record i always lands in the same shard.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from tinylm.text.corpus import ANIMALS, CHARACTERS, PLACES, THINGS
from tinylm.text.data import read_documents, read_text


@dataclass(frozen=True)
class Record:
    kind: str                # "text", "chat" or "free"
    text: str | None = None  # the document (text) or the prompt (chat)


def read_dataset(source: str, limit: int | None = None) -> list[str]:
    """The "text" column of a `datasets` source: local data files (.txt, .json, .jsonl, .csv,
    .parquet) or a hub id, optionally with a split after a colon ("roneneldan/TinyStories:
    validation"; default train)."""
    from datasets import load_dataset
    name, _, split = source.partition(":")
    path = Path(name)
    if path.exists():
        builder = {".txt": "text", ".jsonl": "json"}.get(path.suffix, path.suffix.lstrip("."))
        dataset = load_dataset(builder, data_files=str(path), split=split or "train")
    else:
        dataset = load_dataset(name, split=split or "train")
    if "text" not in dataset.column_names:
        raise ValueError(f"{source} has no 'text' column (it has {dataset.column_names})")
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return [t for t in (t.strip() for t in dataset["text"]) if t]


PROMPT_TEMPLATES = [
    "Write a short story about a {animal} who finds a {thing}.",
    "Tell me a story about {name} at {place}.",
    "Write a story for a small child about {name} and a {animal}.",
    "Tell a short story in which {name} loses a {thing} at {place}.",
    "Write a happy story about a {animal} and a {thing}.",
    "Tell me a bedtime story about {name}, who wants to visit {place}.",
    "What does a {animal} like to do at {place}? Answer in a few sentences.",
    "Explain to a child why {name} should share a {thing} with a friend.",
]


def builtin_prompts(n: int, seed: int = 0) -> list[str]:
    """n prompts for short stories and explanations, drawn from templates."""
    rng = random.Random(seed)
    return [rng.choice(PROMPT_TEMPLATES).format(
        name=rng.choice(CHARACTERS)[0], animal=rng.choice(ANIMALS), place=rng.choice(PLACES),
        thing=rng.choice(THINGS)) for _ in range(n)]


def plan_records(data=(), split="auto", dataset=None, dataset_limit=None, prompts=None,
                 synthetic=0, free=0, seed=0) -> list[Record]:
    records = [Record("text", doc) for doc in (read_documents(data, split) if data else [])]
    if dataset:
        records += [Record("text", doc) for doc in read_dataset(dataset, dataset_limit)]
    if prompts:
        lines = read_text(prompts).splitlines()
        records += [Record("chat", line.strip()) for line in lines if line.strip()]
    records += [Record("chat", p) for p in builtin_prompts(synthetic, seed)]
    records += [Record("free") for _ in range(free)]
    if not records:
        raise ValueError("no corpus: give text (--data, --dataset), prompts (--prompts, "
                         "--synthetic N) or free generations (--free N)")
    return records
