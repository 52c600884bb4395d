# %% [markdown]
# # Lesson 1: bytes and byte-pair encoding
#
# A language model reads numbers, not letters. tinylm turns text into numbers in three steps
# (tinylm/text/): the UTF-8 bytes of the text (256 possible values, so any text works), cut
# into chunks at word boundaries, then byte pairs merged into new tokens, most frequent first.
# Here we learn the first merges by hand, check them against the library's `learn_merges`,
# and look at what a trained tokenizer does to a sentence.
#
#     python examples/01_bytes_and_bpe.py

# %%
from collections import Counter

from tinylm.text.bpe import count_chunks, learn_merges
from tinylm.text.corpus import make_stories
from tinylm.text.pretokenize import split
from tinylm.text.tokenizer import Tokenizer

from course import picture

# %% [markdown]
# ## Bytes
# ASCII letters are one byte each; other characters take two to four. A byte-level
# tokenizer never meets a character it cannot write down.

# %%
for word in ["cat", "café", "猫"]:
    print(f"{word!r:8} -> bytes {list(word.encode('utf-8'))}")

# %% [markdown]
# ## Chunks
# Before merging, text is cut into chunks (a word with the space before it, a number, a run
# of punctuation), so no token ever spans two words: "the cat" and "the catalogue" share
# " cat" only as the start of a word (tinylm/text/pretokenize.py).

# %%
stories = make_stories(500)
print(stories[0][:90])
print(split(stories[0][:90].encode(), 1))

# %% [markdown]
# ## Merging by hand
# Count every adjacent pair of tokens in every chunk (a chunk that occurs 50 times counts 50
# times), merge the most frequent pair into a new token 256, 257, ... everywhere, repeat.
# Ties go to the smallest pair, as in the library, so the result is deterministic.

# %%
chunk_counts = count_chunks((story.encode() for story in stories), split_rule=1)
chunks = {chunk: list(chunk) for chunk in chunk_counts}        # each chunk as byte ids


def merge(ids, pair, new_id):
    """ids with every occurrence of pair, from left to right, replaced by new_id."""
    out, i = [], 0
    while i < len(ids):
        if ids[i:i + 2] == list(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


vocab = {i: bytes([i]) for i in range(256)}      # token id -> the bytes it stands for
hand_merges = []
for step in range(12):
    pairs = Counter()
    for chunk, ids in chunks.items():
        for pair in zip(ids, ids[1:]):
            pairs[pair] += chunk_counts[chunk]
    best = min(pairs, key=lambda pair: (-pairs[pair], pair))
    new_id = 256 + step
    vocab[new_id] = vocab[best[0]] + vocab[best[1]]
    hand_merges.append(best)
    chunks = {chunk: merge(ids, best, new_id) for chunk, ids in chunks.items()}
    print(f"merge {step:2}: {vocab[best[0]]!r:8} + {vocab[best[1]]!r:8} -> {new_id} "
          f"{vocab[new_id]!r:10} seen {pairs[best]:,} times")

# The library keeps the counts up to date instead of recounting (tinylm/text/bpe.py), and
# must find the same merges.
assert learn_merges(chunk_counts, 12) == hand_merges
print("learn_merges finds the same 12 merges")

# %% [markdown]
# ## A trained tokenizer
# `Tokenizer.train` does the same up to a vocabulary size, then adds special tokens such as
# `<bos>` (beginning of a text). Encoding applies the learned merges, earliest first.

# %%
tokenizer = Tokenizer.train(stories, vocab_size=512)
sentence = "Once upon a time, Lily found a shiny shell at the beach."
ids = tokenizer.encode(sentence)
print(f"{len(sentence.encode())} bytes -> {len(ids)} tokens:")
print(" | ".join(tokenizer.vocab[i].decode() for i in ids))
assert tokenizer.decode(ids) == sentence            # nothing is lost
assert len(ids) < len(sentence.encode()) / 2        # and text is much shorter in tokens

# %% [markdown]
# ## The merge tree of a token
# Every token but the 256 bytes is two earlier tokens joined. The longest token of the
# sentence, taken apart merge by merge:

# %%
parts = {new: pair for pair, (_, new) in tokenizer.merges.items()}
longest = max(ids, key=lambda i: len(tokenizer.vocab[i]))


def show_tree(token, depth=0):
    print("    " * depth + f"{token:4} {tokenizer.vocab[token].decode()!r}")
    for part in parts.get(token, ()):
        show_tree(part, depth + 1)


show_tree(longest)


def draw_tree(figure):
    axes = figure.subplots()
    leaves = []                      # x of each byte, left to right

    def place(token, depth):         # returns the node's x; children below their parent
        if token not in parts:
            leaves.append(token)
            x = len(leaves) - 1
        else:
            xs = [place(part, depth + 1) for part in parts[token]]
            x = sum(xs) / 2
            for child_x in xs:
                axes.plot([x, child_x], [-depth, -depth - 1], color="gray")
        axes.text(x, -depth, repr(tokenizer.vocab[token].decode()), ha="center",
                  va="center", bbox={"facecolor": "white", "edgecolor": "steelblue"})
        return x

    place(longest, 0)
    axes.set_title(f"token {longest}: how merges build it from bytes")
    axes.set_axis_off()


picture("01_merge_tree.png", draw_tree)

# %% [markdown]
# ## Exercises
# 1. `examples/exercises/01_encode.py`: encode a chunk with a list of merges, the slow and
#    simple way; its check compares you with `Tokenizer.encode_bytes`.
# 2. Train tokenizers of 300, 512 and 800 tokens: how do bytes per token change?
# 3. Why must encoding apply merges in the order they were learned, not left to right?
