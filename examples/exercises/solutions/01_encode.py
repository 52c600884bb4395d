"""A solution of examples/exercises/01_encode.py."""


def encode(chunk: bytes, merges: list[tuple[int, int]]) -> list[int]:
    rank = {pair: i for i, pair in enumerate(merges)}
    ids = list(chunk)
    while True:
        pairs = [pair for pair in zip(ids, ids[1:]) if pair in rank]
        if not pairs:
            return ids
        first = min(pairs, key=rank.get)
        merged, i = [], 0
        while i < len(ids):
            if tuple(ids[i:i + 2]) == first:
                merged.append(256 + rank[first])
                i += 2
            else:
                merged.append(ids[i])
                i += 1
        ids = merged
