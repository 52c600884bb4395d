"""Tokenizer: text <-> token ids with byte-level BPE, for vocabularies of our own and foreign ones,
and character vocabularies for fewer than 260 tokens.

Encoding a text:
  1. UTF-8 bytes. Lone surrogates (possible in a Python str) are encoded with "surrogatepass",
     so every str round-trips.
  2. Pre-split into chunks (pretokenize.py, rule version `split_rule`).
  3. Each chunk starts as one token per UTF-8 character that is in `char_ids`, and one byte
     token per byte of all other characters (our own vocabularies have no `char_ids`).
     With `add_dummy_prefix` (llama2.c / SentencePiece; split rule 0, so the whole text is
     the chunk) a space comes first, as a character of its own.
  4. Merge: while some adjacent pair (left, right) has a merge, replace the pair of lowest rank,
     and of those the leftmost one, by the merge's new token.

Step 4 is the one rule both kinds of vocabulary share: ours has one merge per token with
unique ranks; llama2.c's may have several merges to the same token, sharing its rank.

A character vocabulary (train_chars) has no merges: a token per character of the corpus, and
one fallback token that every other byte maps to (several bytes may share a token in
`byte_ids`; its piece is the last of them, here 0xFF, which UTF-8 never uses).

Special tokens (<bos>, <eos>, chat roles) never come out of steps 1-4: the text "<bos>" is
encoded like any other. They are added only on request (encode(bos=True), encode_chat).
decode() skips them, and removes the dummy-prefix space at the start of each text between them.

A chat model records its turn as ids (ChatTurn), in its checkpoint and its .bin, so that every
engine wraps a question and ends the reply alike: <bos> <|user|> prompt <|assistant|> reply <eos>.
"""
from __future__ import annotations

import functools
import heapq
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from .bpe import count_chunks, learn_merges
from .pretokenize import split

SPECIALS = ("<bos>", "<eos>", "<|user|>", "<|assistant|>")  # added by train(), in this order
TRAINED_SPLIT_RULE = 1  # the pre-split rule version train() uses (pretokenize.py)
SMALLEST_BPE = 256 + len(SPECIALS)   # byte-level BPE has every byte and the specials
KINDS = ("auto", "bpe", "char")      # train_tokenizer: "auto" is char below SMALLEST_BPE
FORMAT = "tinylm-tokenizer/1"

# One UTF-8 character, cut the way llama2.c does: any byte, then up to 3 continuation bytes.
UTF8_CHAR = re.compile(rb"[\x00-\xff][\x80-\xbf]{0,3}")


@dataclass(frozen=True)
class ChatTurn:
    """A single-turn chat model's format, as token ids: <bos> user PROMPT assistant REPLY end."""
    user: int         # opens the user's turn
    assistant: int    # opens the reply
    end: int          # ends the reply

    def prompt_ids(self, tokenizer: Tokenizer, prompt: str) -> list[int]:
        """The question wrapped as the model was trained, ready for it to write the reply."""
        return [tokenizer.bos_id, self.user, *tokenizer.encode(prompt), self.assistant]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> ChatTurn | None:
        return None if d is None else cls(**d)


class Tokenizer:
    def __init__(self, merges: Iterable[tuple[int, int, int, int]], specials: dict[str, int],
                 byte_ids: Iterable[int] = range(256), char_ids: dict[bytes, int] | None = None,
                 add_dummy_prefix: bool = False, split_rule: int = TRAINED_SPLIT_RULE):
        """merges: (left id, right id, new id, rank); specials: name -> id;
        byte_ids[b]: the token of byte b; char_ids: whole UTF-8 character -> token."""
        self.merges = {(left, right): (rank, new) for left, right, new, rank in merges}
        self.specials = dict(specials)
        self.byte_ids = list(byte_ids)
        self.char_ids = dict(char_ids or {})
        self.add_dummy_prefix = add_dummy_prefix
        self.split_rule = split_rule
        split(b"", split_rule)  # fail now on an unknown rule version
        if add_dummy_prefix and split_rule != 0:
            raise ValueError("tokenizer: add_dummy_prefix needs split_rule 0 "
                             "(the whole text one chunk)")
        self.vocab = self._build_vocab()
        # Texts repeat the same words over and over: merging each chunk once is ~10x faster.
        self._encode_chunk = functools.lru_cache(maxsize=4096)(self._merge_chunk)

    def _build_vocab(self) -> list[bytes]:
        """id -> bytes of the token (special tokens: their name), checking ids are 0..n-1. A
        token that several bytes map to (a fallback) has the last of them as its piece."""
        tokens = {}
        for name, i in self.specials.items():
            tokens[i] = name.encode()
        for b, i in enumerate(self.byte_ids):
            tokens[i] = bytes([b])
        for char, i in self.char_ids.items():
            tokens[i] = char
        parts = {new: pair for pair, (_, new) in self.merges.items()}

        def token_bytes(i: int) -> bytes:  # parts are always shorter, so this ends
            if i not in tokens:
                left, right = parts[i]
                tokens[i] = token_bytes(left) + token_bytes(right)
            return tokens[i]

        for i in parts:
            token_bytes(i)
        n_ids = len(self.specials) + len(set(self.byte_ids)) + len(self.char_ids) + len(parts)
        if len(self.byte_ids) != 256 or sorted(tokens) != list(range(n_ids)):
            raise ValueError("tokenizer: token ids must be 0..n-1, each used once, "
                             "with a token for each of the 256 bytes")
        return [tokens[i] for i in range(n_ids)]

    # ---- training -------------------------------------------------------------------------

    @classmethod
    def train(cls, texts: str | Iterable[str], vocab_size: int) -> Tokenizer:
        """Learn a tokenizer of `vocab_size` tokens: 256 bytes, merges, then the SPECIALS."""
        smallest = SMALLEST_BPE
        if vocab_size < smallest:
            raise ValueError(f"vocab_size must be at least {smallest} (256 byte tokens + "
                             f"{len(SPECIALS)} special tokens) for byte-level BPE, got "
                             f"{vocab_size}: a smaller vocabulary is one of characters "
                             f"(--tokenizer char)")
        if isinstance(texts, str):
            texts = [texts]
        chunk_counts = count_chunks((text.encode("utf-8", "surrogatepass") for text in texts),
                                    TRAINED_SPLIT_RULE)
        pairs = learn_merges(chunk_counts, vocab_size - smallest)
        if len(pairs) < vocab_size - smallest:
            raise ValueError(f"vocab_size {vocab_size} is too large for this training text: it "
                             f"has only {len(pairs)} pairs to merge, so vocab_size can be at most "
                             f"{smallest + len(pairs)}")
        n_merged = 256 + len(pairs)
        merges = [(left, right, 256 + rank, rank) for rank, (left, right) in enumerate(pairs)]
        return cls(merges=merges,
                   specials={name: n_merged + k for k, name in enumerate(SPECIALS)})

    @classmethod
    def train_chars(cls, texts: str | Iterable[str], vocab_size: int) -> Tokenizer:
        """A character vocabulary of `vocab_size` tokens: the fallback (id 0), the
        vocab_size - 5 most frequent characters of the texts (ties: in byte order), in byte
        order, then the SPECIALS. Every byte of a character it lacks is the fallback."""
        counts = count_characters(texts)
        n_chars = vocab_size - 1 - len(SPECIALS)
        if n_chars < 1 or n_chars > len(counts):
            raise ValueError(f"a character vocabulary of this text has from {len(SPECIALS) + 2} "
                             f"to {len(counts) + 1 + len(SPECIALS)} tokens (its {len(counts)} "
                             f"characters, a fallback and {len(SPECIALS)} special tokens), "
                             f"not {vocab_size}")
        kept = sorted(sorted(counts, key=lambda char: (-counts[char], char))[:n_chars])
        ids = {char: 1 + k for k, char in enumerate(kept)}
        return cls(merges=[], specials={name: 1 + n_chars + k for k, name in enumerate(SPECIALS)},
                   byte_ids=[ids.get(bytes([b]), 0) for b in range(256)],
                   char_ids={char: i for char, i in ids.items() if len(char) > 1})

    # ---- encoding -------------------------------------------------------------------------

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self.encode_bytes(text.encode("utf-8", "surrogatepass"))
        if bos:
            ids.insert(0, self.bos_id)
        if eos:
            ids.append(self.eos_id)
        return ids

    def encode_bytes(self, data: bytes) -> list[int]:
        ids = []
        for chunk in split(data, self.split_rule):
            ids.extend(self._encode_chunk(chunk))
        return ids

    def encode_chat(self, prompt: str, reply: str | None = None) -> list[int]:
        """<bos> <|user|> prompt <|assistant|> [reply <eos>].

        Without a reply it ends after <|assistant|>, ready for the model to generate the reply."""
        turn = self.chat_turn()
        ids = turn.prompt_ids(self, prompt)
        if reply is not None:
            ids += [*self.encode(reply), turn.end]
        return ids

    def chat_turn(self) -> ChatTurn:
        """The turn encode_chat writes, for a model trained on it."""
        return ChatTurn(self.special_id("<|user|>"), self.special_id("<|assistant|>"), self.eos_id)

    def _merge_chunk(self, chunk: bytes) -> list[int]:
        """Steps 3 and 4 of the module docstring for one chunk.

        A heap of candidate pairs over a linked list of tokens makes this O(n log n) even for
        a whole story as one chunk. A C port may instead rescan all pairs for the best one after
        every merge (O(n^2)): the result is the same, as the heap orders pairs by (rank, position).
        """
        chars = UTF8_CHAR.findall(chunk)
        if self.add_dummy_prefix:  # a character of its own, as in llama2.c
            chars.insert(0, b" ")
        ids = []
        for char in chars:
            if char in self.char_ids:
                ids.append(self.char_ids[char])
            else:
                ids.extend(self.byte_ids[b] for b in char)
        end = len(ids)
        after = list(range(1, end + 1))  # next live token; `end` if none
        before = list(range(-1, end - 1))  # previous live token; -1 if none
        heap = []

        def add_candidate(i: int) -> None:  # the pair starting at live token i, if it merges
            j = after[i]
            if j < end and (ids[i], ids[j]) in self.merges:
                rank, new = self.merges[ids[i], ids[j]]
                heapq.heappush(heap, (rank, i, ids[i], ids[j], new))

        for i in range(end - 1):
            add_candidate(i)
        while heap:
            _, i, left, right, new = heapq.heappop(heap)
            j = after[i]
            # A merge gives a position a longer token, so an id never comes back: if both ids
            # still match, this pair is still there.
            if ids[i] != left or j == end or ids[j] != right:
                continue
            ids[i], ids[j] = new, -1
            after[i] = after[j]
            if after[i] < end:
                before[after[i]] = i
            if before[i] >= 0:
                add_candidate(before[i])
            add_candidate(i)
        return [t for t in ids if t >= 0]

    # ---- decoding -------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        special = set(self.specials.values())
        pieces, text_starts = [], True
        for i in ids:
            if i in special:
                text_starts = True
                continue
            piece = self.vocab[i]
            if text_starts and self.add_dummy_prefix and piece.startswith(b" "):
                piece = piece[1:]
            pieces.append(piece)
            text_starts = False
        return b"".join(pieces)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, so that decode(encode(s)) == s for every str, lone surrogates included.

        Bytes that no str encodes to (e.g. a model's output cut inside a character) are decoded
        with errors="replace": each invalid sequence, and any surrogate, becomes U+FFFD."""
        data = self.decode_bytes(ids)
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return data.decode("utf-8", "replace")

    # ---- vocabulary -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def special_id(self, name: str) -> int:
        if name not in self.specials:
            raise ValueError(f"this tokenizer has no special token {name}; "
                             f"it has {sorted(self.specials)}")
        return self.specials[name]

    @property
    def bos_id(self) -> int:
        return self.special_id("<bos>")

    @property
    def eos_id(self) -> int:
        return self.special_id("<eos>")

    def text_bytes(self) -> list[int]:
        """UTF-8 bytes of text each token stands for (0 for a special token), for bits per
        byte."""
        specials = set(self.specials.values())
        return [0 if i in specials else len(piece) for i, piece in enumerate(self.vocab)]

    def vocab_dump(self) -> str:
        """One line per token, for people: id, the token, and how merges build it."""
        built_from = {}
        for (left, right), (rank, new) in sorted(self.merges.items(), key=lambda m: m[1]):
            built_from.setdefault(new, []).append(f"{_show(self.vocab[left])} + "
                                                  f"{_show(self.vocab[right])} (rank {rank})")
        special = set(self.specials.values())
        lines = []
        for i, token in enumerate(self.vocab):
            kind = "special" if i in special else " | ".join(built_from.get(i, []))
            lines.append(f"{i:6d} {_show(token):24s} {kind}".rstrip())
        return "\n".join(lines) + "\n"

    # ---- files ----------------------------------------------------------------------------

    def to_json(self) -> str:
        """Human-readable JSON (docs/tokenizer.md), one merge per line."""
        header = {
            "format": FORMAT,
            "split_rule": self.split_rule,
            "add_dummy_prefix": self.add_dummy_prefix,
            "specials": self.specials,
            "byte_ids": self.byte_ids,
            "char_ids": {str(i): char.decode() for char, i in self.char_ids.items()},
        }
        lines = [f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},"
                 for key, value in header.items()]
        merges = sorted(self.merges.items(), key=lambda m: (m[1], m[0]))
        lines.append('  "merges": [')
        lines.append(",\n".join(f"    [{left}, {right}, {new}, {rank}]"
                               for (left, right), (rank, new) in merges))
        lines.append("  ]")
        return "{\n" + "\n".join(lines) + "\n}\n"

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        d = json.loads(text)
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        return cls(merges=d["merges"], specials=d["specials"], byte_ids=d["byte_ids"],
                   char_ids={char.encode(): int(i) for i, char in d["char_ids"].items()},
                   add_dummy_prefix=d["add_dummy_prefix"], split_rule=d["split_rule"])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        try:
            return cls.from_json(Path(path).read_text(encoding="utf-8"))
        except ValueError as e:  # json's errors are ValueErrors too
            raise ValueError(f"{path}: {e}") from None


def count_characters(texts: str | Iterable[str]) -> Counter:
    """How often each UTF-8 character (as bytes, cut as encoding cuts them) occurs."""
    counts = Counter()
    for text in [texts] if isinstance(texts, str) else texts:
        counts.update(UTF8_CHAR.findall(text.encode("utf-8", "surrogatepass")))
    return counts


def train_tokenizer(texts: str | Iterable[str], vocab_size: int, kind: str = "auto") -> Tokenizer:
    """A new vocabulary of `kind` (KINDS): "bpe" (Tokenizer.train), "char"
    (Tokenizer.train_chars), or "auto": characters below SMALLEST_BPE tokens, else BPE."""
    if kind not in KINDS:
        raise ValueError(f"the tokenizer kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "char" or kind == "auto" and vocab_size < SMALLEST_BPE:
        return Tokenizer.train_chars(texts, vocab_size)
    return Tokenizer.train(texts, vocab_size)


def _show(token: bytes) -> str:
    """A token as a quoted str if it is UTF-8, else as bytes: ' the', '\\n', b'\\xe2'."""
    try:
        return repr(token.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(token)
