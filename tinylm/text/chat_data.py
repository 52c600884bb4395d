"""Chat records for training and scoring: prompt/reply pairs, from JSON lines or a `datasets`
source.

A source is one of
    FILE.jsonl    one JSON object a line, with "prompt" and "reply" (read without `datasets`)
    a folder      a dataset saved with save_to_disk (`tinylm synthesize` writes one), or a
                  folder of data files
    data files    .json, .jsonl, .csv, .parquet or .txt, read by `datasets`
    a hub id      "user/name", or "user/name:split" (default: train); needs the network once

`datasets` (in the teacher extra) is imported only when a source needs it.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..optional import TEACHER_EXTRA, require
from .data import read_text


def load_dataset_source(source: str):
    """A `datasets` Dataset: a saved folder, data files, or a hub id (":split" after a hub id
    or a file picks the split)."""
    datasets = require("datasets", "datasets", f"reading {source}", TEACHER_EXTRA)
    name, _, split = source.partition(":")
    path = Path(name)
    if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
        dataset = datasets.load_from_disk(str(path))
        return dataset[split or "train"] if isinstance(dataset, datasets.DatasetDict) else dataset
    if path.is_file():
        builder = {".txt": "text", ".jsonl": "json"}.get(path.suffix, path.suffix.lstrip("."))
        return datasets.load_dataset(builder, data_files=str(path), split=split or "train")
    return datasets.load_dataset(name, split=split or "train")


def read_chat_pairs(source: str, limit: int | None = None) -> list[tuple[str, str]]:
    """(prompt, reply) of every record of `source` (module docstring), at most `limit`."""
    path = Path(source)
    if path.suffix == ".jsonl" and path.is_file():
        rows = []
        for number, line in enumerate(read_text(path).splitlines(), 1):
            try:
                row = json.loads(line) if line.strip() else None
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {number}: not JSON ({e.msg})") from None
            if row is not None and not (isinstance(row, dict) and isinstance(row.get("prompt"), str)
                                        and isinstance(row.get("reply"), str)):
                raise ValueError(f"{path}, line {number}: not a record with a \"prompt\" and a "
                                 f"\"reply\" string")
            if row is not None:
                rows.append((row["prompt"], row["reply"]))
    else:
        dataset = load_dataset_source(source)
        if not {"prompt", "reply"} <= set(dataset.column_names):
            raise ValueError(f"{source} has no 'prompt' and 'reply' columns (it has "
                             f"{dataset.column_names})")
        rows = list(zip(dataset["prompt"], dataset["reply"]))
    if not rows:
        raise ValueError(f"{source} holds no prompt/reply pairs")
    return rows[:limit]
