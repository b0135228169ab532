#!/usr/bin/env python3
"""Checks tools/quant/quantize.py against compressed-tensors' and AutoAWQ's own code (run with a
python that has torch and compressed-tensors, e.g. .venv-oracle; AutoAWQ's packing_utils.py is
read from its sdist, which needs no GPU: `pip download autoawq --no-deps`, unpack, and pass
--awq DIR/awq/utils/packing_utils.py) and writes the golden test/47 keeps:

    .venv-oracle/bin/python tools/quant/check_reference.py test/fixtures/goldens/compressed-tensors-pack.json \
        --awq /tmp/autoawq-0.2.9/awq/utils/packing_utils.py

For random int8 / int4 matrices (odd widths included) it compares
  - our int32 words with compressed_tensors' pack_to_int32,
  - compressed_tensors' unpack_from_int32 of our words with the values we packed,
  - compressed_tensors' dequantize(q, scale) (group and channel) with our f32 dequantization,
  - zero points packed along the rows (pack_to_int32(..., packed_dim=0)) and dequantize with them,
  - AutoAWQ's dequantize_gemm of our qweight / qzeros / scales with our dequantization,
and stores small cases (values, words, scales, reference dequantization) as JSON, so CI can
check the numpy writer against what the references produced without installing torch.
"""
import argparse
import importlib.util
import json
import os
import sys

import numpy as np
import torch
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32, unpack_from_int32
from compressed_tensors.quantization import QuantizationArgs
from compressed_tensors.quantization.lifecycle.forward import dequantize

sys.path.insert(0, os.path.dirname(__file__))
from quantize import expand, pack_awq, pack_int32  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out')
    ap.add_argument('--awq', required=True, help="AutoAWQ's awq/utils/packing_utils.py")
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location('awq_packing', a.awq)
    awq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(awq)
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
    # Zero points: packed along the rows, and dequantize((q - z) * s).
    q = rng.integers(-8, 8, size=(16, 64)).astype(np.int8)
    zp = rng.integers(-8, 8, size=(16, 2)).astype(np.int8)
    scale = rng.uniform(0.001, 0.05, size=(16, 2)).astype(np.float32)
    ours_words = pack_int32(zp.T.copy(), 4).T.copy()
    ref_words = pack_to_int32(torch.from_numpy(zp), 4, packed_dim=0).numpy()
    assert np.array_equal(ours_words, ref_words), 'zero points packed along the rows'
    args = QuantizationArgs(num_bits=4, type='int', symmetric=False, strategy='group', group_size=32)
    ref = dequantize(torch.from_numpy(q), torch.from_numpy(scale), torch.from_numpy(zp), args, torch.float32).numpy()
    ours = (q.astype(np.float32) - expand(zp, q.shape, 1, 32)) * expand(scale, q.shape, 1, 32)
    assert np.array_equal(ref, ours), 'dequantize with zero points'
    golden['int4-g32-zp'] = {'values': q.tolist(), 'zero': zp.tolist(), 'zero_words': ref_words.tolist(), 'scale': scale.tolist(),
                             'dequantized': ref.tolist()}
    # AWQ gemm: W^T = (q - z) * s from (in, out/8) words in AWQ's order.
    qt = rng.integers(0, 16, size=(64, 16)).astype(np.int32)   # (in, out)
    zt = rng.integers(0, 16, size=(2, 16)).astype(np.int32)    # (in/g, out)
    st = rng.uniform(0.001, 0.05, size=(2, 16)).astype(np.float32)
    qweight, qzeros = pack_awq(qt), pack_awq(zt)
    ref = awq.dequantize_gemm(torch.from_numpy(qweight), torch.from_numpy(qzeros), torch.from_numpy(st), 4, 32).numpy()
    ours = (qt - np.repeat(zt, 32, axis=0)).astype(np.float32) * np.repeat(st, 32, axis=0)
    assert np.array_equal(ref, ours), 'AutoAWQ dequantize_gemm'
    golden['awq-g32'] = {'values': qt.tolist(), 'zero': zt.tolist(), 'qweight': qweight.tolist(), 'qzeros': qzeros.tolist(),
                         'scale': st.tolist(), 'dequantized': ref.tolist()}
    import compressed_tensors
    golden['reference'] = (f'compressed-tensors {compressed_tensors.__version__}, AutoAWQ packing_utils '
                           f'({os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(a.awq))))}), torch {torch.__version__}')
    with open(a.out, 'w') as f:
        json.dump(golden, f)
    print('tools/quant/quantize.py matches', golden['reference'])


if __name__ == '__main__':
    main()
