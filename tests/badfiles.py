"""A corpus of damaged .bin files, each with the message a reader must reject it with.

Built from one good file: truncations (at every section boundary and at random points), flipped
bytes (caught by the CRC), and files written wrong but with a correct CRC (absurd dimensions,
offsets past the end, overlapping or misplaced sections, a bad tokenizer, ...), so that each
later check of docs/format.md is reached too."""
from __future__ import annotations

import random
import struct
import zlib

from tinylm.export.binformat import CRC_START, ENTRY, ENTRY_SIZE, HEADER_SIZE, TOKENIZER_HEAD

SHORT = "truncated: shorter than the header"
TRUNCATED = "truncated: the file is shorter than its header says"
CRC = "CRC mismatch: the file is damaged"
PAST_END = "section past the end of the file or misaligned"
TENSOR = "tensor type, shape or size does not match the config"
DIMENSION = "bad config: a dimension is out of range"
CHAT = "bad chat turn: flag or token ids"


def with_crc(data: bytearray) -> bytes:
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data[CRC_START:])))
    return bytes(data)


def entries(data: bytes) -> list[tuple]:
    n, table = struct.unpack_from("<II", data, 72)
    return [ENTRY.unpack_from(data, table + ENTRY_SIZE * i) for i in range(n)]


def edit(data: bytes, offset: int, fmt: str, value, crc: bool = True) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return with_crc(out) if crc else bytes(out)


def edit_entry(data: bytes, index: int, field: int, value) -> bytes:
    """Set one field (kind, layer, dtype, offset, size, rows, cols, shift, 0) of an entry."""
    table = struct.unpack_from("<I", data, 76)[0] + ENTRY_SIZE * index
    fields = list(ENTRY.unpack_from(data, table))
    fields[field] = value
    out = bytearray(data)
    ENTRY.pack_into(out, table, *fields)
    return with_crc(out)


def chat_turn(data: bytes, chat: int, user: int, assistant: int, end: int) -> bytes:
    """The file with another chat turn in its header (offsets 80-95)."""
    out = bytearray(data)
    struct.pack_into("<4I", out, 80, chat, user, assistant, end)
    return with_crc(out)


def corpus(good: bytes, seed: int = 0) -> list[tuple[str, bytes, str]]:
    """(name, file contents, expected message) for every damaged file."""
    rng = random.Random(seed)
    table = entries(good)
    tokenizer_offset = table[0][3]
    cases = []
    cuts = {0, 4, HEADER_SIZE - 1, HEADER_SIZE, struct.unpack_from("<I", good, 76)[0] + 1}
    for entry in table:
        cuts |= {entry[3], entry[3] + entry[4] - 1}
    cuts |= {rng.randrange(1, len(good)) for _ in range(20)}
    for cut in sorted(cuts):
        cases.append((f"truncated-at-{cut}", good[:cut], SHORT if cut < HEADER_SIZE else TRUNCATED))
    regions = {"header": (CRC_START, HEADER_SIZE), "table": (HEADER_SIZE, table[0][3]),
               "tokenizer": (tokenizer_offset, tokenizer_offset + table[0][4]),
               "tensors": (table[2][3], len(good))}
    for region, (start, end) in regions.items():
        for _ in range(5):
            at = rng.randrange(start, end)
            flipped = bytearray(good)
            flipped[at] ^= 1 << rng.randrange(8)
            cases.append((f"flipped-{region}-{at}", bytes(flipped), CRC))
    cases += [
        ("bad-magic", edit(good, 0, "<4s", b"GGUF"), "not a tinylm .bin (bad magic)"),
        ("version-2", edit(good, 4, "<H", 2),
         "unsupported format version (this reader knows version 1)"),
        ("wrong-crc", edit(good, 12, "<I", zlib.crc32(good[CRC_START:]) ^ 1, crc=False), CRC),
        ("header-size-64", edit(good, 6, "<H", 64), "bad header size"),
        ("file-size-16", edit(good, 8, "<I", 16), "bad file size in header"),
        ("file-size-huge", edit(good, 8, "<I", 1 << 31), TRUNCATED),
        ("vocab-size-0", edit(good, 16, "<I", 0), DIMENSION),
        ("dim-huge", edit(good, 20, "<I", 1 << 30), DIMENSION),
        ("layers-100000", edit(good, 24, "<I", 100000), DIMENSION),
        ("head-dim-odd", edit(good, 36, "<I", 3), "bad config: heads"),
        ("kv-heads-3", edit(good, 32, "<I", 3), "bad config: heads"),
        ("eps-2", edit(good, 52, "<d", 2.0), "bad config: flags, norm_eps or rope_theta"),
        ("theta-nan", edit(good, 60, "<d", float("nan")),
         "bad config: flags, norm_eps or rope_theta"),
        ("bits-5", edit(good, 68, "<B", 5), "bad quantization type or group size"),
        ("group-300", edit(good, 70, "<H", 300) if good[68] != 32 else edit(good, 68, "<B", 0),
         "bad quantization type or group size"),
        ("chat-flag-2", chat_turn(good, 2, 0, 0, 0), CHAT),
        ("chat-end-past-vocab", chat_turn(good, 1, 0, 1, struct.unpack_from("<I", good, 16)[0]),
         CHAT),
        ("chat-ids-of-a-text-model", chat_turn(good, 0, 5, 0, 0), CHAT),
        ("table-past-end", edit(good, 76, "<I", len(good)), "section table outside the file"),
        ("sections-9999", edit(good, 72, "<I", 9999), "too many sections"),
        ("too-few-sections", edit(good, 72, "<I", 2), "missing section"),
        ("offset-past-end", edit_entry(good, 3, 3, len(good) + 16), PAST_END),
        ("size-past-end", edit_entry(good, 3, 4, 1 << 31), PAST_END),
        ("offset-misaligned", edit_entry(good, 3, 3, table[3][3] + 8), PAST_END),
        ("offset-in-table", edit_entry(good, 3, 3, HEADER_SIZE), PAST_END),
        ("out-of-order", edit_entry(edit_entry(good, 3, 0, 17), 4, 0, 16),
         "section table out of order"),
        ("overlap", edit_entry(good, 4, 3, table[3][3]),
         "sections overlap or are not in the table's order"),
        ("rows-wrong", edit_entry(good, 4, 5, table[4][5] + 1), TENSOR),
        ("dtype-wrong", edit_entry(good, 3, 2, 1), TENSOR),
        ("size-short", edit_entry(good, 4, 4, table[4][4] - 16), TENSOR),
        ("shift-99", edit_entry(good, 4, 7, 99), "bad scale shift"),
        ("rope-size", edit_entry(good, 1, 4, table[1][4] - 16), "rope table has the wrong size"),
        ("tokenizer-tiny", edit_entry(good, 0, 4, 8), "bad tokenizer: section too short"),
        ("tokenizer-vocab", edit(good, tokenizer_offset, "<I", 7), "bad tokenizer: counts"),
        ("tokenizer-merges-huge", edit(good, tokenizer_offset + 4, "<I", 1 << 20),
         "bad tokenizer: section too short"),
        ("tokenizer-bos", edit(good, tokenizer_offset + 16, "<I", 1 << 20),
         "bad tokenizer: id out of range"),
        ("tokenizer-byte-id", edit(good, tokenizer_offset + TOKENIZER_HEAD.size, "<I", 99999),
         "bad tokenizer: id out of range"),
    ]
    n_vocab, n_merges, _, n_specials = struct.unpack_from("<IIII", good, tokenizer_offset)
    offsets = tokenizer_offset + TOKENIZER_HEAD.size + 4 * (256 + n_specials)
    merges = offsets + 4 * (n_vocab + 1)
    cases += [
        ("tokenizer-offsets", edit(good, offsets + 4, "<I", 1 << 30),
         "bad tokenizer: piece offsets"),
        ("tokenizer-unsorted", edit(good, merges, "<I", n_vocab - 1),
         "bad tokenizer: merges or characters not sorted"),
        ("tokenizer-merge-id", edit(good, merges + 8, "<I", n_vocab),
         "bad tokenizer: id out of range"),
    ]
    assert n_merges > 1
    return cases
