"""tinylm: train tiny Llama-style language models in pure NumPy, distill them from a big
teacher, quantize them, and run them in C on a microcontroller.

The package is laid out as that pipeline, one sub-package (a room) per stage, read top to
bottom; a room imports only the rooms above it (tests/test_layout.py keeps it so):

    core/          the transformer: ops with their backward, model, optimizer, gradient check
    text/          the byte-level BPE tokenizer, documents and batches
    training/      the training loop, checkpoints, evaluation, generation
    distillation/  a teacher's predictions taught to a student (the teacher: package `teacher`)
    export/        the .bin file, quantization, llama2.c models
    runtime/       the C runtime and its integer arithmetic in NumPy
    boards/        memory plans, flashing, serial chat, emulated microcontrollers
    search/        the best models for a board: an Optuna study, speed by a cost model
    cli/           the `tinylm` command

Functions live in the modules named after what they do (tinylm.training.loop.train,
tinylm.training.generate.generate); the names below are the ones most programs start from.
"""
from .core.config import ModelConfig
from .core.model import KVCache, Transformer
from .text.tokenizer import Tokenizer
from .training.checkpoint import load_checkpoint, load_model, save_checkpoint

__all__ = ["KVCache", "ModelConfig", "Tokenizer", "Transformer", "load_checkpoint", "load_model",
           "save_checkpoint"]
