"""The .bin file: a quantized model plus its tokenizer, laid out for use in place from flash.

docs/format.md is the specification; this module writes and reads it, and checks a file the
way the C loader (tinylm/runtime/csrc/tinylm.c) does, with the same messages, in the same order.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.config import ModelConfig
from ..text.tokenizer import ChatTurn, Tokenizer

MAGIC = b"TLMB"
VERSION = 1
HEADER = struct.Struct("<4sHHII8IIddBBHII4I")   # docs/format.md's fields, padded to HEADER_SIZE
HEADER_SIZE = 128
CRC_START = 16          # the CRC covers every byte from here to the end of the file
ALIGN = 16
ENTRY = struct.Struct("<HHBxxxIIIIiI")     # one section table entry
ENTRY_SIZE = 32
F32, Q8, Q4, RAW = 0, 1, 2, 3              # section data types
BITS_DTYPE = {32: F32, 8: Q8, 4: Q4}
TOKENIZER, ROPE, TOK_EMB, FINAL_NORM, LM_HEAD = 1, 2, 3, 4, 5   # section kinds
LAYER_NAMES = ("attn_norm", "wq", "wk", "wv", "wo", "mlp_norm", "w1", "w2", "w3")
LAYER_KIND = 16         # layer tensor k has kind 16 + k
LIMITS = {"vocab_size": 65535, "dim": 8192, "n_layers": 255, "n_heads": 256, "n_kv_heads": 256,
          "head_dim": 256, "hidden_dim": 32768, "max_seq_len": 65535}
MAX_GROUP = 256
MAX_OPTIONAL_SECTIONS = 1024   # after the required ones: room to grow, a bound on the work
ROPE_ONE = 1 << 14      # cos and sin in Q14
TOKENIZER_HEAD = struct.Struct("<IIIIIIBBH")


class BinFormatError(ValueError):
    """A .bin file that is damaged or not one; the message says what is wrong."""


@dataclass
class Tensor:
    """One weight tensor as stored: float32 values, or quantized integers (int8, or int4 kept
    unpacked here, one per int8) with a uint16 scale per group of `group` inputs in a row:
    weight = q * scales / 2**shift."""
    dtype: int
    values: np.ndarray                  # float32 (rows, cols) / (cols,) or int8 (rows, cols)
    scales: np.ndarray | None = None    # uint16 (rows, ceil(cols / group))
    shift: int = 0
    group: int = 0

    def dequantize(self) -> np.ndarray:
        if self.dtype == F32:
            return self.values
        rows, cols = self.values.shape
        per_column = np.repeat(self.scales.astype(np.float64), self.group, axis=1)[:, :cols]
        return (self.values * per_column / 2.0 ** self.shift).astype(np.float32)


@dataclass
class BinModel:
    config: ModelConfig
    tokenizer: Tokenizer
    tensors: dict[str, Tensor]          # names as in ModelConfig.param_shapes()
    bits: int
    group_size: int
    rope: np.ndarray                    # int16 (max_seq_len, head_dim / 2, 2): cos, sin in Q14
    file_size: int = 0
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)   # a read file's tensors:
                                        # each one's bytes (start, end) in the file
    chat: ChatTurn | None = None        # a single-turn chat model's turn; None: a text model


def align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def rope_table(config: ModelConfig) -> np.ndarray:
    """cos and sin of every RoPE angle (as ops.rope_table), rounded to Q14."""
    inv_freq = config.rope_theta ** (-np.arange(0, config.head_dim, 2) / config.head_dim)
    angles = np.outer(np.arange(config.max_seq_len), inv_freq)
    table = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    return np.round(table * ROPE_ONE).astype(np.int16)


def section_order(config: ModelConfig) -> list[tuple[int, int]]:
    """(kind, layer) of the sections every file starts its table with, in this order."""
    return [(TOKENIZER, 0), (ROPE, 0)] + [section_id(name) for name in config.param_shapes()]


def section_id(name: str) -> tuple[int, int]:
    """(kind, layer) of a tensor name."""
    fixed = {"tok_emb": TOK_EMB, "final_norm": FINAL_NORM, "lm_head": LM_HEAD}
    if name in fixed:
        return fixed[name], 0
    _, layer, short = name.split(".")
    return LAYER_KIND + LAYER_NAMES.index(short), int(layer)


def tensor_size(dtype: int, rows: int, cols: int, group: int) -> int:
    """Bytes of a tensor's data: its values, then (quantized) its scales at the next 16 bytes."""
    if dtype == F32:
        return 4 * rows * cols
    row_bytes = cols if dtype == Q8 else (cols + 1) // 2
    return align(rows * row_bytes) + 2 * rows * (-(-cols // group))


# ---- writing --------------------------------------------------------------------------------

def tensor_bytes(t: Tensor) -> bytes:
    if t.dtype == F32:
        return np.ascontiguousarray(t.values, "<f4").tobytes()
    q = t.values
    if t.dtype == Q4:   # two per byte, the first in the low nibble; odd rows padded with 0
        if q.shape[1] % 2:
            q = np.pad(q, ((0, 0), (0, 1)))
        nibbles = (q & 0xF).astype(np.uint8)
        q = nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)
    data = q.astype(np.uint8).tobytes()
    return data + bytes(align(len(data)) - len(data)) + t.scales.astype("<u2").tobytes()


def tokenizer_bytes(tok: Tokenizer) -> bytes:
    specials = sorted(tok.specials.values())
    merges = sorted((left, right, new, rank) for (left, right), (rank, new) in tok.merges.items())
    chars = sorted((char_key(char), i) for char, i in tok.char_ids.items())
    offsets = np.cumsum([0] + [len(piece) for piece in tok.vocab])
    parts = [TOKENIZER_HEAD.pack(len(tok.vocab), len(merges), len(chars), len(specials),
                                 tok.specials.get("<bos>", 0), tok.specials.get("<eos>", 0),
                                 tok.split_rule, int(tok.add_dummy_prefix), 0),
             np.array(tok.byte_ids, "<u4").tobytes(), np.array(specials, "<u4").tobytes(),
             offsets.astype("<u4").tobytes(), np.array(merges, "<u4").reshape(-1).tobytes(),
             np.array(chars, "<u4").reshape(-1).tobytes(), b"".join(tok.vocab)]
    return b"".join(parts)


def char_key(char: bytes) -> int:
    """A UTF-8 character (1-4 bytes) as one uint32, first byte highest: sorts like the bytes."""
    return int.from_bytes(char.ljust(4, b"\0"), "big")


def write_bin(path: str | Path, config: ModelConfig, tokenizer: Tokenizer,
              tensors: dict[str, Tensor], bits: int, group_size: int,
              chat: ChatTurn | None = None) -> int:
    """Write a .bin (of a chat model when `chat` is its turn); returns its size in bytes."""
    chat_ids = (chat.user, chat.assistant, chat.end) if chat else (0, 0, 0)
    if chat and not set(chat_ids) <= set(tokenizer.specials.values()):
        raise ValueError(f"the chat turn {chat_ids} must be special tokens of the tokenizer")
    sections = [(TOKENIZER, 0, RAW, 0, 0, 0, tokenizer_bytes(tokenizer)),
                (ROPE, 0, RAW, 0, 0, 0, rope_table(config).astype("<i2").tobytes())]
    for name in config.param_shapes():
        t = tensors[name]
        rows, cols = (1, t.values.shape[0]) if t.values.ndim == 1 else t.values.shape
        sections.append((*section_id(name), t.dtype, rows, cols, t.shift, tensor_bytes(t)))
    table_offset = HEADER_SIZE
    offset = align(table_offset + ENTRY_SIZE * len(sections))
    entries, payload = [], []
    for kind, layer, dtype, rows, cols, shift, data in sections:
        entries.append(ENTRY.pack(kind, layer, dtype, offset, len(data), rows, cols, shift, 0))
        payload.append(data + bytes(align(len(data)) - len(data)))
        offset += align(len(data))
    c = config
    body = bytearray(HEADER.pack(
        MAGIC, VERSION, HEADER_SIZE, offset, 0, c.vocab_size, c.dim, c.n_layers, c.n_heads,
        c.n_kv_heads, c.head_dim, c.hidden_dim, c.max_seq_len, int(c.tie_embeddings),
        c.norm_eps, c.rope_theta, bits, 0, group_size, len(sections), table_offset,
        int(chat is not None), *chat_ids))
    body += bytes(HEADER_SIZE - len(body))
    body += b"".join(entries)
    body += bytes(align(len(body)) - len(body))
    body += b"".join(payload)
    struct.pack_into("<I", body, 12, zlib.crc32(body[CRC_START:]))
    Path(path).write_bytes(bytes(body))
    return len(body)


# ---- reading and checking -------------------------------------------------------------------

def fail(message: str):
    raise BinFormatError(message)


def read_bin(path: str | Path) -> BinModel:
    data = Path(path).read_bytes()
    try:
        return parse_bin(data)
    except BinFormatError as e:
        raise BinFormatError(f"{path}: {e}") from None


def parse_bin(data: bytes) -> BinModel:
    """Check and unpack a .bin held in memory. Raises BinFormatError."""
    if len(data) < HEADER_SIZE:
        fail("truncated: shorter than the header")
    (magic, version, header_size, file_size, crc, vocab, dim, n_layers, n_heads, n_kv_heads,
     head_dim, hidden_dim, max_seq_len, flags, eps, theta, bits, _, group, n_sections,
     table_offset, chat, *chat_ids) = HEADER.unpack_from(data)
    if magic != MAGIC:
        fail("not a tinylm .bin (bad magic)")
    if version != VERSION:
        fail(f"unsupported format version (this reader knows version {VERSION})")
    if header_size < HEADER_SIZE or header_size % ALIGN:
        fail("bad header size")
    if len(data) < file_size:
        fail("truncated: the file is shorter than its header says")
    if file_size < header_size:
        fail("bad file size in header")
    if zlib.crc32(data[CRC_START:file_size]) != crc:
        fail("CRC mismatch: the file is damaged")
    dims = dict(vocab_size=vocab, dim=dim, n_layers=n_layers, n_heads=n_heads,
                n_kv_heads=n_kv_heads, head_dim=head_dim, hidden_dim=hidden_dim,
                max_seq_len=max_seq_len)
    for name, value in dims.items():
        if not 1 <= value <= LIMITS[name]:
            fail("bad config: a dimension is out of range")
    if n_heads % n_kv_heads or head_dim % 2:
        fail("bad config: heads")
    if flags > 1 or not (0 < eps < 1) or not (theta > 0):
        fail("bad config: flags, norm_eps or rope_theta")
    if bits not in BITS_DTYPE or (bits != 32 and not 1 <= group <= MAX_GROUP):
        fail("bad quantization type or group size")
    if chat > 1 or (max(chat_ids) >= vocab if chat else any(chat_ids)):
        fail("bad chat turn: flag or token ids")
    config = ModelConfig(**dims, tie_embeddings=bool(flags), norm_eps=eps, rope_theta=theta)
    order = section_order(config)
    if n_sections > len(order) + MAX_OPTIONAL_SECTIONS:
        fail("too many sections")
    table_end = table_offset + ENTRY_SIZE * n_sections
    if table_offset < header_size or table_offset % ALIGN or table_end > file_size:
        fail("section table outside the file")
    entries = [ENTRY.unpack_from(data, table_offset + ENTRY_SIZE * i) for i in range(n_sections)]
    for kind, layer, dtype, offset, size, *_ in entries:
        if offset % ALIGN or offset < table_end or size > file_size - offset:
            fail("section past the end of the file or misaligned")
    if n_sections < len(order):
        fail("missing section")
    if [entry[:2] for entry in entries[:len(order)]] != order:
        fail("section table out of order")
    previous_end = table_end     # sections follow the table's order, so one pass finds overlaps
    for entry in entries:
        if entry[3] < previous_end:
            fail("sections overlap or are not in the table's order")
        previous_end = entry[3] + entry[4]
    found = {entry[:2]: entry[2:8] for entry in entries[:len(order)]}
    tensors, spans = {}, {}
    for name, shape in config.param_shapes().items():
        dtype, offset, size, rows, cols, shift = found[section_id(name)]
        spans[name] = offset, offset + size
        want_rows, want_cols = (1, shape[0]) if len(shape) == 1 else shape
        # bits 4 and 8 allow int4 and int8 matrices (the embedding stays int8 at 4 bits)
        dtypes = (F32,) if len(shape) == 1 or bits == 32 else (Q8, Q4)
        if dtype not in dtypes or (rows, cols) != (want_rows, want_cols) or \
                size != tensor_size(dtype, rows, cols, group):
            fail("tensor type, shape or size does not match the config")
        if not 0 <= shift <= 62:
            fail("bad scale shift")
        tensors[name] = unpack_tensor(data, dtype, offset, shape, group, shift)
    dtype, offset, size, *_ = found[ROPE, 0]
    if dtype != RAW or size != 4 * max_seq_len * (head_dim // 2):
        fail("rope table has the wrong size")
    rope = np.frombuffer(data, "<i2", max_seq_len * head_dim, offset)
    dtype, offset, size, *_ = found[TOKENIZER, 0]
    tokenizer = parse_tokenizer(data[offset:offset + size], vocab)
    # the C matrix kernel takes an int8 value as value + 128 in 1..255: -128 would break it
    if any(t.dtype == Q8 and np.any(t.values == -128) for t in tensors.values()):
        fail("bad int8 weight: -128 (the values are -127..127)")
    return BinModel(config, tokenizer, tensors, bits, group,
                    rope.reshape(max_seq_len, head_dim // 2, 2), file_size, spans,
                    ChatTurn(*chat_ids) if chat else None)


def unpack_tensor(data, dtype, offset, shape, group, shift) -> Tensor:
    if dtype == F32:
        return Tensor(F32, np.frombuffer(data, "<f4", int(np.prod(shape)), offset)
                      .astype(np.float32).reshape(shape))
    rows, cols = shape
    if dtype == Q8:
        q = np.frombuffer(data, np.int8, rows * cols, offset).reshape(rows, cols)
        n_bytes = rows * cols
    else:
        row_bytes = (cols + 1) // 2
        n_bytes = rows * row_bytes
        packed = np.frombuffer(data, np.uint8, n_bytes, offset).reshape(rows, row_bytes)
        nibbles = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(rows, -1)[:, :cols]
        q = ((nibbles.astype(np.int8) ^ 8) - 8).astype(np.int8)    # sign-extend 4 bits
    n_groups = -(-cols // group)
    scales = np.frombuffer(data, "<u2", rows * n_groups, offset + align(n_bytes))
    return Tensor(dtype, q, scales.reshape(rows, n_groups), shift, group)


def parse_tokenizer(blob: bytes, vocab_size: int) -> Tokenizer:
    def bad(what):
        fail(f"bad tokenizer: {what}")

    if len(blob) < TOKENIZER_HEAD.size:
        bad("section too short")
    n_vocab, n_merges, n_chars, n_specials, bos, eos, split_rule, dummy, _ = \
        TOKENIZER_HEAD.unpack_from(blob)
    if n_vocab != vocab_size or n_specials > n_vocab or n_merges > 1 << 24 or n_chars > n_vocab:
        bad("counts")
    words = 256 + n_specials + n_vocab + 1 + 4 * n_merges + 2 * n_chars
    start = TOKENIZER_HEAD.size
    if len(blob) < start + 4 * words:
        bad("section too short")
    table = np.frombuffer(blob, "<u4", words, start).astype(np.int64)
    byte_ids, table = table[:256], table[256:]
    specials, table = table[:n_specials], table[n_specials:]
    offsets, table = table[:n_vocab + 1], table[n_vocab + 1:]
    merges, chars = table[:4 * n_merges].reshape(-1, 4), table[4 * n_merges:].reshape(-1, 2)
    pieces_start = start + 4 * words
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0) or pieces_start + offsets[-1] > len(blob):
        bad("piece offsets")
    ids = np.concatenate([byte_ids, specials, merges[:, :3].reshape(-1), chars[:, 1], [bos, eos]])
    if np.any(ids >= n_vocab) or split_rule > 1 or dummy > 1:
        bad("id out of range")
    keys = [tuple(m[:2]) for m in merges]
    if any(a >= b for a, b in zip(keys, keys[1:])) or np.any(np.diff(chars[:, 0]) <= 0):
        bad("merges or characters not sorted")
    vocab = [blob[pieces_start + a:pieces_start + b] for a, b in zip(offsets, offsets[1:])]
    try:
        tokenizer = Tokenizer(merges=[(int(l), int(r), int(n), int(k)) for l, r, n, k in merges],
                              specials={vocab[i].decode(): int(i) for i in specials},
                              byte_ids=[int(i) for i in byte_ids],
                              char_ids={vocab[i]: int(i) for _, i in chars},
                              add_dummy_prefix=bool(dummy), split_rule=int(split_rule))
    except (ValueError, KeyError, RecursionError, UnicodeDecodeError):
        tokenizer = None
    if tokenizer is None or tokenizer.vocab != vocab:
        bad("pieces, merges and ids do not make one vocabulary")
    return tokenizer
