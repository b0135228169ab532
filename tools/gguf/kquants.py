"""Simple quantizers for llama.cpp's K-quant formats Q4_K, Q5_K and Q6_K, which gguf-py can
dequantize but not write.

They pick each sub-block's scale (and min) from its range, rounding to nearest: plainer than
llama.cpp's search for the error-minimizing scales, so their error is somewhat larger, but the
bytes are in exactly the layout llama.cpp and gguf-py read (ggml-common.h block_q4_K, block_q5_K,
block_q6_K). test/46-gguf checks dflash's decoders against gguf-py's dequantize() of these bytes;
quantize() here reports how far the round trip lands from the input, so a layout mistake in this
file shows as a large error, not as a silently different model.

    blocks = quantize(x, "q4_k")   # x: float32 (rows, cols), cols a multiple of 256
"""
from __future__ import annotations

import numpy as np

QK = 256


def _f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16)


def _pack_scales_mins(sc: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(nb, 8) 6-bit scales and mins -> (nb, 12) bytes as get_scale_min_k4 unpacks them."""
    out = np.zeros((sc.shape[0], 12), np.uint8)
    out[:, 0:4] = sc[:, 0:4] & 63
    out[:, 4:8] = m[:, 0:4] & 63
    out[:, 8:12] = (sc[:, 4:8] & 0xF) | ((m[:, 4:8] & 0xF) << 4)
    out[:, 0:4] |= (sc[:, 4:8] >> 4) << 6
    out[:, 4:8] |= (m[:, 4:8] >> 4) << 6
    return out


def _scale_min(x: np.ndarray, levels: int):
    """Per 32-value sub-block: d * sc * q - dmin * m with q in [0, levels]."""
    sub = x.reshape(x.shape[0], 8, 32)
    lo = np.minimum(sub.min(axis=2), 0.0)
    hi = np.maximum(sub.max(axis=2), 0.0)
    scale = (hi - lo) / levels
    mins = -lo
    d = _f16(scale.max(axis=1) / 63)
    dmin = _f16(mins.max(axis=1) / 63)
    df, dminf = d.astype(np.float32), dmin.astype(np.float32)
    sc = np.where(df[:, None] > 0, np.rint(scale / np.where(df > 0, df, 1)[:, None]), 0).clip(0, 63).astype(np.uint8)
    m = np.where(dminf[:, None] > 0, np.rint(mins / np.where(dminf > 0, dminf, 1)[:, None]), 0).clip(0, 63).astype(np.uint8)
    step = df[:, None] * sc
    off = dminf[:, None] * m
    q = np.where(step[:, :, None] > 0, np.rint((sub + off[:, :, None]) / np.where(step > 0, step, 1)[:, :, None]), 0)
    return d, dmin, sc, m, q.clip(0, levels).astype(np.uint8)


def _q4_k(x: np.ndarray) -> np.ndarray:
    d, dmin, sc, m, q = _scale_min(x, 15)
    q = q.reshape(-1, 4, 2, 32)  # 64-value chunks: sub-block 2j in low nibbles, 2j+1 in high
    qs = (q[:, :, 0, :] | (q[:, :, 1, :] << 4)).reshape(-1, 128)
    return np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2),
                           _pack_scales_mins(sc, m), qs], axis=1)


def _q5_k(x: np.ndarray) -> np.ndarray:
    d, dmin, sc, m, q = _scale_min(x, 31)
    q = q.reshape(-1, 4, 2, 32)
    low = q & 0xF
    qs = (low[:, :, 0, :] | (low[:, :, 1, :] << 4)).reshape(-1, 128)
    high = (q >> 4) & 1  # (nb, 4, 2, 32): bit 2j (low nibbles) and 2j+1 (high) of qh[l]
    shifts = (np.arange(4)[:, None] * 2 + np.arange(2)[None, :]).astype(np.uint8)
    qh = (high << shifts[None, :, :, None]).sum(axis=(1, 2)).astype(np.uint8)
    return np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2),
                           _pack_scales_mins(sc, m), qh, qs], axis=1)


def _q6_k(x: np.ndarray) -> np.ndarray:
    sub = x.reshape(x.shape[0], 16, 16)
    scale = np.abs(sub).max(axis=2) / 31
    d = _f16(scale.max(axis=1) / 127)
    df = d.astype(np.float32)
    sc = np.where(df[:, None] > 0, np.rint(scale / np.where(df > 0, df, 1)[:, None]), 0).clip(0, 127).astype(np.int8)
    step = df[:, None] * sc.astype(np.float32)
    q = np.where(step[:, :, None] > 0, np.rint(sub / np.where(step > 0, step, 1)[:, :, None]), 0).clip(-32, 31)
    q = (q + 32).astype(np.uint8).reshape(-1, 2, 4, 32)  # halves of 128: values l + 32k, k = 0..3
    ql = np.concatenate([q[:, :, 0] & 0xF | ((q[:, :, 2] & 0xF) << 4),
                         q[:, :, 1] & 0xF | ((q[:, :, 3] & 0xF) << 4)], axis=2).reshape(-1, 128)
    qh = ((q[:, :, 0] >> 4) | ((q[:, :, 1] >> 4) << 2) | ((q[:, :, 2] >> 4) << 4) | ((q[:, :, 3] >> 4) << 6)).reshape(-1, 64)
    return np.concatenate([ql, qh, sc.view(np.uint8), d.view(np.uint8).reshape(-1, 2)], axis=1)


QUANTIZERS = {"q4_k": _q4_k, "q5_k": _q5_k, "q6_k": _q6_k}


def quantize(x: np.ndarray, kind: str) -> np.ndarray:
    """(rows, cols) float32 -> (rows, cols / 256 * block bytes) uint8, as GGUF stores it."""
    rows, cols = x.shape[0], int(np.prod(x.shape[1:]))
    if cols % QK:
        raise ValueError(f"{kind}: rows of {cols} values are not whole blocks of {QK}")
    blocks = QUANTIZERS[kind](x.reshape(-1, QK).astype(np.float32))
    return blocks.reshape(rows, -1)
