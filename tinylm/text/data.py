"""Training data: text -> documents -> one flat file of token ids -> random (B, T+1) windows.

Documents. A text is cut into documents by one of these rules (`split`):
    "endoftext"  at lines that hold only <|endoftext|> (the TinyStories convention)
    "blank"      at blank lines (one or more empty or whitespace-only lines)
    "none"       the whole text is one document
    "auto"       "endoftext" if the text has such a line, else "blank"
Whitespace around each document is dropped, and so are empty documents.

Token files. Every document is encoded as <bos> + its text, and all documents are concatenated
(no <eos>: the next <bos> marks where a document ends, as in llama2.c; evaluate.py encodes
documents the same way). The ids are stored flat, in the machine's byte order (little-endian on
x86 and ARM), with no header: the file's suffix is the NumPy dtype name, "uint16" for
vocabularies of up to 65536 tokens, else "uint32". So `np.fromfile("train.uint16", "uint16")`
reads one, and a memmap pages it in on demand.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

SPLITS = ("auto", "endoftext", "blank", "none")
# A teacher's targets for the training tokens, one row per token (SoftBatchSampler)
SOFT_IDS, SOFT_LOGPROBS = "train.soft_ids.npy", "train.soft_logprobs.npy"
_ENDOFTEXT_LINE = re.compile(r"^[ \t]*<\|endoftext\|>[ \t]*\r?$", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n[ \t\r]*\n")


def split_documents(text: str, split: str = "auto") -> list[str]:
    """The documents of `text` under rule `split` (module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split rule {split!r}; choose one of {SPLITS}")
    if split == "auto":
        split = "endoftext" if _ENDOFTEXT_LINE.search(text) else "blank"
    if split == "endoftext":
        parts = _ENDOFTEXT_LINE.split(text)
    elif split == "blank":
        parts = _BLANK_LINES.split(text)
    else:
        parts = [text]
    return [doc for doc in (part.strip() for part in parts) if doc]


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's text; text in another encoding is refused with the file's name and
    the offset of its first byte that is not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text: byte {e.start:,} is {data[e.start]:#04x} "
                         "(convert it first, e.g. iconv -f latin1 -t utf-8)") from None


def read_documents(paths, split: str = "auto") -> list[str]:
    """The documents of all text files in `paths` (UTF-8), in order."""
    documents = []
    for path in paths:
        documents += split_documents(read_text(path), split)
    if not documents:
        raise ValueError(f"no text in {', '.join(map(str, paths)) or 'no files'}")
    return documents


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2 ** 16 else np.uint32)


def encode_documents(documents, tokenizer) -> np.ndarray:
    """<bos> + text of each document, concatenated, as the smallest dtype that holds the ids
    (no documents: no tokens)."""
    dtype = token_dtype(tokenizer.vocab_size)
    return np.concatenate([np.zeros(0, dtype), *(np.array(tokenizer.encode(doc, bos=True), dtype)
                                                 for doc in documents)])


def token_documents(tokens: np.ndarray, bos_id: int) -> list[np.ndarray]:
    """A token file cut into its documents, each from its <bos> (encode_documents undone)."""
    return np.split(tokens, np.flatnonzero(tokens == bos_id)[1:])


def split_tail(tokens: np.ndarray, fraction: float, bos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val): val is about the last `fraction` of the tokens, starting at a document's
    <bos> when there is one after the cut point, so no document is split between the two."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be between 0 and 1, got {fraction}")
    cut = int(len(tokens) * (1 - fraction))
    later_starts = np.flatnonzero(tokens[cut:] == bos_id)
    if len(later_starts):
        cut += int(later_starts[0])
    return tokens[:cut], tokens[cut:]


def save_tokens(tokens: np.ndarray, path_without_suffix: str | Path) -> Path:
    """Write `tokens` to `path_without_suffix`.<dtype> (e.g. train.uint16); returns the path."""
    path = Path(f"{path_without_suffix}.{tokens.dtype.name}")
    tokens.tofile(path)
    return path


def load_tokens(path: str | Path) -> np.ndarray:
    """A read-only memmap of a token file; its dtype comes from the suffix."""
    path = Path(path)
    if path.suffix not in (".uint16", ".uint32"):
        raise ValueError(f"{path}: a token file's name must end in .uint16 or .uint32")
    if not path.exists():
        raise FileNotFoundError(f"no token file {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty: no tokens to train or evaluate on")
    return np.memmap(path, dtype=path.suffix[1:], mode="r")


class BatchSampler:
    """Random windows of seq_len + 1 consecutive tokens: inputs are the first seq_len, targets
    the last seq_len. The same seed gives the same batches; `state()` / `set_state()` save and
    restore the position in that sequence of batches, for resuming."""

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int):
        if len(tokens) < seq_len + 1:
            raise ValueError(f"only {len(tokens)} tokens of training data, but one training "
                             f"window needs seq_len + 1 = {seq_len + 1}: use more text or a "
                             f"smaller seq_len")
        self.tokens, self.batch_size, self.seq_len = tokens, batch_size, seq_len
        self.rng = np.random.default_rng(seed)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets), both (batch_size, seq_len) int64."""
        windows = self._windows(self._starts())
        return windows[:, :-1], windows[:, 1:]

    def _starts(self) -> np.ndarray:
        return self.rng.integers(0, len(self.tokens) - self.seq_len, size=self.batch_size)

    def _windows(self, starts) -> np.ndarray:
        return self.tokens[starts[:, None] + np.arange(self.seq_len + 1)].astype(np.int64)

    def state(self) -> dict:
        """The generator's state: a dict of ints and strings, JSON-serializable."""
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


class SoftBatchSampler(BatchSampler):
    """Like BatchSampler (the same windows for the same seed), plus a teacher's targets for
    every input position: soft_ids[t], soft_logprobs[t] is the distribution of the token after
    token t (distill.py writes them, one row per token of the token file)."""

    def __init__(self, tokens, soft_ids, soft_logprobs, batch_size, seq_len, seed):
        if len(soft_ids) != len(tokens) or len(soft_logprobs) != len(tokens):
            raise ValueError(f"{len(tokens)} tokens but {len(soft_ids)} rows of teacher targets")
        super().__init__(tokens, batch_size, seq_len, seed)
        self.soft_ids, self.soft_logprobs = soft_ids, soft_logprobs

    def next_batch(self):
        """(inputs, targets, soft ids, soft log-probs), the last two (batch_size, seq_len, k)."""
        starts = self._starts()
        windows = self._windows(starts)
        rows = starts[:, None] + np.arange(self.seq_len)
        return (windows[:, :-1], windows[:, 1:], self.soft_ids[rows].astype(np.int64),
                np.asarray(self.soft_logprobs[rows]))
