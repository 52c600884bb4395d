"""Import from llama2.c (github.com/karpathy/llama2.c) files.

tokenizer.bin, little-endian: int32 max_token_length, then for each token id in order:
float32 score, int32 byte length, the token's bytes ("piece"). Ids 0, 1, 2 are <unk>, BOS
("\\n<s>\\n") and EOS ("\\n</s>\\n"); ids 3..258 are the byte tokens "<0x00>".."<0xFF>"; all
other pieces are text, spaces already as real ' ' bytes (SentencePiece's "▁" replaced).

llama2.c encodes a text by adding a space in front (SentencePiece's dummy prefix), looking up
each UTF-8 character as a piece (else one byte token per byte), then merging, again and again,
the adjacent pair whose concatenation is the piece of highest score (leftmost on ties).
Byte tokens never merge: their pieces are the text "<0xNN>". The same happens in our Tokenizer
with a merge (a, b) -> t for every way to cut a piece t in two pieces a + b, ranked by t's score.
(llama2.c stops at a NUL byte, being C; here NUL is just a byte.)
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from tinylm.core.config import ModelConfig
from tinylm.core.model import Transformer
from tinylm.text.tokenizer import UTF8_CHAR, Tokenizer
from tinylm.training.checkpoint import Checkpoint, save_checkpoint

FIRST_TEXT_ID = 259  # after <unk>, BOS, EOS and the 256 byte tokens


def load_llama2c_tokenizer(path: str | Path) -> Tokenizer:
    data = Path(path).read_bytes()
    pieces, scores = [], []
    offset = 4  # skip max_token_length
    while offset < len(data):
        score, length = struct.unpack_from("<fi", data, offset)
        offset += 8
        pieces.append(data[offset:offset + length])
        scores.append(score)
        offset += length
    byte_pieces = [f"<0x{b:02X}>".encode() for b in range(256)]
    if pieces[3:FIRST_TEXT_ID] != byte_pieces:
        raise ValueError(f"{path}: ids 3..258 are not the byte tokens <0x00>..<0xFF>")

    ids = {piece: i for i, piece in enumerate(pieces) if i >= FIRST_TEXT_ID}
    char_ids = {piece: i for piece, i in ids.items() if UTF8_CHAR.fullmatch(piece)}
    # Higher score merges first; equal scores share a rank, so position decides, as in llama2.c.
    rank = {score: r for r, score in enumerate(sorted(set(scores[FIRST_TEXT_ID:]), reverse=True))}
    merges = []
    for piece, i in ids.items():
        splits = [(ids[piece[:k]], ids[piece[k:]]) for k in range(1, len(piece))
                  if piece[:k] in ids and piece[k:] in ids]
        if not splits and piece not in char_ids:
            raise ValueError(f"{path}: piece {piece!r} (id {i}) is neither one character "
                             f"nor two pieces joined, so llama2.c could never produce it")
        merges += [(left, right, i, rank[scores[i]]) for left, right in splits]
    return Tokenizer(merges, specials={"<unk>": 0, "<bos>": 1, "<eos>": 2},
                     byte_ids=range(3, FIRST_TEXT_ID), char_ids=char_ids,
                     add_dummy_prefix=True, split_rule=0)


# ---- model ---------------------------------------------------------------------------------
# model.bin (llama2.c's legacy "version 0" export), little-endian: 7 int32 (dim, hidden_dim,
# n_layers, n_heads, n_kv_heads, vocab_size, seq_len), then float32 arrays: tok_emb, each of
# LAYER_ARRAYS stacked over the layers, final_norm, two RoPE tables, and the classifier if it
# is not tied to tok_emb (then vocab_size is negative). Matrices are (out, in), like ours;
# head_dim = dim / n_heads.

HEADER = struct.Struct("<7i")
VERSIONED_MAGIC = 0x616B3432  # "ak42": llama2.c's later export versions, which we do not read
LAYER_ARRAYS = ("attn_norm", "wq", "wk", "wv", "wo", "mlp_norm", "w1", "w2", "w3")


def _read_config(data: bytes, path) -> ModelConfig:
    if len(data) < HEADER.size:
        raise ValueError(f"{path}: {len(data)} bytes is too short for a llama2.c model header")
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len = HEADER.unpack_from(data)
    if dim == VERSIONED_MAGIC:
        raise ValueError(f"{path}: a versioned llama2.c export; only the legacy format "
                         f"(export.py --version 0) can be imported")
    if n_heads <= 0 or dim % n_heads:
        raise ValueError(f"{path}: dim {dim} is not a multiple of n_heads {n_heads}")
    try:
        return ModelConfig(vocab_size=abs(vocab_size), dim=dim, n_layers=n_layers, n_heads=n_heads,
                           n_kv_heads=n_kv_heads, head_dim=dim // n_heads, hidden_dim=hidden_dim,
                           max_seq_len=seq_len, tie_embeddings=vocab_size > 0)
    except ValueError as e:
        raise ValueError(f"{path}: not a llama2.c model: {e}") from None


def load_llama2c_model(path: str | Path) -> Transformer:
    data = Path(path).read_bytes()
    config = _read_config(data, path)
    shapes = config.param_shapes()
    rope_table = (config.max_seq_len, config.head_dim // 2)
    arrays = [("tok_emb", shapes["tok_emb"])]
    arrays += [(name, (config.n_layers, *shapes[f"layers.0.{name}"])) for name in LAYER_ARRAYS]
    # freq_cis_*: llama2.c's RoPE cos/sin tables; the model computes its own from rope_theta.
    arrays += [("final_norm", shapes["final_norm"]), ("freq_cis_real", rope_table),
               ("freq_cis_imag", rope_table)]
    if not config.tie_embeddings:
        arrays.append(("lm_head", shapes["lm_head"]))
    sizes = [math.prod(shape) for _, shape in arrays]
    expected = HEADER.size + 4 * sum(sizes)
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(f"{path}: {problem}: {len(data)} bytes, but a llama2.c model with this "
                         f"header ({config.n_params():,} parameters) has {expected}")
    floats = np.frombuffer(data, "<f4", offset=HEADER.size).astype(np.float32)  # a writable copy
    params, offset = {}, 0
    for (name, shape), size in zip(arrays, sizes):
        array = floats[offset:offset + size].reshape(shape)
        offset += size
        if name in LAYER_ARRAYS:
            params.update((f"layers.{i}.{name}", array[i]) for i in range(config.n_layers))
        elif not name.startswith("freq_cis"):
            params[name] = array
    return Transformer(config, params)


def import_llama2c(model_bin: str | Path, tokenizer_bin: str | Path, out_dir: str | Path) -> Path:
    """Convert a llama2.c model and its tokenizer into a tinylm checkpoint; returns its file."""
    model = load_llama2c_model(model_bin)
    tokenizer = load_llama2c_tokenizer(tokenizer_bin)
    if len(tokenizer) != model.config.vocab_size:
        raise ValueError(f"{tokenizer_bin} has {len(tokenizer)} tokens, but {model_bin} "
                         f"was trained with {model.config.vocab_size}")
    return save_checkpoint(Checkpoint(model.config, model.params, tokenizer), out_dir)
