"""Pre-splitting: cut text into chunks before BPE, so that no token spans two words.

The rules work on UTF-8 bytes with ASCII classes only, so that a short C function on the
device reproduces them exactly, without Unicode tables. Rule version 1 knows four classes:

    letter  A-Z a-z, the apostrophe ', and every byte >= 0x80
            (so that words like don't, and UTF-8 characters, stay whole)
    digit   0-9
    space   the six ASCII whitespace bytes: space, \\t \\n \\v \\f \\r
    other   every other byte (punctuation, symbols, control bytes)

    1. A maximal run of letters, of digits, or of others is a chunk, together with a single
       space (0x20) directly in front of it, if there is one.
    2. Whitespace not taken by rule 1 forms one chunk per maximal run.

So "Hi  Lily's cat,\\n 42!" splits into "Hi", " ", " Lily's", " cat", ",", "\\n", " 42", "!".

Rule version 0 is no pre-splitting: the whole text is one chunk (llama2.c vocabularies).
docs/tokenizer.md has the same rules, more examples and a reference loop.
"""
from __future__ import annotations

import re

SPLIT_RULES = (0, 1)

_RULE_1 = re.compile(
    rb" ?[A-Za-z'\x80-\xff]+"                  # letters
    rb"| ?[0-9]+"                              # digits
    rb"| ?[^A-Za-z'0-9\x80-\xff \t\n\v\f\r]+"  # others
    rb"|[ \t\n\v\f\r]+(?= [^ \t\n\v\f\r])"     # whitespace leaving its last space to rule 1
    rb"|[ \t\n\v\f\r]+"                        # any other whitespace run
)


def split(data: bytes, rule: int) -> list[bytes]:
    """Chunks of `data` under split rule version `rule`; joined they give `data` back."""
    if rule == 0:
        return [data] if data else []
    if rule == 1:
        return _RULE_1.findall(data)
    raise ValueError(f"unknown split rule version {rule}; known versions are {SPLIT_RULES}")
