"""The corpus the teacher works on, as a list of records fixed before any work starts.

Three kinds of record, mixed freely:
    text   a document the teacher reads (scores with one forward pass): from text files, cut
           into documents as tinylm/text/data.py does, or from a `datasets` source's "text"
           column (tinylm/text/chat_data.py says what a source can be)
    chat   a prompt, from a file (one per line), from the built-in prompt generator below or
           from a `datasets` source's "prompt" column, that the teacher answers through its
           chat template (sampling); or, when the source also has a "reply" column, a prompt
           and its reply, which the teacher reads in its chat template (one forward pass)
    free   a text the teacher writes from <bos> alone (sampling), for story-style teachers

The list depends only on the settings (files, counts, seed), so every run and every process
sees the same records in the same order, and record i always lands in the same shard.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from tinylm.text.chat_data import load_dataset_source
from tinylm.text.corpus import ANIMALS, CHARACTERS, PLACES, THINGS
from tinylm.text.data import read_documents, read_text


@dataclass(frozen=True)
class Record:
    kind: str                 # "text", "chat" or "free"
    text: str | None = None   # the document (text) or the prompt (chat)
    reply: str | None = None  # a chat prompt's reply, when the corpus has it


def read_dataset(source: str, limit: int | None = None) -> list[Record]:
    """The records of a `datasets` source: its "text" column as texts, else its "prompt"
    column (with its "reply" column, if there is one) as chat records."""
    dataset = load_dataset_source(source)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    columns = dataset.column_names
    if "text" in columns:
        return [Record("text", t) for t in (t.strip() for t in dataset["text"]) if t]
    if "prompt" not in columns:
        raise ValueError(f"{source} has neither a 'text' nor a 'prompt' column (it has "
                         f"{columns})")
    replies = dataset["reply"] if "reply" in columns else [None] * len(dataset)
    return [Record("chat", prompt.strip(), reply) for prompt, reply in
            zip(dataset["prompt"], replies) if prompt.strip()]


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
        records += read_dataset(dataset, dataset_limit)
    if prompts:
        lines = read_text(prompts).splitlines()
        records += [Record("chat", line.strip()) for line in lines if line.strip()]
    records += [Record("chat", p) for p in builtin_prompts(synthetic, seed)]
    records += [Record("free") for _ in range(free)]
    if not records:
        raise ValueError("no corpus: give text (--data, --dataset), prompts (--prompts, "
                         "--synthetic N) or free generations (--free N)")
    return records
