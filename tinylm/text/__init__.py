"""Text into tokens: pre-tokenizing, byte-level BPE, the tokenizer, documents and batches.

pretokenize.py (where merges may not cross), bpe.py (learning merges), tokenizer.py (encode,
decode, specials, chat turns; character vocabularies below 260 tokens), data.py (files into
documents, token files, batches), chat_data.py (prompt/reply pairs from JSON lines or
`datasets`), corpus.py (the demo's built-in stories and questions). Imports core only.
"""
