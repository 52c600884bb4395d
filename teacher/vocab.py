"""A teacher's vocabulary as bytes, and its tokenizer as a tinylm Tokenizer where that is exact.

Hugging Face tokenizers write token strings in one of two ways: SentencePiece style (Llama,
Gemma), where "▁" stands for a space and "<0x41>" for a raw byte, or byte-level (GPT-2), where
every byte has a printable stand-in character. The projection
(tinylm/distillation/projection.py) needs the real bytes of every token; special tokens get
None, as they stand for no text.
"""
from __future__ import annotations

import json
import re

from tinylm.distillation.targets import TeacherVocab
from tinylm.text.tokenizer import UTF8_CHAR, Tokenizer

BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
END_TOKENS = ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>")


def _byte_level_chars() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, inverted: character -> byte.
    Printable Latin-1 bytes stand for themselves; the others map to 256, 257, ..."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + len(chars) - len(printable))
    return {c: b for b, c in chars.items()}


def _spec(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError("the teacher needs a fast (Rust `tokenizers`) tokenizer")
    return json.loads(backend.to_str())


def special_ids(tokenizer) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    ids |= {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    return ids


def end_ids(tokenizer, model_config=None) -> list[int]:
    """Tokens that end a text: <eos>, end-of-turn markers, and <bos>: story models such as
    llama2.c's end a story by starting the next."""
    ids = {tokenizer.eos_token_id, tokenizer.bos_token_id}
    eos = getattr(model_config, "eos_token_id", None)
    ids |= set(eos) if isinstance(eos, list) else {eos}
    vocab = tokenizer.get_vocab()
    ids |= {vocab[t] for t in END_TOKENS if t in vocab}
    return sorted(i for i in ids if i is not None)


def teacher_vocab(tokenizer, n_ids: int, model_config=None) -> TeacherVocab:
    """Bytes of token ids 0 .. n_ids - 1 (the model's output size, which may exceed the
    tokenizer's; ids beyond it are None)."""
    byte_level = "ByteLevel" in json.dumps(_spec(tokenizer).get("decoder"))
    chars = _byte_level_chars()
    specials = special_ids(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(min(n_ids, len(tokenizer)))))
    token_bytes = []
    for i, piece in enumerate(pieces):
        if i in specials or piece is None:
            token_bytes.append(None)
        elif byte_level:
            token_bytes.append(bytes(chars[c] for c in piece) if all(c in chars for c in piece)
                               else piece.encode())   # an added token, written as itself
        elif BYTE_TOKEN.fullmatch(piece):
            token_bytes.append(bytes([int(piece[3:5], 16)]))
        else:
            token_bytes.append(piece.replace("▁", " ").encode())
    token_bytes += [None] * (n_ids - len(token_bytes))
    probe = tokenizer("a", add_special_tokens=False)["input_ids"]
    dummy_prefix = b"".join(token_bytes[i] or b"" for i in probe) == b" a"
    return TeacherVocab(token_bytes, end_ids(tokenizer, model_config), dummy_prefix)


def tinylm_tokenizer(tokenizer) -> Tokenizer:
    """The teacher's tokenizer as a tinylm Tokenizer that encodes every text to the same ids,
    for a student that shares the teacher's vocabulary. Works for SentencePiece-style BPE with
    byte fallback and no pre-splitting (Llama/llama2.c, Gemma); ValueError for the rest."""
    spec = _spec(tokenizer)
    model, pre, norm = spec["model"], spec.get("pre_tokenizer"), spec.get("normalizer")
    metaspace = (pre or {}).get("type") == "Metaspace" and not pre.get("split", True) \
        and norm is None
    replace = pre is None and _replaces_spaces(norm)
    if model.get("type") != "BPE" or not model.get("byte_fallback") or not (metaspace or replace):
        raise ValueError("this teacher's tokenizer cannot be reproduced by tinylm's (it needs "
                         "SentencePiece-style BPE with byte fallback): use --student-tokenizer own")
    dummy_prefix = pre.get("prepend_scheme") in ("always", "first") if metaspace else \
        "Prepend" in json.dumps(norm)
    vocab = model["vocab"]
    specials = {}
    for i in sorted(special_ids(tokenizer)):
        name = tokenizer.convert_ids_to_tokens(i)
        name = {tokenizer.bos_token: "<bos>", tokenizer.eos_token: "<eos>"}.get(name, name)
        specials[name] = i
    byte_ids = [vocab.get(f"<0x{b:02X}>") for b in range(256)]
    if None in byte_ids:
        raise ValueError("the teacher's vocabulary lacks some of the byte tokens <0x00>..<0xFF>")
    pieces = {piece.replace("▁", " ").encode(): i for piece, i in vocab.items()
              if i not in specials.values() and i not in byte_ids}
    char_ids = {p: i for p, i in pieces.items() if UTF8_CHAR.fullmatch(p)}
    merges = []
    for rank, merge in enumerate(model["merges"]):
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        merges.append((vocab[left], vocab[right], vocab[left + right], rank))
    return Tokenizer(merges, specials, byte_ids, char_ids, add_dummy_prefix=dummy_prefix,
                     split_rule=0)


def _replaces_spaces(normalizer) -> bool:
    """Gemma's normalizer: replace " " by "▁" (possibly with a Prepend of "▁" first)."""
    if normalizer is None:
        return False
    steps = normalizer.get("normalizers", [normalizer])
    return all(s["type"] in ("Replace", "Prepend") for s in steps) and any(
        s["type"] == "Replace" and s["pattern"].get("String") == " " and s["content"] == "▁"
        for s in steps)
