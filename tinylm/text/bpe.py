"""Byte-pair encoding training: learn which adjacent token pairs to merge into new tokens.

Text is pre-split into chunks (see pretokenize.py) and every distinct chunk is counted once.
Each chunk starts as its bytes (token ids 0..255); every step merges the most frequent
adjacent pair, counted over all chunks, into a new token id 256, 257, ...

Recounting all pairs after each merge would cost O(text) per step. Instead the pair counts
are kept up to date: a merge only touches the chunks that contain the merged pair, found
through an index pair -> chunks. The most frequent pair comes from a heap whose entries may
be out of date; an outdated entry is corrected when it reaches the top ("lazy deletion").
Ties go to the smallest pair of ids, so training is deterministic.
"""
from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable

from .pretokenize import split


def count_chunks(texts: Iterable[bytes], split_rule: int) -> Counter[bytes]:
    """How often each distinct chunk occurs in `texts`."""
    counts = Counter()
    for text in texts:
        counts.update(split(text, split_rule))
    return counts


def learn_merges(chunk_counts: dict[bytes, int], n_merges: int) -> list[tuple[int, int]]:
    """Up to `n_merges` pairs, in the order learned; pair i becomes token 256 + i.

    Returns fewer pairs when the chunks run out of pairs (every chunk is one token).
    """
    chunks = [list(chunk) for chunk in chunk_counts]
    weights = list(chunk_counts.values())
    pair_counts = defaultdict(int)
    chunks_with = defaultdict(set)  # pair -> indices of chunks that contain it (or once did)
    for index, (chunk, weight) in enumerate(zip(chunks, weights)):
        for pair in zip(chunk, chunk[1:]):
            pair_counts[pair] += weight
            chunks_with[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges = []
    while heap and len(merges) < n_merges:
        negative_count, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -negative_count:  # out of date: counts only fall, so re-queue and go on
            if count > 0:
                heapq.heappush(heap, (-count, pair))
            continue
        new_id = 256 + len(merges)
        merges.append(pair)
        new_pairs = set()
        for index in chunks_with.pop(pair):
            chunk, weight = chunks[index], weights[index]
            merged = _merge(chunk, pair, new_id)
            if len(merged) == len(chunk):
                continue  # the pair was merged away by an earlier merge
            for old in zip(chunk, chunk[1:]):
                pair_counts[old] -= weight
            for new in zip(merged, merged[1:]):
                pair_counts[new] += weight
                if new_id in new:
                    chunks_with[new].add(index)
                    new_pairs.add(new)
            chunks[index] = merged
        del pair_counts[pair]
        for new in new_pairs:  # only pairs with the new token can have grown
            heapq.heappush(heap, (-pair_counts[new], new))
    return merges


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """`ids` with every occurrence of `pair`, from left to right, replaced by `new_id`."""
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged
