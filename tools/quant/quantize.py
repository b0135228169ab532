#!/usr/bin/env python3
"""Writes a quantized copy of a Hugging Face checkpoint in one of the layouts dflash keeps narrow
on the device (lib/quantization.ts), and beside it the same model dequantized to f32.

    python tools/quant/quantize.py SRC OUT --scheme int4-g32 [--dequantized-out DIR]

Schemes (every `*_proj.weight` matrix is quantized unless named by --ignore):
    int8-channel   compressed-tensors naive-quantized, I8 weight + weight_scale (out, 1)
    int8-g32       compressed-tensors pack-quantized 8-bit, groups of 32 (int32 words of 4 values + 128)
    int4-g32       compressed-tensors pack-quantized 4-bit, groups of 32 (int32 words of 8 values + 8)
    int4-channel   the same, one scale per output row
    fp8-channel    compressed-tensors float-quantized, F8_E4M3 weight + weight_scale (out, 1)
    fp8-b32        Qwen / DeepSeek FP8: F8_E4M3 weight + weight_scale_inv, blocks of 32 x 32
    fp8-b128       the same with the released 128 x 128 blocks
    int4-g32-zp    compressed-tensors pack-quantized 4-bit with zero points (packed along the rows)
    int8-channel-zp  compressed-tensors naive-quantized with I8 zero points
    awq-g32        AutoAWQ gemm: qweight / qzeros int32 (in, out/8) in AWQ's nibble order, scales (in/g, out)

The packing follows compressed-tensors' pack_to_int32 (value j of a word at bits [bits*j, ...),
values stored + 2^(bits-1)); tools/quant/check_reference.py compares it, and the dequantization,
with compressed-tensors' own functions where that package (and torch) is installed. Numpy,
ml_dtypes (for e4m3) and the standard library only: CI writes these files without torch.

The dequantized copy holds W = f32(q) * f32(scale) per element, the arithmetic the engine's
programs do (native/models/quant.h), so the two checkpoints must give bit-identical logits.
"""
import argparse
import json
import os
import shutil
import struct

import numpy as np

try:
    import ml_dtypes
except ImportError:  # only fp8 needs it
    ml_dtypes = None

DTYPES = {'F32': np.float32, 'I8': np.int8, 'I32': np.int32, 'I64': np.int64, 'U8': np.uint8}


def read_safetensors(path):
    """name -> f32 (or integer) array, read tensor by tensor from a memory map (a 4B-shaped
    checkpoint is never held in memory whole)."""
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
    data = np.memmap(path, np.uint8, 'r', offset=8 + n)
    for name, t in header.items():
        if name == '__metadata__':
            continue
        a, b = t['data_offsets']
        raw = data[a:b]
        if t['dtype'] == 'BF16':
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif t['dtype'] == 'F16':
            arr = raw.view(np.float16).astype(np.float32)
        else:
            arr = np.array(raw.view(DTYPES[t['dtype']]))
        yield name, arr.reshape(t['shape'])


def to_bf16_bytes(x):
    # round to nearest even, as torch does
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16).tobytes()


class SafetensorsWriter:
    """Tensors appended one at a time to a side file; close() writes the header and the data."""

    def __init__(self, path):
        self.path, self.header, self.offset = path, {}, 0
        self.data = open(path + '.data', 'wb')

    def add(self, name, dtype, shape, raw):
        self.header[name] = {'dtype': dtype, 'shape': list(shape), 'data_offsets': [self.offset, self.offset + len(raw)]}
        self.offset += len(raw)
        self.data.write(raw)

    def close(self):
        self.data.close()
        h = json.dumps(self.header, separators=(',', ':')).encode()
        h += b' ' * (-len(h) % 8)
        with open(self.path, 'wb') as f, open(self.path + '.data', 'rb') as d:
            f.write(struct.pack('<Q', len(h)))
            f.write(h)
            shutil.copyfileobj(d, f, 64 << 20)
        os.remove(self.path + '.data')


def pack_int32(q, bits):
    """q: (rows, cols) ints in [-2^(bits-1), 2^(bits-1)) -> (rows, ceil(cols*bits/32)) int32 words."""
    rows, cols = q.shape
    per = 32 // bits
    padded = -(-cols // per) * per
    u = np.zeros((rows, padded), np.uint32)
    u[:, :cols] = (q.astype(np.int32) + (1 << (bits - 1))).astype(np.uint32)
    words = np.zeros((rows, padded // per), np.uint32)
    for j in range(per):
        words |= u[:, j::per] << np.uint32(bits * j)
    return words.view(np.int32)


def blocks(shape, br, bc):
    return -(-shape[0] // br), -(-shape[1] // bc)


def expand(scale, shape, br, bc):
    """scale (so, si) -> (out, in), each scale over its br x bc block."""
    return np.repeat(np.repeat(scale, br, axis=0), bc, axis=1)[: shape[0], : shape[1]]


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # nibble i of a word holds output 8c + AWQ_ORDER[i]


def pack_awq(q):
    """q: (rows, cols) in 0..15 -> (rows, cols/8) int32, AutoAWQ's gemm order."""
    rows, cols = q.shape
    words = np.zeros((rows, cols // 8), np.uint32)
    for i, o in enumerate(AWQ_ORDER):
        words |= q[:, o::8].astype(np.uint32) << np.uint32(4 * i)
    return words.view(np.int32)


def round_scale(scale, dtype):
    """The scale as the checkpoint stores it (both sides use the stored value)."""
    if dtype == 'BF16':
        return (np.frombuffer(to_bf16_bytes(scale), np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(scale.shape)
    if dtype == 'F16':
        return scale.astype(np.float16).astype(np.float32)
    return scale


def scale_bytes(scale, dtype):
    return to_bf16_bytes(scale) if dtype == 'BF16' else scale.astype(np.float16).tobytes() if dtype == 'F16' else scale.tobytes()


def quantize_asymmetric(w, scheme, scale_dtype):
    """Zero-point schemes: int4-g32-zp, int8-channel-zp (compressed-tensors), awq-g32 (AutoAWQ gemm)."""
    out_dim, in_dim = w.shape
    kind, grain = scheme.split('-')[:2]
    g = in_dim if grain == 'channel' else int(grain[1:])
    blocks_ = w.reshape(out_dim, in_dim // g, g)
    mn = np.minimum(blocks_.min(axis=2), 0)
    mx = np.maximum(blocks_.max(axis=2), 0)
    qmin, qmax = (0, 15) if kind == 'awq' else (-8, 7) if kind == 'int4' else (-128, 127)
    scale = np.where(mx > mn, (mx - mn) / (qmax - qmin), 1.0).astype(np.float32)
    scale = round_scale(scale, scale_dtype)
    zp = np.clip(np.rint(qmin - mn / scale), qmin, qmax).astype(np.int32)
    full_s, full_z = expand(scale, w.shape, 1, g), expand(zp, w.shape, 1, g)
    q = np.clip(np.rint(w / full_s) + full_z, qmin, qmax).astype(np.int32)
    deq = (q - full_z).astype(np.float32) * full_s
    stored = {}
    if kind == 'awq':
        stored['qweight'] = ('I32', (in_dim, out_dim // 8), pack_awq(q.T.copy()).tobytes())
        stored['qzeros'] = ('I32', (in_dim // g, out_dim // 8), pack_awq(zp.T.copy()).tobytes())
        stored['scales'] = (scale_dtype, (in_dim // g, out_dim), scale_bytes(np.ascontiguousarray(scale.T), scale_dtype))
        return stored, deq
    if kind == 'int8':
        stored['weight'] = ('I8', w.shape, q.astype(np.int8).tobytes())
        stored['weight_zero_point'] = ('I8', zp.shape, zp.astype(np.int8).tobytes())
    else:
        words = pack_int32(q.astype(np.int8), 4)
        stored['weight_packed'] = ('I32', words.shape, words.tobytes())
        stored['weight_shape'] = ('I64', (2,), np.array(w.shape, np.int64).tobytes())
        zwords = pack_int32(zp.astype(np.int8).T.copy(), 4).T.copy()  # packed along the rows (packed_dim=0)
        stored['weight_zero_point'] = ('I32', zwords.shape, zwords.tobytes())
    stored['weight_scale'] = (scale_dtype, scale.shape, scale_bytes(scale, scale_dtype))
    return stored, deq


def quantize(w, scheme, scale_dtype):
    """-> stored tensors (suffix -> (dtype, shape, bytes)) and the f32 dequantization."""
    if scheme.endswith('-zp') or scheme.startswith('awq'):
        return quantize_asymmetric(w, scheme, scale_dtype)
    out_dim, in_dim = w.shape
    kind, grain = scheme.split('-')
    if grain == 'channel':
        br, bc = 1, in_dim
    elif grain.startswith('g'):
        br, bc = 1, int(grain[1:])
    else:
        br = bc = int(grain[1:])
    so, si = blocks(w.shape, br, bc)
    padded = np.zeros((so * br, si * bc), np.float32)
    padded[:out_dim, :in_dim] = w
    amax = np.abs(padded.reshape(so, br, si, bc)).max(axis=(1, 3))
    qmax = {'int8': 127.0, 'int4': 7.0, 'fp8': 448.0}[kind]
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    if scale_dtype == 'BF16':  # the scale the checkpoint holds is what both sides use
        scale = (np.frombuffer(to_bf16_bytes(scale), np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(scale.shape)
    full = expand(scale, w.shape, br, bc)
    scale_bytes = to_bf16_bytes(scale) if scale_dtype == 'BF16' else scale.tobytes()
    stored = {}
    if kind == 'fp8':
        if ml_dtypes is None:
            raise SystemExit('fp8 needs the ml_dtypes package')
        q = (w / full).astype(ml_dtypes.float8_e4m3fn)
        deq = q.astype(np.float32) * full
        stored['weight'] = ('F8_E4M3', w.shape, q.tobytes())
        scale_name = 'weight_scale_inv' if grain.startswith('b') else 'weight_scale'
    else:
        lo, hi = (-128, 127) if kind == 'int8' else (-8, 7)
        q = np.clip(np.rint(w / full), lo, hi).astype(np.int8)
        deq = q.astype(np.float32) * full
        if kind == 'int8' and grain == 'channel':
            stored['weight'] = ('I8', w.shape, q.tobytes())
        else:
            bits = 8 if kind == 'int8' else 4
            words = pack_int32(q, bits)
            stored['weight_packed'] = ('I32', words.shape, words.tobytes())
            stored['weight_shape'] = ('I64', (2,), np.array(w.shape, np.int64).tobytes())
        scale_name = 'weight_scale'
    stored[scale_name] = (scale_dtype, scale.shape, scale_bytes)
    return stored, deq.astype(np.float32)


def quantization_config(scheme, ignore):
    if scheme.startswith('awq'):
        return {'quant_method': 'awq', 'bits': 4, 'group_size': int(scheme.split('-g')[1]), 'zero_point': True, 'version': 'gemm',
                'modules_to_not_convert': ignore or None}
    zp = scheme.endswith('-zp')
    kind, grain = scheme.split('-')[:2]
    if grain.startswith('b'):
        b = int(grain[1:])
        return {'quant_method': 'fp8', 'fmt': 'e4m3', 'activation_scheme': 'dynamic', 'weight_block_size': [b, b],
                'modules_to_not_convert': ignore or None}
    weights = {'num_bits': 8 if kind in ('int8', 'fp8') else 4, 'type': 'float' if kind == 'fp8' else 'int', 'symmetric': not zp,
               'strategy': 'channel' if grain == 'channel' else 'group', 'group_size': None if grain == 'channel' else int(grain[1:]),
               'dynamic': False, 'actorder': None, 'observer': 'minmax'}
    # I8 weights are the naive layout (int-quantized is the same bytes, which compressed-tensors
    # reserves for W8A8); W8A16 from llm-compressor is pack-quantized 8-bit (int8-g32 here).
    fmt = 'float-quantized' if kind == 'fp8' else 'naive-quantized' if scheme.startswith('int8-channel') else 'pack-quantized'
    return {'quant_method': 'compressed-tensors', 'format': fmt, 'quantization_status': 'compressed',
            'config_groups': {'group_0': {'targets': ['Linear'], 'weights': weights, 'input_activations': None, 'output_activations': None}},
            'ignore': ['lm_head'] + ignore, 'sparsity_config': {}, 'kv_cache_scheme': None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('src')
    ap.add_argument('out')
    ap.add_argument('--scheme', required=True)
    ap.add_argument('--dequantized-out')
    ap.add_argument('--ignore', nargs='*', default=[], help='Linear modules (without .weight) left unquantized')
    ap.add_argument('--scale-dtype', default='F32', choices=['F32', 'BF16', 'F16'])
    a = ap.parse_args()
    for d in [a.out] + ([a.dequantized_out] if a.dequantized_out else []):
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(a.src):
            if f != 'model.safetensors' and os.path.isfile(os.path.join(a.src, f)):
                shutil.copy(os.path.join(a.src, f), os.path.join(d, f))
    quantized = SafetensorsWriter(os.path.join(a.out, 'model.safetensors'))
    dequantized = SafetensorsWriter(os.path.join(a.dequantized_out, 'model.safetensors')) if a.dequantized_out else None
    for name, w in read_safetensors(os.path.join(a.src, 'model.safetensors')):
        base = name[: -len('.weight')]
        if name.endswith('_proj.weight') and w.ndim == 2 and base not in a.ignore:
            stored, deq = quantize(w.astype(np.float32), a.scheme, a.scale_dtype)
            for suffix, (dtype, shape, raw) in stored.items():
                quantized.add(f'{base}.{suffix}', dtype, shape, raw)
        else:
            deq = w.astype(np.float32)
            quantized.add(name, 'F32', w.shape, deq.tobytes())
        if dequantized:
            dequantized.add(name, 'F32', deq.shape, deq.tobytes())
    quantized.close()
    if dequantized:
        dequantized.close()
    cfg = json.load(open(os.path.join(a.src, 'config.json')))
    cfg['quantization_config'] = quantization_config(a.scheme, a.ignore)
    json.dump(cfg, open(os.path.join(a.out, 'config.json'), 'w'), indent=2)


if __name__ == '__main__':
    main()
