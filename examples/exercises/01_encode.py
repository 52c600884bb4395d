"""Exercise 1: encode a chunk with BPE merges, the slow and simple way (lesson 1).

Start from the chunk's bytes. While some adjacent pair of tokens has a merge, take the pair
whose merge was learned first (the lowest index in `merges`; pair i becomes token 256 + i)
and replace each of its occurrences, left to right. The library gets the same result faster
(Tokenizer._merge_chunk); the check compares you with it on 50 stories.

    python examples/exercises/01_encode.py              # check yours
    python examples/exercises/01_encode.py --solution   # check solutions/01_encode.py
"""
from exercise import run_check

from tinylm.text.corpus import make_stories
from tinylm.text.pretokenize import split
from tinylm.text.tokenizer import Tokenizer


def encode(chunk: bytes, merges: list[tuple[int, int]]) -> list[int]:
    """The token ids of one chunk."""
    raise NotImplementedError("fill in encode() in examples/exercises/01_encode.py")


def check(encode) -> None:
    tokenizer = Tokenizer.train(make_stories(300), 400)
    merges = [pair for pair, _ in sorted(tokenizer.merges.items(), key=lambda m: m[1])]
    for story in make_stories(50, seed=1):
        for chunk in split(story.encode(), 1):
            expected = tokenizer.encode_bytes(chunk)
            got = encode(chunk, merges)
            assert got == expected, f"{chunk!r} should be {expected}, encode gave {got}"


if __name__ == "__main__":
    run_check(check)
