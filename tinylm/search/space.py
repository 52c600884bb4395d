"""What is searched: the five factors of the seeds' architecture study (width, depth, query and
key/value heads, FFN width, vocabulary) and the weights' bits, as Optuna parameters; and the
checks on a shape that need no data.

    dim         DIMS, the residual stream's width
    n_layers    1 to 6
    n_heads     HEADS; each head is dim / n_heads wide, which RoPE needs even
    kv_sharing  query heads per key/value head (grouped-query attention), KV_SHARING: the
                key/value heads are n_heads // kv_sharing, at least 1
    ffn_ratio   FFN_RATIOS: the SwiGLU's hidden width is ffn_ratio * dim, rounded up to 4
    vocab_size  vocab_choices(): characters below 260 tokens, byte-level BPE from 260
    bits        8 or 4 (`tinylm quantize --bits`)
    lr          LEARNING_RATES, the peak learning rate of the candidate's training: not a part
                of the model, but the best one depends on the shape (at 600 steps tiny
                models learn best at several times the rate of larger ones), so one fixed rate
                would favour the shapes it happens to suit

A parameter is sampled as a choice among a few values spread over a wide range (doubling
steps, as in the seeds' study), so that Optuna's samplers see the same few values again and
learn which work.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..core.config import ModelConfig, hidden_width
from ..text.tokenizer import SMALLEST_BPE

DIMS = (2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128)
LAYERS = (1, 6)
HEADS = (1, 2, 4, 8)
KV_SHARING = (1, 2, 4)
FFN_RATIOS = (1, 2, 3, 4, 6, 8, 16, 32)
CHAR_VOCABS = (32, 48, 64, 96, 128, 192, 256)
BPE_VOCABS = (288, 320, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
BITS = (8, 4)
LEARNING_RATES = (0.003, 0.006, 0.012, 0.024, 0.048)
DEFAULT_LR = 0.003          # a candidate trained outside a search (the reference models)


@dataclass(frozen=True)
class Shape:
    """A candidate model: its shape and the bits of its weights."""
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    hidden_dim: int
    bits: int

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def tokenizer(self) -> str:
        return "char" if self.vocab_size < SMALLEST_BPE else "bpe"

    def config(self, seq_len: int) -> ModelConfig:
        return ModelConfig(vocab_size=self.vocab_size, dim=self.dim, n_layers=self.n_layers,
                           n_heads=self.n_heads, n_kv_heads=self.n_kv_heads,
                           head_dim=self.head_dim, hidden_dim=self.hidden_dim,
                           max_seq_len=seq_len)

    def n_params(self) -> int:
        return self.config(1).n_params()

    def model_args(self) -> dict:
        """The TrainArgs fields (and `tinylm train` options) that make this shape."""
        fields = asdict(self)
        del fields["bits"]
        return dict(fields, tokenizer=self.tokenizer, head_dim=self.head_dim)

    def label(self) -> str:
        """Short, for tables: "v64 d16 L2 h4/2 f64 q8" (vocabulary, width, layers, query /
        key-value heads, FFN width, bits)."""
        return (f"v{self.vocab_size} d{self.dim} L{self.n_layers} h{self.n_heads}/"
                f"{self.n_kv_heads} f{self.hidden_dim} q{self.bits}")

    def slug(self) -> str:
        """The label as a file name: "v64_d16_L2_h4-2_f64_q8"."""
        return self.label().replace(" ", "_").replace("/", "-")


@dataclass(frozen=True)
class Space:
    vocabs: tuple[int, ...]
    bits: tuple[int, ...] = BITS
    min_params: int = 1_000
    max_params: int = 300_000
    lrs: tuple[float, ...] = LEARNING_RATES


def vocab_choices(characters: int) -> tuple[int, ...]:
    """The vocabulary sizes for a text of `characters` distinct characters: the character
    vocabularies it can have (up to all its characters, a fallback and 4 specials, which is
    a choice too when it is below 260), then BPE."""
    largest = characters + 5
    chars = [size for size in CHAR_VOCABS if size < largest]
    if largest < SMALLEST_BPE:
        chars.append(largest)
    return (*chars, *BPE_VOCABS)


def suggest(trial, space: Space) -> Shape:
    """The shape an Optuna trial samples."""
    dim = trial.suggest_categorical("dim", DIMS)
    n_heads = trial.suggest_categorical("n_heads", HEADS)
    sharing = trial.suggest_categorical("kv_sharing", KV_SHARING)
    ratio = trial.suggest_categorical("ffn_ratio", FFN_RATIOS)
    return Shape(vocab_size=trial.suggest_categorical("vocab_size", space.vocabs), dim=dim,
                 n_layers=trial.suggest_int("n_layers", *LAYERS), n_heads=n_heads,
                 n_kv_heads=max(1, n_heads // sharing), hidden_dim=hidden_width(dim, ratio),
                 bits=trial.suggest_categorical("bits", space.bits))


def suggest_lr(trial, space: Space) -> float:
    """The learning rate an Optuna trial trains its shape with."""
    return trial.suggest_categorical("lr", space.lrs)


def problem(shape: Shape, space: Space) -> str | None:
    """Why a shape cannot be a candidate, whatever the board (None: it can)."""
    if shape.dim % shape.n_heads or shape.head_dim % 2:
        return (f"RoPE needs heads of even width: dim {shape.dim} in {shape.n_heads} heads is "
                f"{shape.dim / shape.n_heads:g} each")
    n_params = shape.n_params()
    if not space.min_params <= n_params <= space.max_params:
        return (f"{n_params:,} parameters, outside --params {space.min_params:,}-"
                f"{space.max_params:,}")
    return None
