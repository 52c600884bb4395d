"""tinylm: train tiny Llama-style language models in pure NumPy.

The functions live in the modules named after them (tinylm.train.train,
tinylm.generate.generate, tinylm.evaluate.evaluate), so that those names stay the modules'.
"""
from .core.config import ModelConfig
from .core.model import KVCache, Transformer
from .text.tokenizer import Tokenizer
from .training.checkpoint import load_checkpoint, load_model, save_checkpoint

__all__ = ["KVCache", "ModelConfig", "Tokenizer", "Transformer", "load_checkpoint", "load_model",
           "save_checkpoint"]
