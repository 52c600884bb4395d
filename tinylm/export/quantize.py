"""Quantization: a float model's weight matrices as small integers with one scale per group.

Each row of a matrix (out, in) is cut into groups of `group_size` inputs (the last group of a
row may be shorter). A group keeps one scale s and integers q in [-127, 127] (int8) or [-8, 7]
(int4), so that w ~ q * s ("symmetric": no zero point). Norm weights stay float32. The
embedding table is quantized like the matrices, row by row.

Scales are stored as uint16 with one power-of-two shift per tensor (s = scale / 2**shift), so
the C runtime combines groups with integer multiplies only.

Choosing s = max|w| / 127 is all int8 needs. At 4 bits that rounding costs too much, so:
  * each group's scale is searched (a fraction of max|w| / 7 that minimizes the squared error);
  * with calibration inputs X of a layer, columns are quantized one at a time and each one's
    rounding error is pushed onto the columns not yet quantized, through the inverse of
    H = X^T X ("optimal brain" error compensation, as in GPTQ): the products W X, not the
    weights themselves, end up close to the float ones;
  * then, the integers fixed, each row's scales are refit by least squares on that error.
The embedding table and LM head stay int8 at 4 bits (quantize_model).
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..core import ops
from ..training.generate import generate
from .binformat import BITS_DTYPE, F32, Tensor

DEFAULT_GROUP = {8: 32, 4: 16}
SCALE_HEADROOM = 32767        # a tensor's largest scale maps to about this: 15 bits kept
SEARCH = np.linspace(0.5, 1.0, 51)


def scale_shift(max_scale: float) -> int:
    """The power of two that puts the largest scale near SCALE_HEADROOM."""
    if max_scale <= 0:
        return 0
    return int(np.clip(np.floor(np.log2(SCALE_HEADROOM / max_scale)), 0, 62))


def round_scales(s, shift):
    """Scales as stored (uint16 after the shift), and their exact float values."""
    stored = np.clip(np.round(s * 2.0 ** shift), 1, 65535)
    return stored, stored / 2.0 ** shift


def quantize_values(w, s, qmax):
    return np.clip(np.round(w / s), -qmax - 1 if qmax == 7 else -qmax, qmax)


def best_scales(block, qmax, search):
    """Per row of `block` (rows, group): the scale with the least squared error."""
    amax = np.abs(block).max(axis=1, keepdims=True)
    best = best_err = None
    for c in (SEARCH if search else [1.0]):
        s = np.maximum(amax * c / qmax, 1e-30)
        err = ((quantize_values(block, s, qmax) * s - block) ** 2).sum(axis=1, keepdims=True)
        if best_err is None:
            best, best_err = s, err
        else:
            better = err < best_err
            best, best_err = np.where(better, s, best), np.where(better, err, best_err)
    return best


def quantize_matrix(w: np.ndarray, bits: int, group: int, hessian=None) -> Tensor:
    """A float matrix (rows, cols) as a quantized Tensor. `hessian` (cols, cols): X^T X / N of
    the layer's inputs, for error compensation; None quantizes each group on its own."""
    qmax = 127 if bits == 8 else 7
    rows, cols = w.shape
    W = w.astype(np.float64).copy()
    # Compensation may grow later groups a little; the shift leaves 2x headroom for that.
    shift = scale_shift(np.abs(W).max() / qmax)
    n_groups = -(-cols // group)
    q = np.zeros((rows, cols), np.int8)
    scales = np.zeros((rows, n_groups), np.uint16)
    inverse = None
    if hessian is not None:
        H = hessian.astype(np.float64) + 0.01 * np.mean(np.diag(hessian)) * np.eye(cols)
        inverse = np.linalg.cholesky(np.linalg.inv(H)).T    # upper triangular
    for g in range(n_groups):
        cut = slice(g * group, min(cols, (g + 1) * group))
        stored, s = round_scales(best_scales(W[:, cut], qmax, search=bits == 4), shift)
        scales[:, g] = stored[:, 0]
        if inverse is None:
            q[:, cut] = quantize_values(W[:, cut], s, qmax)
            continue
        for j in range(cut.start, cut.stop):
            q[:, j] = quantize_values(W[:, j:j + 1], s, qmax)[:, 0]
            error = (W[:, j] - q[:, j] * s[:, 0]) / inverse[j, j]
            W[:, j + 1:] -= np.outer(error, inverse[j, j + 1:])
    if hessian is not None:
        scales = refit_scales(w, q, group, H, shift)
    return Tensor(BITS_DTYPE[bits], q, scales, shift, group)


def refit_scales(w, q, group, H, shift):
    """With the integers fixed, the scales of a row are a linear least-squares problem: the
    ones that minimize the output error (w - sum_g s_g q_g) H (w - ...)^T."""
    rows, cols = w.shape
    n_groups = -(-cols // group)
    member = np.zeros((cols, n_groups))
    member[np.arange(cols), np.arange(cols) // group] = 1.0
    scales = np.empty((rows, n_groups), np.uint16)
    for r in range(rows):
        A = member * q[r, :, None]                      # (cols, groups): q of each group
        M = A.T @ H @ A + 1e-12 * np.eye(n_groups)
        s = np.linalg.solve(M, A.T @ H @ w[r].astype(np.float64))
        scales[r] = round_scales(np.maximum(s, 0), shift)[0]
    return scales


@contextlib.contextmanager
def recording_linear_inputs(weights: dict[int, str], sums: dict[str, np.ndarray],
                            counts: dict[str, int]):
    """While active, every linear layer adds X^T X of its input to sums[name of its weight]."""
    original = ops.linear_forward

    def recording(x, weight):
        name = weights.get(id(weight))
        if name is not None:
            rows = x.reshape(-1, x.shape[-1]).astype(np.float64)
            sums[name] = sums.get(name, 0) + rows.T @ rows
            counts[name] = counts.get(name, 0) + len(rows)
        return original(x, weight)

    ops.linear_forward = recording
    try:
        yield
    finally:
        ops.linear_forward = original


def hessians(model, sequences) -> dict[str, np.ndarray]:
    """X^T X / N of the inputs of every matrix, over calibration token sequences."""
    weights = {id(model.lm_head): "lm_head" if "lm_head" in model.params else "tok_emb"}
    weights.update({id(p): name for name, p in model.params.items() if name.startswith("layers.")})
    sums, counts = {}, {}
    with recording_linear_inputs(weights, sums, counts):
        for ids in sequences:
            model.logits(np.asarray([ids[:model.config.max_seq_len]]))
    return {name: sums[name] / counts[name] for name in sums}


def quantize_model(model, bits: int, group: int, calibration=None) -> dict[str, Tensor]:
    """Every parameter as a Tensor: float32 for bits 32 and for norms, else quantized. At 4
    bits the embedding table and LM head stay int8: they are a small part of the weights, and
    every token's input and output goes through them. `calibration`: token sequences for
    error compensation (used at 4 bits)."""
    H = hessians(model, calibration) if calibration and bits == 4 else {}
    tensors = {}
    for name, p in model.params.items():
        if bits == 32 or p.ndim == 1:
            tensors[name] = Tensor(F32, np.asarray(p, np.float32))
        else:
            tensor_bits = 8 if name in ("tok_emb", "lm_head") else bits
            tensors[name] = quantize_matrix(p, tensor_bits, group, H.get(name))
    return tensors


def error_table(model, tensors: dict[str, Tensor]) -> list[dict]:
    """Per tensor: relative RMS error, largest error, bits per weight."""
    rows = []
    for name, t in tensors.items():
        w = model.params[name].astype(np.float64)
        err = t.dequantize().astype(np.float64) - w
        n_bits = 32 * w.size if t.dtype == F32 else (
            (8 if t.dtype == BITS_DTYPE[8] else 4) * w.size + 16 * t.scales.size)
        rows.append({"tensor": name, "shape": "x".join(map(str, w.shape)),
                     "rel_rms": float(np.sqrt((err ** 2).sum() / max((w ** 2).sum(), 1e-30))),
                     "max_abs": float(np.abs(err).max()), "bits_per_weight": n_bits / w.size})
    return rows


def calibration_sequences(model, tokenizer, documents=None, n_tokens: int = 4096,
                          seed: int = 0) -> list[list[int]]:
    """Token sequences to measure layer inputs on: the documents' (each <bos> + text, cut to
    the context) up to n_tokens; without documents, the model's own samples from <bos>, so
    that quantizing needs no data."""
    context = model.config.max_seq_len
    sequences, total = [], 0
    if documents:
        for doc in documents:
            sequences.append(tokenizer.encode(doc, bos=True)[:context])
            total += len(sequences[-1])
            if total >= n_tokens:
                break
        return sequences
    length = min(128, context - 1)
    for i in range(-(-n_tokens // length)):
        sample = generate(model, tokenizer, [tokenizer.bos_id], max_tokens=length,
                          temperature=1.0, seed=seed + i)
        sequences.append([tokenizer.bos_id, *sample])
    return sequences
