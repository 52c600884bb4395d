"""Cross-tokenizer projection (tinylm/distillation/projection.py) on vocabularies small
enough to check by hand: exact when the tokenizers coincide, conditioning inside a teacher
token, and chaining the teacher's predictions when a student token is longer than the
teacher's."""
import numpy as np
import pytest

from tinylm.distillation.projection import Projector, continuations
from tinylm.distillation.targets import Piece, TeacherVocab
from tinylm.text.corpus import make_stories
from tinylm.text.tokenizer import Tokenizer


def approx(expected):
    """Teacher log-probs are stored as float16: three significant digits."""
    return pytest.approx(expected, rel=2e-3)


def piece(tokens, rows, vocab, prefix=0):
    """A piece whose teacher predictions are `rows`: one {token id: probability} per position."""
    k = max(len(r) for r in rows)
    ids = np.zeros((len(rows), k), np.int32)
    logprobs = np.full((len(rows), k), -np.inf, np.float16)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = list(row)
        logprobs[i, :len(row)] = np.log(list(row.values()))
    text = b"".join(vocab.token_bytes[t] for t in tokens)[prefix:]
    return Piece("text", 0, prefix, text, None, np.array(tokens, np.int32), ids, logprobs)


def as_dict(student_ids, logprobs):
    return {int(u): float(np.exp(lp)) for u, lp in zip(student_ids, logprobs) if np.isfinite(lp)}


def hand_tokenizer(words):
    """Bytes, then merges building each word left to right, then <bos> and <eos>."""
    merges, ids = [], {bytes([b]): b for b in range(256)}
    for word in words:
        for n in range(2, len(word) + 1):
            if word[:n] not in ids:
                ids[word[:n]] = 256 + len(merges)
                merges.append((ids[word[:n - 1]], ids[word[n - 1:n]], ids[word[:n]], len(merges)))
    n = 256 + len(merges)
    return Tokenizer(merges, {"<bos>": n, "<eos>": n + 1}), ids


def test_identical_tokenizers_give_the_teacher_distribution_back():
    stories = make_stories(40)
    tokenizer = Tokenizer.train(stories, 400)
    specials = set(tokenizer.specials.values())
    vocab = TeacherVocab([None if i in specials else b for i, b in enumerate(tokenizer.vocab)],
                         [tokenizer.bos_id], dummy_prefix=False)
    rng = np.random.default_rng(0)
    k = 6
    for text in stories[:3]:
        tokens = tokenizer.encode(text)
        rows = []
        for _ in range(len(tokens) + 1):    # k random distinct ids, <bos> among them sometimes
            ids = rng.choice(len(tokenizer) - 4, size=k, replace=False)
            if rng.random() < 0.3:
                ids[0] = tokenizer.bos_id
            rows.append(dict(zip(ids.tolist(), rng.dirichlet(np.ones(k + 1))[:k])))
        p = piece(tokens, rows, vocab)
        shares = continuations([p], vocab, tokenizer)   # never needed: every event decides
        student_ids, soft_ids, soft_logprobs = Projector(vocab, tokenizer, k, shares).project(
            p, tokenizer.bos_id)
        assert student_ids.tolist() == tokens
        for i in range(len(rows)):
            expected = as_dict(p.topk_ids[i], p.topk_logprobs[i].astype(np.float64))
            got = as_dict(soft_ids[i], soft_logprobs[i])
            assert got.keys() == expected.keys()
            for u in got:
                assert got[u] == pytest.approx(expected[u], rel=1e-12)


def test_inside_a_teacher_token_condition_on_the_bytes_already_seen():
    # teacher: whole words; student: " c", " ca", ... so " cat" is three student steps at most
    words = [b" cat", b" car", b" dog"]
    vocab = TeacherVocab([bytes([b]) for b in range(256)] + words + [None], [259],
                         dummy_prefix=False)
    cat, car, dog = 256, 257, 258
    student, ids = hand_tokenizer([b" ca", b" do"])
    rows = [{cat: 0.5, car: 0.3, dog: 0.15}, {259: 1.0}]   # then the end of the text
    projected = Projector(vocab, student, 8).project(piece([cat], rows, vocab), student.bos_id)
    student_ids, soft_ids, soft_logprobs = projected
    assert [student.vocab[i] for i in student_ids] == [b" ca", b"t"]
    # before " ca": the three events decide " ca", " ca", " do"; the tail 0.05 stays unassigned
    first = as_dict(soft_ids[0], soft_logprobs[0])
    assert first == approx({ids[b" ca"]: 0.8, ids[b" do"]: 0.15})
    # after " ca": of the words that start " ca" (mass 0.8), " cat" 0.5 goes on with "t"
    second = as_dict(soft_ids[1], soft_logprobs[1])
    assert second == approx({ids[b"t"]: 0.5 / 0.8, ids[b"r"]: 0.3 / 0.8})
    assert as_dict(soft_ids[2], soft_logprobs[2]) == approx({student.bos_id: 1.0})


def test_a_longer_student_token_chains_the_teacher_predictions():
    # teacher: bytes only; student: " cat" in one token
    vocab = TeacherVocab([bytes([b]) for b in range(256)] + [None], [256], dummy_prefix=False)
    student, ids = hand_tokenizer([b" cat"])
    t = {c: ord(c) for c in " catdo"}
    rows = [{t[" "]: 0.9, t["d"]: 0.1},
            {t["c"]: 0.6, t["d"]: 0.4},
            {t["a"]: 0.5, t["o"]: 0.5},
            {t["t"]: 0.8, 256: 0.2},
            {256: 1.0}]
    tokens = [t[" "], t["c"], t["a"], t["t"]]
    student_ids, soft_ids, soft_logprobs = Projector(vocab, student, 8).project(
        piece(tokens, rows, vocab), student.bos_id)
    assert [student.vocab[i] for i in student_ids] == [b" cat"]
    got = as_dict(soft_ids[0], soft_logprobs[0])
    # " cat": 0.9 * 0.6 * 0.5 * 0.8. " ca" then the end: 0.9 * 0.6 * 0.5 * 0.2. " co": the
    # first token of b" co" is " c". " d": the first token is " ". "d" from the start: "d".
    assert got == approx({ids[b" cat"]: 0.216, ids[b" ca"]: 0.054,
                                 ids[b" c"]: 0.9 * 0.6 * 0.5, ids[b" "]: 0.9 * 0.4,
                                 ids[b"d"]: 0.1})
    assert sum(got.values()) == approx(1.0)


def test_a_dummy_prefix_space_is_part_of_the_first_teacher_token():
    words = [b" Once", b" One"]
    vocab = TeacherVocab([bytes([b]) for b in range(256)] + words + [None], [258],
                         dummy_prefix=True)
    student, ids = hand_tokenizer([b"Once", b"One"])
    rows = [{256: 0.7, 257: 0.2, ord(" "): 0.1}, {258: 1.0}]
    student_ids, soft_ids, soft_logprobs = Projector(vocab, student, 4).project(
        piece([256], rows, vocab, prefix=1), student.bos_id)
    assert [student.vocab[i] for i in student_ids] == [b"Once"]
    # p = " " (the dummy space): " Once" and " One" cover it (0.9); a bare " " ends at c
    assert as_dict(soft_ids[0], soft_logprobs[0]) == approx(
        {ids[b"Once"]: 0.7 / 1.0, ids[b"One"]: 0.2 / 1.0})


def test_no_covering_teacher_token_falls_back_to_the_hard_label():
    vocab = TeacherVocab([bytes([b]) for b in range(256)] + [b" cat", b" dog", None], [258],
                         dummy_prefix=False)
    student, ids = hand_tokenizer([b" ca"])
    rows = [{257: 1.0}, {258: 1.0}]       # the teacher was sure of " dog", the text has " cat"
    _, soft_ids, soft_logprobs = Projector(vocab, student, 4).project(
        piece([256], rows, vocab), student.bos_id)
    assert as_dict(soft_ids[1], soft_logprobs[1]) == {ids[b"t"]: 1.0}   # inside " cat": label


def test_undecided_mass_off_the_path_is_shared_as_the_corpus_continues_or_left_to_rest():
    # teacher: bytes only; student: " cat". The text is "x"; the teacher also thought of " ",
    # after which the student might write " ", " c", " ca" or " cat": the teacher cannot say.
    vocab = TeacherVocab([bytes([b]) for b in range(256)] + [None], [256], dummy_prefix=False)
    student, ids = hand_tokenizer([b" cat"])
    rows = [{ord("x"): 0.6, ord(" "): 0.4}, {256: 1.0}]
    p = piece([ord("x")], rows, vocab)
    # the corpus: after the teacher's " ", the student wrote " cat" three times and " " once
    corpus = [piece(list(text), [{256: 1.0}] * (len(text) + 1), vocab)
              for text in (b" cat", b" cat", b" cat", b" x")]
    shares = continuations(corpus, vocab, student)
    assert shares[b" ", b" "] == {ids[b" cat"]: 3, ids[b" "]: 1}
    assert shares[b" ca", b"a"] == {ids[b" cat"]: 3}
    _, soft_ids, soft_logprobs = Projector(vocab, student, 8, shares).project(p, student.bos_id)
    assert as_dict(soft_ids[0], soft_logprobs[0]) == approx({
        ids[b"x"]: 0.6, ids[b" "]: 0.4 * 1 / 4, ids[b" cat"]: 0.4 * 3 / 4})
    # a corpus that never has (" ", " "), or no continuations at all: left to "rest"
    for shares in (continuations([piece(list(b"xx"), [{256: 1.0}] * 3, vocab)], vocab, student),
                   None):
        _, soft_ids, soft_logprobs = Projector(vocab, student, 8, shares).project(
            p, student.bos_id)
        assert as_dict(soft_ids[0], soft_logprobs[0]) == approx({ids[b"x"]: 0.6})
