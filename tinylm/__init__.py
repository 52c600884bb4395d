"""tinylm: train tiny Llama-style language models in pure NumPy.

The functions live in the modules named after them (tinylm.train.train,
tinylm.generate.generate, tinylm.evaluate.evaluate), so that those names stay the modules'.
"""
from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .config import ModelConfig
from .model import KVCache, Transformer
from .tokenizer import Tokenizer

__all__ = ["KVCache", "ModelConfig", "Tokenizer", "Transformer", "load_checkpoint", "load_model",
           "save_checkpoint"]
