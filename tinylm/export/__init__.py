"""Model files: the .bin format, quantization, and importing llama2.c models.

binformat.py (writing and reading the .bin the C runtime runs, docs/format.md), quantize.py
(int8 and int4 groups, their error), llama2c.py (llama2.c's model and tokenizer as a
checkpoint). Imports core, text and training.
"""
