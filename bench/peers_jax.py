"""JAX peer of bench/peers.ts: the same Qwen3 / Llama checkpoint as a small jitted JAX model with
a KV cache, greedy decoding, on a PJRT plugin given by path (the plugin dflash uses), or with
--jaxlib-cpu on jaxlib's built-in CPU backend.

A long-lived worker so the programs compile once: it prints one JSON line describing itself,
then answers each request line {"prompt": [ids], "max_tokens": N, "eos": [ids]} with
{"ids": [...], "first_token_s": s, "decode_s": s}: the generated ids (EOS excluded), the time from
the request to the first generated token on the host, and from there to the last one (the same
clock bench/peers.ts reads for the other engines).

    .venv-train/bin/python bench/peers_jax.py --checkpoint DIR --plugin PLUGIN.so --max-len 512 [--dtype f32]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--plugin", help="PJRT plugin .so to run on")
    p.add_argument("--jaxlib-cpu", action="store_true", help="use jaxlib's own CPU backend instead of --plugin")
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    return p.parse_args()


ARGS = parse_args()
if not ARGS.jaxlib_cpu:
    if not ARGS.plugin:
        sys.exit("peers_jax.py: --plugin PATH or --jaxlib-cpu is required")
    # JAX loads extra PJRT plugins named in this variable; JAX_PLATFORMS makes it the only backend,
    # so nothing can silently fall back to jaxlib's CPU client.
    os.environ["PJRT_NAMES_AND_LIBRARY_PATHS"] = f"dflashplugin:{ARGS.plugin}"
    os.environ["JAX_PLATFORMS"] = "dflashplugin"
else:
    os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402  (the environment above must be set first)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from safetensors import safe_open  # noqa: E402

DTYPES = {"f32": jnp.float32, "f16": jnp.float16, "bf16": jnp.bfloat16}


def load(ckpt: Path, wdtype) -> tuple[dict, dict]:
    cfg = json.loads((ckpt / "config.json").read_text())
    raw: dict[str, np.ndarray] = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        with safe_open(str(f), framework="numpy") as st:
            for name in st.keys():
                raw[name] = st.get_tensor(name).astype(np.float32)
    # Matrices as (in, out) so every projection is x @ W; norms stay f32 (as in the GGUF).
    mat = lambda name: jnp.asarray(raw[name].T, dtype=wdtype)  # noqa: E731
    vec = lambda name: jnp.asarray(raw[name], dtype=jnp.float32)  # noqa: E731
    layers = []
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        layer = {k: mat(p + n) for k, n in [("q", "self_attn.q_proj.weight"), ("k", "self_attn.k_proj.weight"),
                                             ("v", "self_attn.v_proj.weight"), ("o", "self_attn.o_proj.weight"),
                                             ("gate", "mlp.gate_proj.weight"), ("up", "mlp.up_proj.weight"),
                                             ("down", "mlp.down_proj.weight")]}
        layer["ln1"] = vec(p + "input_layernorm.weight")
        layer["ln2"] = vec(p + "post_attention_layernorm.weight")
        if p + "self_attn.q_norm.weight" in raw:
            layer["q_norm"] = vec(p + "self_attn.q_norm.weight")
            layer["k_norm"] = vec(p + "self_attn.k_norm.weight")
        layers.append(layer)
    head = raw.get("lm_head.weight", raw["model.embed_tokens.weight"])
    params = {
        "embed": jnp.asarray(raw["model.embed_tokens.weight"], dtype=wdtype),
        "norm": vec("model.norm.weight"),
        "head": jnp.asarray(head.T, dtype=wdtype),
        "layers": layers,
    }
    return cfg, params


def rms_norm(x, w, eps):
    x32 = x.astype(jnp.float32)
    return x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps) * w


def matmul(x, w):
    # Activations in the weights' precision, f32 accumulation: what a 16-bit engine does.
    return jnp.dot(x.astype(w.dtype), w, preferred_element_type=jnp.float32)


def rope(x, positions, theta):
    """Half-rotation RoPE (HF Qwen3 / Llama): x (T, heads, hd), positions (T,)."""
    hd = x.shape[-1]
    inv = 1.0 / (theta ** (jnp.arange(0, hd, 2, dtype=jnp.float32) / hd))
    ang = positions[:, None].astype(jnp.float32) * inv[None, :]  # (T, hd/2)
    cos, sin = jnp.cos(ang)[:, None, :], jnp.sin(ang)[:, None, :]
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def make_forward(cfg: dict):
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // nh
    eps, theta = cfg.get("rms_norm_eps", 1e-6), cfg.get("rope_theta", 10000.0)

    def forward(params, kc, vc, tokens, start):
        """tokens (T,) at positions start .. start+T-1; caches (L, maxLen, nkv, hd), updated in
        place (donated). Returns the greedy next token after the last position and the caches."""
        T = tokens.shape[0]
        positions = start + jnp.arange(T)
        x = params["embed"][tokens].astype(jnp.float32)
        key_pos = jnp.arange(kc.shape[1])
        mask = key_pos[None, :] <= positions[:, None]  # (T, maxLen)
        for i, lw in enumerate(params["layers"]):
            h = rms_norm(x, lw["ln1"], eps)
            q = matmul(h, lw["q"]).reshape(T, nh, hd)
            k = matmul(h, lw["k"]).reshape(T, nkv, hd)
            v = matmul(h, lw["v"]).reshape(T, nkv, hd)
            if "q_norm" in lw:
                q, k = rms_norm(q, lw["q_norm"], eps), rms_norm(k, lw["k_norm"], eps)
            q, k = rope(q, positions, theta), rope(k, positions, theta)
            kc = jax.lax.dynamic_update_slice(kc, k[None].astype(kc.dtype), (i, start, 0, 0))
            vc = jax.lax.dynamic_update_slice(vc, v[None].astype(vc.dtype), (i, start, 0, 0))
            keys, vals = kc[i], vc[i]  # (maxLen, nkv, hd)
            qg = q.reshape(T, nkv, nh // nkv, hd)
            s = jnp.einsum("tkgd,skd->tkgs", qg, keys) / jnp.sqrt(jnp.float32(hd))
            s = jnp.where(mask[:, None, None, :], s, -jnp.inf)
            a = jnp.einsum("tkgs,skd->tkgd", jax.nn.softmax(s, axis=-1), vals).reshape(T, nh * hd)
            x = x + matmul(a, lw["o"])
            h = rms_norm(x, lw["ln2"], eps)
            x = x + matmul(jax.nn.silu(matmul(h, lw["gate"])) * matmul(h, lw["up"]), lw["down"])
        logits = matmul(rms_norm(x[-1:], params["norm"], eps), params["head"])
        return jnp.argmax(logits[0]).astype(jnp.int32), kc, vc

    return jax.jit(forward, donate_argnums=(1, 2)), nkv, hd


def main() -> None:
    wdtype = DTYPES[ARGS.dtype]
    cfg, params = load(ARGS.checkpoint, wdtype)
    forward, nkv, hd = make_forward(cfg)
    shape = (cfg["num_hidden_layers"], ARGS.max_len, nkv, hd)
    device = jax.devices()[0]
    maps = Path("/proc/self/maps").read_text() if Path("/proc/self/maps").exists() else ""
    plugin_mapped = bool(ARGS.plugin) and os.path.realpath(ARGS.plugin) in maps
    print(json.dumps({
        "ready": True, "jax": jax.__version__, "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
        "backend": device.platform, "platform_version": device.client.platform_version,
        "plugin_mapped": plugin_mapped, "jaxlib_cpu": ARGS.jaxlib_cpu, "dtype": ARGS.dtype,
    }), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        prompt = jnp.asarray(req["prompt"], dtype=jnp.int32)
        n, eos = int(req["max_tokens"]), set(req.get("eos", []))
        if len(req["prompt"]) + n > ARGS.max_len:
            print(json.dumps({"error": f"prompt + max_tokens exceeds --max-len {ARGS.max_len}"}), flush=True)
            continue
        kc, vc = jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)
        t0 = time.perf_counter()
        tok, kc, vc = forward(params, kc, vc, prompt, jnp.int32(0))
        ids, times = [int(tok)], [time.perf_counter()]  # int() waits until the token is on the host
        pos = len(req["prompt"])
        while len(ids) < n and ids[-1] not in eos:
            tok, kc, vc = forward(params, kc, vc, tok.reshape(1), jnp.int32(pos))
            ids.append(int(tok))
            times.append(time.perf_counter())
            pos += 1
        if ids[-1] in eos:  # the EOS token ends the sequence and is not part of it
            ids, times = ids[:-1], times[:-1]
        first = times[0] if times else time.perf_counter()
        last = times[-1] if times else first
        print(json.dumps({"ids": ids, "first_token_s": first - t0, "decode_s": last - first}), flush=True)

if __name__ == "__main__":
    main()
