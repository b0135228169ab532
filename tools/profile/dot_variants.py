"""What the candidate weight-side cuts would save on XLA:CPU, measured on the engine's dot shapes:
a stack of `layers` layers, each with its own weights (so they stream from memory as in the model),
each layer's input depending on the previous layer's output, timed untraced in jaxlib 0.11.2.
  qkv:     q, k, v as three dots vs one dot with the concatenated [q+k+v, H] weight
  gate_up: gate and up as two dots vs one [2I, H] dot
  layout:  W as stored by HF, [out, in] (x . W^T: YNNPACK packs/transposes W on every call) vs
           W stored [in, out] at load (x . W)
Prints Markdown rows: variant, rows M, dtype, ms per layer separate/as-is vs fused/transposed.
  python tools/profile/dot_variants.py --shape pair|0.6b [--layers 6] [--reps 15]
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

SHAPES = {  # hidden, q_dim, kv_dim, intermediate, dtype, rows to try
    'pair': (256, 256, 128, 768, jnp.float32, (2, 16)),
    '0.6b': (1024, 2048, 1024, 3072, jnp.bfloat16, (3, 16)),
}


def stack(ws, outs_of, x, dt):
    """Layer l: y = outs_of(x, ws[l]); x += 1e-3 * rowsum(y): a cheap dependency that uses every
    output column (a slice of y would let XLA drop the unused dots or weight rows)."""
    for w in ws:
        y = outs_of(x, w)
        x = (x.astype(jnp.float32) + 1e-3 * jnp.sum(y, axis=1, keepdims=True)).astype(dt)
    return x


def dot_t(x, w):  # HF layout: w [out, in]
    return lax.dot_general(x, w, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)


def dot_n(x, w):  # transposed at load: w [in, out]
    return lax.dot_general(x, w, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def timed(f, *args, reps):
    f(*args).block_until_ready()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f(*args).block_until_ready()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--shape', choices=sorted(SHAPES), default='pair')
    ap.add_argument('--layers', type=int, default=6)
    ap.add_argument('--reps', type=int, default=15)
    a = ap.parse_args()
    h, qd, kvd, inter, dt, rows_list = SHAPES[a.shape]
    rng = np.random.default_rng(0)
    rand = lambda *s: jnp.asarray(rng.standard_normal(s, dtype=np.float32) * 0.02).astype(dt)  # noqa: E731
    L = a.layers
    print(f'| variant | M | dtype | separate / [out,in] ms per layer | fused / [in,out] ms per layer | saving |')
    print('|---|---|---|---|---|---|')
    for m in rows_list:
        x = rand(m, h)
        # QKV
        qs, ks, vs = [rand(qd, h) for _ in range(L)], [rand(kvd, h) for _ in range(L)], [rand(kvd, h) for _ in range(L)]
        sep = jax.jit(lambda x, w: stack(list(zip(*w)), lambda x, t: jnp.concatenate([dot_t(x, t[0]), dot_t(x, t[1]), dot_t(x, t[2])], 1), x, dt))
        fus = jax.jit(lambda x, w: stack(w, dot_t, x, dt))
        fused = [jnp.concatenate([q, k, v], 0) for q, k, v in zip(qs, ks, vs)]
        row('QKV: 3 dots vs 1', m, dt, timed(sep, x, (qs, ks, vs), reps=a.reps) / L, timed(fus, x, fused, reps=a.reps) / L)
        # gate/up
        gs, us = [rand(inter, h) for _ in range(L)], [rand(inter, h) for _ in range(L)]
        sep = jax.jit(lambda x, w: stack(list(zip(*w)), lambda x, t: dot_t(x, t[0]) * dot_t(x, t[1]), x, dt))
        fus = jax.jit(lambda x, w: stack(w, lambda x, t: (lambda y: y[:, :inter] * y[:, inter:])(dot_t(x, t)), x, dt))
        gu = [jnp.concatenate([g, u], 0) for g, u in zip(gs, us)]
        row('gate/up: 2 dots vs 1', m, dt, timed(sep, x, (gs, us), reps=a.reps) / L, timed(fus, x, gu, reps=a.reps) / L)
        # layout, on the MLP down shape [H, I] and the gate shape [I, H]
        for name, (n, k) in (('down', (h, inter)), ('gate', (inter, h))):
            xin = rand(m, k)
            w_t = [rand(n, k) for _ in range(L)]
            w_n = [jnp.asarray(w.T) for w in w_t]
            f_t = jax.jit(lambda x, w: stack(w, dot_t, x, dt))
            f_n = jax.jit(lambda x, w: stack(w, dot_n, x, dt))
            row(f'layout {name} W[{n},{k}]: [out,in] vs [in,out]', m, dt, timed(f_t, xin, w_t, reps=a.reps) / L, timed(f_n, xin, w_n, reps=a.reps) / L)


def row(name, m, dt, a_s, b_s):
    print(f'| {name} | {m} | {jnp.dtype(dt).name} | {a_s * 1e3:.3f} | {b_s * 1e3:.3f} | {100 * (1 - b_s / a_s):.0f}% |')


if __name__ == '__main__':
    main()
