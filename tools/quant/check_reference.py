#!/usr/bin/env python3
"""Checks tools/quant/quantize.py against compressed-tensors' own code (run with a python that has
torch and compressed-tensors, e.g. .venv-oracle) and writes the golden test/47 keeps:

    .venv-oracle/bin/python tools/quant/check_reference.py test/fixtures/goldens/compressed-tensors-pack.json

For random int8 / int4 matrices (odd widths included) it compares
  - our int32 words with compressed_tensors' pack_to_int32,
  - compressed_tensors' unpack_from_int32 of our words with the values we packed,
  - compressed_tensors' dequantize(q, scale) (group and channel) with our f32 dequantization,
and stores one small case (values, words, scales, reference dequantization) as JSON, so CI can
check the numpy writer against what the reference produced without installing torch.
"""
import json
import os
import sys

import numpy as np
import torch
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32, unpack_from_int32
from compressed_tensors.quantization import QuantizationArgs
from compressed_tensors.quantization.lifecycle.forward import dequantize

sys.path.insert(0, os.path.dirname(__file__))
from quantize import expand, pack_int32  # noqa: E402


def main():
    rng = np.random.default_rng(7)
    for bits in (4, 8):
        for cols in (32, 64, 72, 100):
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            q = rng.integers(lo, hi + 1, size=(6, cols)).astype(np.int8)
            ours = pack_int32(q, bits)
            ref = pack_to_int32(torch.from_numpy(q), bits).numpy()
            assert ours.shape == ref.shape and np.array_equal(ours, ref), f'pack int{bits} x {cols}'
            back = unpack_from_int32(torch.from_numpy(ours), bits, torch.Size(q.shape)).numpy()
            assert np.array_equal(back, q), f'unpack int{bits} x {cols}'
    golden = {}
    for bits, group in ((4, 32), (8, 0), (4, 0), (8, 32)):
        q = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(4, 64)).astype(np.int8)
        groups = 64 // group if group else 1
        scale = rng.uniform(0.001, 0.05, size=(4, groups)).astype(np.float32)
        args = QuantizationArgs(num_bits=bits, type='int', symmetric=True, strategy='group' if group else 'channel',
                                group_size=group or None)
        ref = dequantize(torch.from_numpy(q), torch.from_numpy(scale), None, args, torch.float32).numpy()
        ours = q.astype(np.float32) * expand(scale, q.shape, 1, group or 64)
        assert np.array_equal(ref, ours), f'dequantize int{bits} group {group}'
        golden[f'int{bits}-{"g%d" % group if group else "channel"}'] = {
            'values': q.tolist(), 'words': pack_int32(q, bits).tolist() if (bits, group) != (8, 0) else None,
            'scale': scale.tolist(), 'dequantized': ref.tolist()}
    import compressed_tensors
    golden['reference'] = f'compressed-tensors {compressed_tensors.__version__}, torch {torch.__version__}'
    with open(sys.argv[1], 'w') as f:
        json.dump(golden, f)
    print('tools/quant/quantize.py matches', golden['reference'])


if __name__ == '__main__':
    main()
