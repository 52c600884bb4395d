"""Teacher targets on disk: what a teacher predicted at every position of a corpus.

A directory holds

    manifest.json      the plan: teacher, k, the corpus sources, how many records and shards.
                       Every process that works on the directory writes the same plan, or
                       refuses to start (a different plan would mix incompatible targets).
    vocab.json         the teacher's vocabulary: each token's bytes (hex), null for special
                       tokens; which ids end a text; whether the tokenizer adds a dummy space
    shard-00000.npz    one file per shard: the pieces made from records
                       [i * shard_size, (i + 1) * shard_size) of the plan, in order

A shard file exists only when complete: it is written to a temporary name and renamed, and a
rename is atomic. So a killed run leaves every shard either done or absent, and running again
does exactly the absent ones. Each shard also records its index, its records and a digest of
the manifest it was made for, and zip keeps a CRC-32 of every array: a shard that is
damaged, truncated, copied over another or made for another plan is named and set aside
(renamed *.damaged) to be made again, never read as if it were right. Shards are
independent, so processes can split them (`--shard K/N` takes every N-th, starting at the
K-th) and the manifest then merges them: reading lists shards 0 .. n_shards - 1.

A record (a text, a prompt, or a free generation) becomes one or more pieces (a long text is cut
to fit the teacher's context). A piece of n teacher tokens stores n + 1 predictions: for each
token, the distribution it was predicted from, and at the end the prediction of what follows
the last token. Each prediction is the top k token ids (int32) and their log-probs (float16).
The piece's text is the UTF-8 bytes of its tokens, after `prefix` bytes of dummy space that a
SentencePiece-style tokenizer puts before the first token. Arrays in a shard (P pieces):

    kind (P,) int8         0: text the teacher read, 1: a chat reply it wrote, 2: free text
    record (P,) int64      the plan's record index
    prefix (P,) int8       dummy-prefix bytes before the text
    text, text_end         all texts' bytes (uint8), and where each ends (int64, cumulative)
    prompt, prompt_end     chat prompts, likewise (empty for other kinds)
    tokens, tokens_end     teacher token ids (int32), likewise
    topk_ids, topk_logprobs   (sum of (n + 1), k): the predictions, piece after piece
    stamp (4,) int64       the shard's index, its first and end record, and the manifest's
                           digest (the first 8 bytes of its SHA-256, as a signed integer)
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, write_json
from ..training.checkpoint import NPZ_ERRORS

FORMAT = "tinylm-teacher-targets/1"
KINDS = ("text", "chat", "free")


@dataclass
class Piece:
    kind: str
    record: int
    prefix: int
    text: bytes
    prompt: str | None
    tokens: np.ndarray           # (n,) teacher token ids
    topk_ids: np.ndarray         # (n + 1, k)
    topk_logprobs: np.ndarray    # (n + 1, k) float16


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" -> (K, N): this process does shards K-1, K-1+N, K-1+2N, ... (K counts from 1)."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes K/N, like 1/4, not {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard {text}: need 1 <= K <= N")
    return k, n


def shard_path(directory: str | Path, index: int) -> Path:
    return Path(directory) / f"shard-{index:05d}.npz"


def ensure_manifest(directory: str | Path, manifest: dict) -> None:
    """Write the plan, or check that the one already there is the same (a plan that no shard
    was made by yet is simply replaced)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "manifest.json"
    manifest = dict(manifest, format=FORMAT)
    if path.exists() and done_shards(directory):
        existing = read_manifest(directory)
        changed = sorted(key for key in set(manifest) | set(existing)
                         if manifest.get(key) != existing.get(key))
        if changed:
            raise ValueError(f"{directory} holds teacher targets made with other settings "
                             f"({', '.join(changed)}): use another directory, or the same "
                             f"settings to continue")
        return
    write_json(path, manifest)


def read_manifest(directory: str | Path) -> dict:
    path = Path(directory) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no teacher targets in {directory} (no manifest.json)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def done_shards(directory: str | Path) -> set[int]:
    return {int(p.stem.split("-")[1]) for p in Path(directory).glob("shard-*.npz")}


def missing_shards(directory: str | Path) -> list[int]:
    done = done_shards(directory)
    return [i for i in range(read_manifest(directory)["n_shards"]) if i not in done]


def shard_stamp(directory: str | Path, index: int) -> np.ndarray:
    """What a shard made now for this plan records about itself (see the module's doc)."""
    manifest_bytes = (Path(directory) / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    size = manifest["settings"]["shard_size"]
    first, end = index * size, min((index + 1) * size, manifest["n_records"])
    digest = int.from_bytes(hashlib.sha256(manifest_bytes).digest()[:8], "little", signed=True)
    return np.array([index, first, end, digest], np.int64)


def shard_damage(directory: str | Path, index: int) -> str | None:
    """Why shard `index` of this plan cannot be used, or None when it can."""
    if index >= read_manifest(directory)["n_shards"]:
        return "the plan has no shard of that number"
    try:
        with np.load(shard_path(directory, index)) as arrays:   # zip checks every CRC-32
            stamp, record = arrays["stamp"], arrays["record"]
            for name in arrays.files:
                arrays[name]
    except NPZ_ERRORS as e:
        return f"it cannot be read ({type(e).__name__}: {e})"
    expected = shard_stamp(directory, index)
    if stamp[0] != index:
        return f"it holds shard {stamp[0]}, not shard {index}"
    if stamp[3] != expected[3]:
        return "it was made for another manifest.json"
    if record.size and (record.min() < expected[1] or record.max() >= expected[2]):
        return f"its records are not those of shard {index}"
    return None


def set_aside_damaged(directory: str | Path) -> list[str]:
    """Rename every unusable shard to *.damaged, so that it is made again; one message each."""
    messages = []
    for index in sorted(done_shards(directory)):
        reason = shard_damage(directory, index)
        if reason:
            path = shard_path(directory, index)
            os.replace(path, path.with_name(path.name + ".damaged"))
            messages.append(f"{path}: {reason}; set aside as {path.name}.damaged, to be made "
                            "again")
    return messages


def write_shard(directory: str | Path, index: int, pieces: list[Piece]) -> Path:
    def joined(chunks, dtype):
        ends = np.cumsum([len(c) for c in chunks], dtype=np.int64)
        flat = np.concatenate([np.asarray(c, dtype) for c in chunks]) if chunks else \
            np.zeros(0, dtype)
        return flat, ends

    k = pieces[0].topk_ids.shape[1] if pieces else 0
    text, text_end = joined([np.frombuffer(p.text, np.uint8) for p in pieces], np.uint8)
    prompt, prompt_end = joined([np.frombuffer((p.prompt or "").encode(), np.uint8)
                                 for p in pieces], np.uint8)
    tokens, tokens_end = joined([p.tokens for p in pieces], np.int32)
    arrays = dict(
        kind=np.array([KINDS.index(p.kind) for p in pieces], np.int8),
        record=np.array([p.record for p in pieces], np.int64),
        prefix=np.array([p.prefix for p in pieces], np.int8),
        text=text, text_end=text_end, prompt=prompt, prompt_end=prompt_end,
        tokens=tokens, tokens_end=tokens_end,
        topk_ids=np.concatenate([p.topk_ids for p in pieces]).astype(np.int32) if pieces
        else np.zeros((0, k), np.int32),
        topk_logprobs=np.concatenate([p.topk_logprobs for p in pieces]).astype(np.float16)
        if pieces else np.zeros((0, k), np.float16),
        stamp=shard_stamp(directory, index))
    path = shard_path(directory, index)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def read_shard(path: str | Path) -> list[Piece]:
    with np.load(path) as a:
        a = {name: a[name] for name in a.files}
    pieces = []
    text_start = prompt_start = token_start = 0
    for i in range(len(a["kind"])):
        text_end, prompt_end, token_end = (int(a[key][i]) for key in
                                           ("text_end", "prompt_end", "tokens_end"))
        rows = slice(token_start + i, token_end + i + 1)   # n + 1 predictions per piece
        kind = KINDS[a["kind"][i]]
        pieces.append(Piece(
            kind=kind, record=int(a["record"][i]), prefix=int(a["prefix"][i]),
            text=a["text"][text_start:text_end].tobytes(),
            prompt=a["prompt"][prompt_start:prompt_end].tobytes().decode()
            if kind == "chat" else None,
            tokens=a["tokens"][token_start:token_end],
            topk_ids=a["topk_ids"][rows], topk_logprobs=a["topk_logprobs"][rows]))
        text_start, prompt_start, token_start = text_end, prompt_end, token_end
    return pieces


def read_pieces(directory: str | Path):
    """Every piece of a complete target directory, in plan order."""
    missing = missing_shards(directory)
    if missing:
        raise ValueError(f"{directory}: {len(missing)} shard(s) not done yet (e.g. "
                         f"{shard_path(directory, missing[0]).name}): finish making targets")
    for index in range(read_manifest(directory)["n_shards"]):
        reason = shard_damage(directory, index)
        if reason:
            raise ValueError(f"{shard_path(directory, index)}: {reason}; run the same command "
                             "again to make it anew")
        yield from read_shard(shard_path(directory, index))


@dataclass
class TeacherVocab:
    """A teacher's tokens as bytes, for projecting its predictions onto another vocabulary."""
    token_bytes: list[bytes | None]   # None: a special token (no text)
    end_ids: list[int]                # tokens that end a text (<eos>, <end_of_turn>, ...)
    dummy_prefix: bool                # the tokenizer puts a space before a text

    def save(self, path: str | Path) -> None:
        write_json(Path(path), {"tokens": [None if b is None else b.hex()
                                           for b in self.token_bytes],
                                "end_ids": self.end_ids, "dummy_prefix": self.dummy_prefix})

    @classmethod
    def load(cls, path: str | Path) -> TeacherVocab:
        d = json.loads(Path(path).read_text())
        return cls([None if h is None else bytes.fromhex(h) for h in d["tokens"]],
                   d["end_ids"], d["dummy_prefix"])
