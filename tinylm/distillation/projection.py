"""Cross-tokenizer targets: a teacher's next-token predictions moved onto the student's vocabulary.

The teacher predicts its own tokens; the student, reading the same text in its own tokens,
needs at each of its positions a distribution over *its* next token. docs/distillation.md
derives the method; in short, at a student position whose next token starts at byte c:

  1. Find the teacher token that covers byte c, starting at byte a <= c, and the teacher's
     prediction q for the token at a. The student has already seen the bytes p = text[a:c].
  2. Each predicted teacher token v whose bytes start with p says: with probability q(v), the
     text continues from c with r = bytes(v)[len(p):]. Conditioned on p, these events have
     total mass Z = sum of their q (Z = 1 when p is empty).
  3. An event decides the student's next token when no student token could grow past r into
     bytes the event does not know: the token is then the student token r, or the first
     token of r's encoding. A student token r + x could still come unless the teacher's own
     token bytes(v) + x exists: then the teacher gave that token its own probability, and v
     means "not that".
  4. An undecided event on the text's actual path is extended by the teacher's next prediction
     (r + bytes(v') with probability q(v) q'(v')), and again, until decided. The teacher says
     nothing beyond the actual path, so other undecided events are either shared among the
     student tokens they may start with, as the two tokenizations of the corpus continue each
     other (`continuations`, `split`), or left, like the teacher's tail beyond its top k, to
     the KD loss's "rest" outcome (ops.kd_loss_forward).
  5. P(student token u) = (mass decided for u) / Z; the top k of these are kept. A teacher end
     token (<eos>, end of turn) at c predicts the student's end of text.

When the tokenizers coincide, p is always empty, every event decides at once (step 3: the
teacher has every token the student has) and P = q exactly. Where nothing decides (no teacher
token covers p), the position falls back to the hard label.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from ..text.tokenizer import Tokenizer
from .targets import Piece, TeacherVocab


class Projector:
    def __init__(self, vocab: TeacherVocab, student: Tokenizer, k: int, continuations=None):
        """continuations: `continuations(...)` of the corpus, to share undecided mass (see
        `split`); None leaves that mass to the loss's "rest"."""
        if student.add_dummy_prefix:
            raise ValueError("projection needs a student tokenizer without a dummy prefix")
        self.teacher_bytes = vocab.token_bytes
        self.end_ids = set(vocab.end_ids)
        self.teacher_tokens = {b for b in vocab.token_bytes if b}
        self.student, self.k = student, k
        specials = set(student.specials.values())
        self.student_ids = {}   # bytes -> student token (the first, if several share bytes)
        for i, piece in enumerate(student.vocab):
            if i not in specials:
                self.student_ids.setdefault(piece, i)
        self.longer = defaultdict(list)   # bytes r -> every x such that r + x is a student token
        for piece in self.student_ids:
            for n in range(1, len(piece)):
                self.longer[piece[:n]].append(piece[n:])
        self.continuations = continuations
        self._decided, self._splits = {}, {}

    def decide(self, r: bytes, last: bytes) -> int | None:
        """Step 3: the student's next token if the text continues with r, whose last teacher
        token has bytes `last`; None if undecided."""
        key = (r, last)
        if key not in self._decided:
            if any(last + x not in self.teacher_tokens for x in self.longer.get(r, ())):
                self._decided[key] = None
            else:
                self._decided[key] = self.first_token(r)
        return self._decided[key]

    def split(self, r: bytes, last: bytes) -> list[tuple[int, float]]:
        """An undecided event's mass, shared among the student tokens the text may then start
        with (r's first token, or a longer r + x that the teacher did not rule out) in
        proportion to how often the corpus has each after the same (r, last); [] without
        continuations, or when the corpus never has (r, last)."""
        if self.continuations is None:
            return []
        key = (r, last)
        if key not in self._splits:
            seen = self.continuations.get(key, Counter())
            candidates = sorted({self.first_token(r)} | {
                self.student_ids[r + x] for x in self.longer.get(r, ())
                if last + x not in self.teacher_tokens})
            weights = np.array([seen[u] for u in candidates], np.float64)
            total = weights.sum()
            self._splits[key] = [(u, w / total) for u, w in zip(candidates, weights)
                                 if w > 0] if total else []
        return self._splits[key]

    def first_token(self, r: bytes) -> int:
        return self.student_ids[r] if r in self.student_ids else self.student.encode_bytes(r)[0]

    def project(self, piece: Piece, end_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The piece's text in student tokens (m ids), and at each of the m + 1 student
        positions (before each token, and after the last, which predicts `end_id`) the top-k
        student ids and log-probs (-inf in unused slots)."""
        text = piece.text
        ids = self.student.encode_bytes(text)
        starts = np.cumsum([0] + [len(self.student.vocab[i]) for i in ids]) + piece.prefix
        Y = b" " * piece.prefix + text            # the teacher's bytes: dummy space, then text
        spans = np.cumsum([0] + [len(self.teacher_bytes[t] or b"") for t in piece.tokens])
        probs = np.exp(piece.topk_logprobs.astype(np.float64))
        out_ids = np.zeros((len(ids) + 1, self.k), np.int64)
        out_logprobs = np.full((len(ids) + 1, self.k), -np.inf)
        for i, c in enumerate(starts):
            j = int(np.searchsorted(spans, c, side="right")) - 1
            masses = self._position(piece, probs, j, Y[spans[j]:c], end_id)
            label = ids[i] if i < len(ids) else end_id
            best = sorted(masses.items(), key=lambda item: -item[1])[:self.k] or [(label, 1.0)]
            for slot, (u, mass) in enumerate(best):
                out_ids[i, slot], out_logprobs[i, slot] = u, np.log(mass)
        return np.array(ids, np.int64), out_ids, out_logprobs

    def _position(self, piece, probs, j, p: bytes, end_id) -> dict[int, float]:
        """Steps 2-5 at one student position: student token -> probability."""
        masses = defaultdict(float)
        actual = piece.tokens[j] if j < len(piece.tokens) else None   # None: the text's end
        covered = 0.0
        for v, q in zip(piece.topk_ids[j], probs[j]):
            if v in self.end_ids:
                if not p:
                    masses[end_id] += q
                    covered += q
                continue
            token = self.teacher_bytes[v]
            if token is None or not token.startswith(p):
                continue
            covered += q
            if len(token) > len(p):   # else v ends at c, and what follows it is unknown
                self._attribute(piece, probs, token[len(p):], q, token, v == actual, j, masses)
        Z = 1.0 if not p else covered
        return {u: m / Z for u, m in masses.items() if m > 0} if Z > 0 else {}

    def _attribute(self, piece, probs, r, mass, last, on_path, j, masses):
        """Step 3, step 4 for an undecided event on the actual path, else `split`."""
        u = self.decide(r, last)
        if u is not None:
            masses[u] += mass
            return
        if not on_path or j + 1 >= len(piece.topk_ids):
            for u, share in self.split(r, last):
                masses[u] += mass * share
            return
        actual = piece.tokens[j + 1] if j + 1 < len(piece.tokens) else None
        for v, q in zip(piece.topk_ids[j + 1], probs[j + 1]):
            if v in self.end_ids:          # the text ends after r: nothing can grow it
                masses[self.first_token(r)] += mass * q
            elif self.teacher_bytes[v] is not None:
                token = self.teacher_bytes[v]
                self._attribute(piece, probs, r + token, mass * q, token, v == actual, j + 1,
                                masses)


def continuations(pieces, vocab: TeacherVocab, student: Tokenizer) -> dict[tuple, Counter]:
    """How the student's tokens continue where the teacher's end, counted over the corpus: for
    every student token u, starting at byte c, and every teacher token boundary e after c up to
    the first one at or beyond u's end, (text[c:e], the teacher token that ends at e) -> u.
    `split` reads it as "after this teacher token, the student's token was u this often"."""
    counts = defaultdict(Counter)
    for piece in pieces:
        ids = student.encode_bytes(piece.text)
        starts = np.cumsum([0] + [len(student.vocab[i]) for i in ids]) + piece.prefix
        teacher_bytes = [vocab.token_bytes[t] or b"" for t in piece.tokens]
        ends = np.cumsum([len(b) for b in teacher_bytes])
        text = b" " * piece.prefix + piece.text
        for u, c, u_end in zip(ids, starts, starts[1:]):
            for j in range(int(np.searchsorted(ends, c, side="right")), len(ends)):
                counts[text[c:ends[j]], teacher_bytes[j]][u] += 1
                if ends[j] >= u_end:
                    break
    return counts
