"""Training a model: the loop, checkpoints, progress, evaluation and generation.

loop.py (train and resume), checkpoint.py (the .npz a run saves and loads), progress.py (the
bar, metrics.jsonl, loss.png), evaluate.py (nats per token, bits per byte), generate.py
(sampling text from a float model). Imports core and text.
"""
