"""load_llama2c_tokenizer: ids identical to llama2.c's encode() and to Hugging Face `tokenizers`."""
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.export.llama2c import load_llama2c_tokenizer
from tinylm.text.tokenizer import Tokenizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TOK512 = SHARED / "models" / "tok512.bin"
HF_TOKENIZER = SHARED / "models" / "stories260K-hf" / "tokenizer.json"
VALID_TEXT = SHARED / "data" / "tinystories_valid_head.txt"
needs_shared = pytest.mark.skipif(not TOK512.exists(),
                                  reason=f"{SHARED} (llama2.c tokenizer, TinyStories) is absent")

ODD_STRINGS = ["", " ", "  two spaces", "\n", "a\nb", "Tab\there", "naïve café",
               "“Hi,” she said…", "日本語", "😀 emoji 👍🏽", "\x00 nul", "\x7f\x01",
               "\ud800 lone surrogate", "<s> </s> <unk>", "<bos>", "1234567890", "~`|\\",
               "\u00a0nbsp", "Once upon a time"]


def read_pieces(path: Path) -> tuple[list[bytes], list[float]]:
    data = path.read_bytes()
    pieces, scores, offset = [], [], 4
    while offset < len(data):
        score, length = struct.unpack_from("<fi", data, offset)
        pieces.append(data[offset + 8:offset + 8 + length])
        scores.append(score)
        offset += 8 + length
    return pieces, scores


def llama2c_encode(pieces: list[bytes], scores: list[float], text: bytes) -> list[int]:
    """llama2.c's encode() (run.c), statement by statement, without BOS/EOS."""
    lookup = {piece: i for i, piece in enumerate(pieces)}
    tokens = [lookup[b" "]] if text else []  # the dummy prefix
    buffer = b""
    for k, c in enumerate(text):
        if c & 0xC0 != 0x80:
            buffer = b""
        buffer += bytes([c])
        if k + 1 < len(text) and text[k + 1] & 0xC0 == 0x80 and len(buffer) < 4:
            continue
        tokens += [lookup[buffer]] if buffer in lookup else [b + 3 for b in buffer]
        buffer = b""
    while True:
        best_score, best_id, best_index = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            merged = lookup.get(pieces[tokens[i]] + pieces[tokens[i + 1]], -1)
            if merged != -1 and scores[merged] > best_score:
                best_score, best_id, best_index = scores[merged], merged, i
        if best_index == -1:
            return tokens
        tokens[best_index:best_index + 2] = [best_id]


def write_llama2c_tokenizer(path: Path, text_pieces: list[str]) -> None:
    """A tokenizer.bin with the given pieces after the specials and bytes, best score first."""
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [f"<0x{b:02X}>".encode() for b in range(256)]
    pieces += [piece.encode() for piece in text_pieces]
    scores = [0.0] * 259 + [-float(rank) for rank in range(len(text_pieces))]
    with open(path, "wb") as f:
        f.write(struct.pack("<i", max(map(len, pieces))))
        for piece, score in zip(pieces, scores):
            f.write(struct.pack("<fi", score, len(piece)) + piece)


# Merges out of order (" the" before "he"), several ways to build a piece, a multi-byte char.
TINY_PIECES = [" t", "he", " the", "th", " a", "an", " an", "and", " and", "the", "e", "h", "t",
               "a", "n", "d", " ", "é", "“"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama2c") / "tiny.bin"
    write_llama2c_tokenizer(path, TINY_PIECES)
    return load_llama2c_tokenizer(path), *read_pieces(path)


@settings(max_examples=200, deadline=None)
@given(st.text("thean dé“ü\n", max_size=30))
def test_tiny_vocabulary_matches_llama2c(tiny, text):
    tok, pieces, scores = tiny
    assert tok.encode(text) == llama2c_encode(pieces, scores, text.encode())
    assert tok.decode(tok.encode(text)) == text


# Pieces of "é" (C3 A9) and "“" (E2 80 9C) in any order, so also broken UTF-8.
@given(st.lists(st.sampled_from([b"t", b"h", b"e", b" ", b"\xc3", b"\xa9", b"\xe2", b"\x80",
                                 b"\x9c"])).map(b"".join))
def test_tiny_vocabulary_matches_llama2c_on_any_bytes(tiny, data):
    tok, pieces, scores = tiny
    assert tok.encode_bytes(data) == llama2c_encode(pieces, scores, data)
    assert tok.decode_bytes(tok.encode_bytes(data)) == data


def test_tiny_vocabulary_layout(tiny):
    tok, _, _ = tiny
    assert len(tok) == 259 + len(TINY_PIECES)
    assert (tok.special_id("<unk>"), tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.vocab[3 + 0x41] == b"A" and tok.byte_ids[0x41] == 3 + 0x41
    assert tok.char_ids["“".encode()] == 259 + TINY_PIECES.index("“")
    assert tok.encode("the", bos=True) == [1, 259 + TINY_PIECES.index(" the")]


def test_bad_file_is_rejected(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(struct.pack("<i", 5) + struct.pack("<fi", 0.0, 5) + b"<unk>")
    with pytest.raises(ValueError, match="are not the byte tokens"):
        load_llama2c_tokenizer(path)


# ---- the real stories260K tokenizer ---------------------------------------------------------

@pytest.fixture(scope="module")
def tok512():
    return load_llama2c_tokenizer(TOK512)


@pytest.fixture(scope="module")
def valid_lines():
    return VALID_TEXT.read_text(encoding="utf-8").splitlines()


@needs_shared
def test_tok512_matches_llama2c(tok512, valid_lines):
    pieces, scores = read_pieces(TOK512)
    for text in valid_lines[:150] + ODD_STRINGS:
        data = text.encode("utf-8", "surrogatepass")
        assert tok512.encode(text) == llama2c_encode(pieces, scores, data)


@needs_shared
def test_tok512_known_encoding(tok512):
    ids = tok512.encode("Once upon a time, there was a little girl named Lily.", bos=True)
    assert ids == [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426]
    assert tok512.decode(ids) == "Once upon a time, there was a little girl named Lily."
    assert tok512.vocab[ids[1]] == b" Once"


@needs_shared
def test_tok512_round_trip_and_file(tok512, valid_lines, tmp_path):
    assert len(tok512) == 512
    tok512.save(tmp_path / "tok512.json")
    loaded = Tokenizer.load(tmp_path / "tok512.json")
    for text in valid_lines[:300] + ODD_STRINGS:
        ids = tok512.encode(text)
        assert loaded.encode(text) == ids
        assert tok512.decode(ids) == text


@needs_shared
def test_tok512_matches_hugging_face(tok512, valid_lines):
    """The same vocabulary as a `tokenizers` BPE (byte fallback, Metaspace "▁" for spaces).

    Two conventions differ, so the comparison is on " " + text, where they agree:
    - HF's Metaspace prepends its "▁" only if the text does not start with one already, so
      " Hello" gives the same ids as "Hello"; llama2.c always adds the dummy space.
    - HF matches its added tokens "<s>", "</s>", "<unk>" inside plain text, and reads a literal
      "▁" in the text as a space; here both are plain text, so these strings are left out.
    - HF takes only valid Unicode, so strings with lone surrogates are left out too.
    BOS: HF's post-processor adds <s>, which is encode(bos=True) here.
    """
    tokenizers = pytest.importorskip("tokenizers",
                                     reason="the `tokenizers` package is not installed")
    hf = tokenizers.Tokenizer.from_file(str(HF_TOKENIZER))
    texts = [s for s in valid_lines + ODD_STRINGS  # "" is [] here, and [410] as " " in HF
             if s and "<" not in s and not any("\ud800" <= c <= "\udfff" for c in s)]
    for text in texts:
        assert tok512.encode(text) == hf.encode(" " + text, add_special_tokens=False).ids
        if not text.startswith(" "):
            assert tok512.encode(text, bos=True) == hf.encode(text).ids
