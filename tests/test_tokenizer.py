"""Tokenizer: pre-split rules, BPE training, encode/decode, special tokens, files."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.text.bpe import count_chunks, learn_merges
from tinylm.text.pretokenize import split
from tinylm.text.tokenizer import SPECIALS, Tokenizer, train_tokenizer

CORPUS = [
    "Once upon a time, there was a little girl named Lily. She didn't like the rain.\n",
    "Lily's dog ran to the park. \"Look!\" said Tom.  The dog was happy.\n\n",
    "“Hello,” she said — naïve café, 日本語のテキスト, 😀😀 and 👍🏽.\n",
    "x = 42; y = 3.14\tz = 1e-5\r\n\x00\x07 done   \n",
] * 3
VOCAB_SIZE = 340

# Every text, including lone surrogates (category Cs), which st.text() leaves out by default.
any_text = st.text(st.characters(exclude_categories=()))
# Bytes from each pre-split class and their edges, so the rules meet each other often.
class_bytes = st.lists(st.sampled_from([b" ", b"\n", b"\t", b"\r", b"\v", b"a", b"Z", b"'", b"7",
                                        b",", b"\x00", b"\x7f", "é".encode(), b"\x80"])
                       ).map(b"".join)


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(CORPUS, VOCAB_SIZE)


# ---- pre-splitting --------------------------------------------------------------------------

SPACE, LETTER, DIGIT, OTHER = range(4)


def byte_class(b: int) -> int:
    if b in b" \t\n\v\f\r":
        return SPACE
    if b >= 0x80 or b == ord("'") or chr(b).isascii() and chr(b).isalpha():
        return LETTER
    return DIGIT if chr(b).isdigit() else OTHER


def split_rule_1_by_loop(data: bytes) -> list[bytes]:
    """docs/tokenizer.md's rule version 1 as the plain loop a C port would use."""
    def space_before_word(i):  # a space that rule 1 gives to the run after it
        return data[i] == 0x20 and i + 1 < len(data) and byte_class(data[i + 1]) != SPACE

    chunks, i = [], 0
    while i < len(data):
        start = i
        if space_before_word(i):
            i += 1
        run_class = byte_class(data[i])
        while i < len(data) and byte_class(data[i]) == run_class and not (
                run_class == SPACE and space_before_word(i)):
            i += 1
        chunks.append(data[start:i])
    return chunks


@pytest.mark.parametrize("text, chunks", [
    ("Hi  Lily's cat,\n 42!", ["Hi", " ", " Lily's", " cat", ",", "\n", " 42", "!"]),
    ("hello world", ["hello", " world"]),
    ("a  b", ["a", " ", " b"]),
    ("a \nb", ["a", " \n", "b"]),
    ("a\n b", ["a", "\n", " b"]),
    ("a \t  b  ", ["a", " \t ", " b", "  "]),
    ("don't 3.14", ["don't", " 3", ".", "14"]),
    ("abc123def", ["abc", "123", "def"]),
    ('"Hi!" he said...', ['"', "Hi", '!"', " he", " said", "..."]),
    ("naïve 日本 😀!", ["naïve", " 日本", " 😀", "!"]),
    (" ", [" "]),
    ("", []),
])
def test_split_rule_1_examples(text, chunks):
    assert split(text.encode(), 1) == [c.encode() for c in chunks]


@given(class_bytes)
def test_split_rule_1_matches_reference_loop(data):
    assert split(data, 1) == split_rule_1_by_loop(data)


@given(st.binary())
def test_split_keeps_every_byte(data):
    for rule in (0, 1):
        assert b"".join(split(data, rule)) == data


def test_split_rule_0_is_one_chunk_and_unknown_rules_fail():
    assert split(b"a b, c", 0) == [b"a b, c"]
    with pytest.raises(ValueError, match="unknown split rule version 7"):
        split(b"a", 7)


# ---- training -------------------------------------------------------------------------------

def learn_merges_by_recounting(chunk_counts, n_merges):
    """The textbook algorithm: recount all pairs after every merge."""
    chunks = {tuple(chunk): count for chunk, count in chunk_counts.items()}
    merges = []
    for new_id in range(256, 256 + n_merges):
        pair_counts = {}
        for chunk, count in chunks.items():
            for pair in zip(chunk, chunk[1:]):
                pair_counts[pair] = pair_counts.get(pair, 0) + count
        if not pair_counts:
            break
        best = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))
        merges.append(best)
        merged = {}
        for chunk, count in chunks.items():
            out, i = [], 0
            while i < len(chunk):
                if chunk[i:i + 2] == best:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(chunk[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + count
        chunks = merged
    return merges


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text("ab c'.\n", max_size=30), min_size=1, max_size=8))
def test_learn_merges_equals_recounting(texts):
    counts = count_chunks((text.encode() for text in texts), 1)
    assert learn_merges(counts, 40) == learn_merges_by_recounting(counts, 40)


def test_training_builds_the_vocabulary(tok):
    assert len(tok) == tok.vocab_size == VOCAB_SIZE
    n_merges = VOCAB_SIZE - 256 - len(SPECIALS)
    assert [tok.special_id(name) for name in SPECIALS] == list(range(256 + n_merges, VOCAB_SIZE))
    assert tok.vocab[:256] == [bytes([b]) for b in range(256)]
    for (left, right), (rank, new) in tok.merges.items():
        assert new == 256 + rank
        assert tok.vocab[new] == tok.vocab[left] + tok.vocab[right]
    assert sorted(rank for rank, _ in tok.merges.values()) == list(range(n_merges))


def test_training_is_deterministic(tok):
    again = Tokenizer.train(CORPUS, VOCAB_SIZE)
    reordered = Tokenizer.train(list(reversed(CORPUS)), VOCAB_SIZE)  # same counts, other order
    assert again.merges == tok.merges == reordered.merges


def test_training_compresses(tok):
    text = "".join(CORPUS)
    assert len(tok.encode(text)) < 0.6 * len(text.encode())


def test_vocab_size_errors():
    with pytest.raises(ValueError, match=r"at least 260 \(256 byte tokens \+ 4 special tokens\) "
                                         r"for byte-level BPE, got 100: .*--tokenizer char"):
        Tokenizer.train(CORPUS, 100)
    with pytest.raises(ValueError) as error:
        Tokenizer.train("abab abab", 300)
    message = str(error.value)
    # "abab abab" merges a+b, ab+ab, then " "+abab: 256 + 3 merges + 4 specials
    assert "too large for this training text" in message and "at most 263" in message
    assert "\n" not in message
    assert len(Tokenizer.train("abab abab", 263)) == 263


# ---- encoding and decoding ------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(any_text)
def test_round_trip_of_every_str(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert not set(ids) & set(tok.specials.values())


@pytest.mark.parametrize("text", [
    "", " ", "\x00", "\x00\x01\x1f\x7f\x80\x9f", "\t\n\r\v\f", "😀", "👍🏽", "👨‍👩‍👧",
    "日本語のテキスト", "한국어", "e\u0301", "\ufeffBOM", "\ud800", "a\udfffb", "\ud83d\ude00",
    "\U0010ffff", "\ufffd",
])
def test_round_trip_of_odd_strings(tok, text):
    assert tok.decode(tok.encode(text)) == text


@given(st.binary())
def test_round_trip_of_every_byte_string(tok, data):
    assert tok.decode_bytes(tok.encode_bytes(data)) == data


def test_decode_replaces_bytes_that_are_not_utf8(tok):
    cut = tok.encode_bytes("“Hi”".encode()[:-1])  # a model may stop inside a character
    assert tok.decode(cut) == "“Hi\ufffd"
    assert tok.decode([0xFF]) == "\ufffd"


def merge_by_rescanning(tok, ids):
    """Merging as a C port may do it: rescan for the (lowest rank, leftmost) pair each time."""
    while True:
        candidates = [(tok.merges[pair][0], i) for i, pair in enumerate(zip(ids, ids[1:]))
                      if pair in tok.merges]
        if not candidates:
            return ids
        _, i = min(candidates)
        ids = ids[:i] + [tok.merges[ids[i], ids[i + 1]][1]] + ids[i + 2:]


def test_heap_merging_equals_rescanning(tok):
    for chunk in count_chunks((text.encode() for text in CORPUS), 1):
        assert tok.encode_bytes(chunk) == merge_by_rescanning(tok, list(chunk))


# ---- special tokens -------------------------------------------------------------------------

def test_specials_never_come_from_text(tok):
    text = "<bos> <eos><|user|><|assistant|>"
    ids = tok.encode(text)
    assert not set(ids) & set(tok.specials.values())
    assert tok.decode(ids) == text


def test_bos_eos_and_chat(tok):
    ids = tok.encode("Hi there", bos=True, eos=True)
    assert ids == [tok.bos_id, *tok.encode("Hi there"), tok.eos_id]
    assert tok.decode(ids) == "Hi there"  # decode skips special tokens

    user, assistant = tok.special_id("<|user|>"), tok.special_id("<|assistant|>")
    prompt = tok.encode_chat("Tell a story")
    assert prompt == [tok.bos_id, user, *tok.encode("Tell a story"), assistant]
    full = tok.encode_chat("Tell a story", "Once upon a time.")
    assert full == prompt + tok.encode("Once upon a time.") + [tok.eos_id]
    assert tok.decode(full) == "Tell a storyOnce upon a time."


def test_missing_special_token_is_a_clear_error(tok):
    with pytest.raises(ValueError, match="no special token <pad>"):
        tok.special_id("<pad>")
    bytes_only = Tokenizer(merges=[], specials={})
    assert bytes_only.encode("hi") == [104, 105]
    with pytest.raises(ValueError, match="no special token <bos>"):
        bytes_only.encode("hi", bos=True)


# ---- files and foreign vocabularies ---------------------------------------------------------

def foreign_tokenizer():
    """A llama2.c-like vocabulary: specials 0-2, byte tokens 3 + b, whole-character tokens,
    two merges to one token sharing its rank, a dummy prefix and no pre-splitting."""
    space, a, b, e_acute = 259, 260, 261, 262
    ab, ba, aba, space_a, bb = 263, 264, 265, 266, 267
    return Tokenizer(
        merges=[(a, b, ab, 0), (b, a, ba, 1), (ab, a, aba, 2), (a, ba, aba, 2),
                (space, a, space_a, 3), (b, b, bb, 4)],
        specials={"<unk>": 0, "<bos>": 1, "<eos>": 2},
        byte_ids=range(3, 259),
        char_ids={b" ": space, b"a": a, b"b": b, "é".encode(): e_acute},
        add_dummy_prefix=True, split_rule=0)


def test_foreign_vocabulary_encodes_by_rank_then_position():
    tok = foreign_tokenizer()
    assert tok.vocab[263:] == [b"ab", b"ba", b"aba", b" a", b"bb"]
    assert tok.encode("aba") == [259, 265]            # " "+"a"+"b"+"a" -> " "+"ab"+"a" -> " "+"aba"
    assert tok.encode("bbb") == [259, 267, 261]       # of two overlapping "bb", the leftmost
    assert tok.encode("bab") == [259, 261, 263]       # "ab" (rank 0) before "ba" (rank 1)
    assert tok.encode("ab a") == [259, 263, 266]
    assert tok.encode("é ü") == [259, 262, 259, 3 + 0xC3, 3 + 0xBC]  # no "ü" token: its bytes
    assert tok.encode("") == []
    assert tok.decode(tok.encode("aba", bos=True)) == "aba"  # dummy space removed again


@given(st.text("ab éü", max_size=20))
def test_foreign_heap_merging_equals_rescanning(text):
    tok = foreign_tokenizer()
    initial = []
    for char in " " + text if text else "":
        data = char.encode()
        initial += [tok.char_ids[data]] if data in tok.char_ids else [3 + b for b in data]
    assert tok.encode(text) == merge_by_rescanning(tok, initial)
    assert tok.decode(tok.encode(text)) == text


def test_foreign_vocabulary_needs_chat_markers_for_chat():
    with pytest.raises(ValueError, match=r"no special token <\|user\|>"):
        foreign_tokenizer().encode_chat("hi")


@pytest.mark.parametrize("make", [lambda: Tokenizer.train(CORPUS, VOCAB_SIZE), foreign_tokenizer])
def test_save_load_round_trip(tmp_path, make):
    tok = make()
    path = tmp_path / "tok.json"
    tok.save(path)
    assert json.loads(path.read_text())["format"] == "tinylm-tokenizer/1"
    assert path.read_text() == tok.to_json()
    loaded = Tokenizer.load(path)
    assert loaded.vocab == tok.vocab and loaded.specials == tok.specials
    assert (loaded.add_dummy_prefix, loaded.split_rule) == (tok.add_dummy_prefix, tok.split_rule)
    for text in CORPUS + ["", "aba bab", "<bos>"]:
        assert loaded.encode(text) == tok.encode(text)


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.json"
    for text in ['{"format": "something else"}', "[1, 2]", "not json"]:
        path.write_text(text)
        with pytest.raises(ValueError, match="other.json: "):
            Tokenizer.load(path)
    with pytest.raises(ValueError, match="not a tinylm-tokenizer/1 file"):
        Tokenizer.from_json('{"format": "something else"}')


def test_inconsistent_tokenizers_are_refused():
    with pytest.raises(ValueError, match="token ids must be 0..n-1"):
        Tokenizer(merges=[], specials={"<bos>": 300})
    with pytest.raises(ValueError, match="add_dummy_prefix needs split_rule 0"):
        Tokenizer(merges=[], specials={}, add_dummy_prefix=True, split_rule=1)


def test_vocab_dump_lists_every_token(tok):
    lines = tok.vocab_dump().splitlines()
    assert len(lines) == len(tok)
    assert lines[ord("a")].split() == ["97", "'a'"]
    assert lines[tok.bos_id].split() == [str(tok.bos_id), "'<bos>'", "special"]
    assert "(rank 0)" in lines[256] and repr(tok.vocab[256].decode()) in lines[256]


# ---- character vocabularies -----------------------------------------------------------------

def test_character_vocabulary_layout():
    tok = Tokenizer.train_chars("abracadabra “ok”", 9)    # a fallback, 4 characters, 4 specials
    # the 4 most frequent, ties in byte order: a 5, b 2, r 2, then " " first of the single ones
    assert tok.vocab[:5] == [b"\xff", b" ", b"a", b"b", b"r"] and not tok.merges
    assert list(tok.specials) == list(SPECIALS) and sorted(tok.specials.values()) == [5, 6, 7, 8]
    assert tok.encode("ab z") == [2, 3, 1, 0]
    assert tok.encode("é") == [0, 0]          # one fallback per byte of a missing character
    assert Tokenizer.train_chars("“ab”", 9).char_ids == {"“".encode(): 3, "”".encode(): 4}


def test_character_vocabulary_encodes_and_decodes():
    tok = Tokenizer.train_chars(CORPUS, 40)
    assert len(tok) == 40
    kept = b"".join(tok.vocab[1:36]).decode()
    for text in [kept, kept[::-1] * 2, "the cat", ""]:
        assert tok.decode(tok.encode(text)) == text
    # every token is one character or one byte, so bits per byte count each byte once
    ids = tok.encode("日本 the")
    assert sum(len(tok.vocab[i]) for i in ids) == len("日本 the".encode())
    assert tok.decode(ids) == "\ufffd" * 6 + " the"
    everything = Tokenizer.train_chars(CORPUS, len(set("".join(CORPUS))) + 5)
    text = "".join(CORPUS)
    assert everything.decode(everything.encode(text)) == text
    assert len(everything.encode(text)) == len(text)


def test_character_vocabulary_sizes_and_kinds():
    with pytest.raises(ValueError, match=r"from 6 to 8 tokens \(its 3 characters, a fallback "
                                         r"and 4 special tokens\), not 9"):
        Tokenizer.train_chars("abcabc", 9)
    with pytest.raises(ValueError, match="from 6 to"):
        Tokenizer.train_chars("abcabc", 5)
    assert len(train_tokenizer(CORPUS, 32)) == 32 and not train_tokenizer(CORPUS, 32).merges
    assert len(train_tokenizer(CORPUS, 260).merges) == 0 and train_tokenizer(CORPUS, 300).merges
    assert not train_tokenizer(CORPUS, 40, "char").merges
    with pytest.raises(ValueError, match="at least 260"):
        train_tokenizer(CORPUS, 64, "bpe")
    with pytest.raises(ValueError, match="one of auto, bpe, char"):
        train_tokenizer(CORPUS, 64, "words")


def test_character_vocabulary_file_round_trip(tmp_path):
    tok = Tokenizer.train_chars(CORPUS, 48)
    tok.save(tmp_path / "tok.json")
    loaded = Tokenizer.load(tmp_path / "tok.json")
    assert loaded.vocab == tok.vocab and loaded.byte_ids == tok.byte_ids
    assert all(loaded.encode(t) == tok.encode(t) for t in CORPUS)
