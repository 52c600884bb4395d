"""The teaching core: a Llama-style transformer in NumPy, forward and backward written by hand.

config.py (the shape), ops.py (each op's forward and backward side by side), model.py (the
transformer built from them), optim.py (AdamW, clipping, the learning-rate schedule),
gradcheck.py (finite differences that check every backward), threads.py (BLAS threads),
memory.py (freed memory kept for the next training step).
Imports NumPy and nothing else of tinylm.
"""
